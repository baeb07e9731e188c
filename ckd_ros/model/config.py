"""Model variants as data: one dataclass, one YAML file per variant under ``config/models/``.

The official ViT-B/16 CKD model and the small CPU variants share one code path; only these numbers
differ. A checkpoint in the project's own format embeds its config, so loading it never needs the
YAML files; they exist so that people can name a variant (``ckd_vitb_mce``, ``ckd_tiny``) on the
command line or in a launch file.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ckd_ros.errors import ConfigError
from ckd_ros.resources import resource_dirs

CE_MODES = ("mce", "ce", "none")
CE_TEMPLATE_RANGES = ("ctr_point", "all")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of one CKD network (both student branches and the fused CENTER head).

    ``ce_mode`` picks the token elimination: ``mce`` (one decision from the element-wise max of
    both branches' attention, the released best model), ``ce`` (each branch ranks with its own
    attention) or ``none``. Elimination changes only the forward pass, never the parameters, so
    one checkpoint runs under every mode.
    """

    name: str = "ckd_vitb_mce"
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    template_size: int = 128
    search_size: int = 256
    ce_mode: str = "mce"
    ce_loc: tuple[int, ...] = (3, 6, 9)
    ce_keep_ratio: float = 0.7
    ce_template_range: str = "ctr_point"
    head_channels: int = 256
    share_student: bool = False
    drop_path_rate: float = 0.1
    # The original 224-px ViT position table (14x14 + cls), unused by forward but part of the
    # official state_dict, so strict loading needs it.
    legacy_pos_tokens: int = 197
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ce_loc", tuple(int(i) for i in self.ce_loc))
        problems = []
        if self.embed_dim <= 0 or self.depth <= 0 or self.num_heads <= 0:
            problems.append("embed_dim, depth and num_heads must be positive")
        elif self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        for key in ("template_size", "search_size"):
            size = getattr(self, key)
            if size <= 0 or size % self.patch_size:
                problems.append(f"{key} {size} is not a positive multiple of patch_size {self.patch_size}")
        if self.ce_mode not in CE_MODES:
            problems.append(f"ce_mode {self.ce_mode!r} is not one of {CE_MODES}")
        if self.ce_template_range not in CE_TEMPLATE_RANGES:
            problems.append(f"ce_template_range {self.ce_template_range!r} is not one of {CE_TEMPLATE_RANGES}")
        if not 0.0 < self.ce_keep_ratio <= 1.0:
            problems.append(f"ce_keep_ratio {self.ce_keep_ratio} is not in (0, 1]")
        bad_loc = [i for i in self.ce_loc if not 0 <= i < self.depth]
        if bad_loc:
            problems.append(f"ce_loc {list(self.ce_loc)} has blocks outside 0..{self.depth - 1}")
        if self.head_channels < 8 or self.head_channels % 8:
            problems.append(f"head_channels {self.head_channels} must be a multiple of 8 (widths /2, /4, /8)")
        if problems:
            raise ConfigError(f"model config {self.name!r}: " + "; ".join(problems))

    @property
    def template_feat(self) -> int:
        return self.template_size // self.patch_size

    @property
    def search_feat(self) -> int:
        return self.search_size // self.patch_size

    @property
    def elimination_layers(self) -> tuple[int, ...]:
        """Blocks where tokens are removed: empty when elimination is off."""
        return () if self.ce_mode == "none" else self.ce_loc

    def search_token_counts(self) -> list[int]:
        """Search tokens alive after each elimination layer, e.g. [256, 180, 126, 89]."""
        counts = [self.search_feat**2]
        for _ in self.elimination_layers:
            counts.append(math.ceil(self.ce_keep_ratio * counts[-1]))
        return counts

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ce_loc"] = list(self.ce_loc)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown model config keys {unknown}; known: {sorted(known)}")
        try:
            return cls(**data)
        except (TypeError, ConfigError) as exc:  # TypeError: a value of the wrong type
            raise ConfigError(f"{source}: {exc}") from None


def config_dirs() -> list[Path]:
    """Where variant YAML files are looked up (checkout, pip prefix, ROS prefixes), first match wins."""
    return resource_dirs("config", "models")


def available_variants() -> list[str]:
    names: set[str] = set()
    for d in config_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def load_variant(name_or_path: str | os.PathLike[str]) -> ModelConfig:
    """A variant by name (``ckd_vitb_mce``) or by the path of a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        found = [d / f"{name_or_path}.yaml" for d in config_dirs() if (d / f"{name_or_path}.yaml").is_file()]
        if not found:
            raise ConfigError(
                f"unknown model variant {str(name_or_path)!r}; available: {', '.join(available_variants()) or 'none found'}"
            )
        path = found[0]
    if not path.is_file():
        raise ConfigError(f"model config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of model config keys, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    return ModelConfig.from_dict(data, source=str(path))
