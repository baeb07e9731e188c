"""Model variants as data: one dataclass, one YAML file per variant under ``config/models/``.

The official ViT-B/16 CKD model and the small CPU variants share one code path; only these numbers
differ. A checkpoint in the project's own format embeds its config, so loading it never needs the
YAML files; they exist so that people can name a variant (``ckd_vitb_mce``, ``ckd_tiny``) on the
command line or in a launch file.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ckd_ros.errors import ConfigError
from ckd_ros.precisions import CE_MODES
from ckd_ros.resources import resource_dirs

CE_TEMPLATE_RANGES = ("ctr_point", "all")

# A config is data that may come from a downloaded file, so it is bounded before anything is built.
# The official ViT-B CKD has 0.18 G parameters (0.7 GB); 4 G parameters (16 GB of float32) leaves
# room for far larger backbones while refusing a file whose numbers would exhaust any machine.
MAX_PARAMETERS = 4_000_000_000
# Python objects per block cost memory and build time too, however thin the block: a bound on
# depth keeps a config of a million one-wide blocks from passing the parameter bound.
MAX_DEPTH = 256
_INT_FIELDS = (
    "embed_dim",
    "depth",
    "num_heads",
    "patch_size",
    "template_size",
    "search_size",
    "head_channels",
    "legacy_pos_tokens",
)
_FLOAT_FIELDS = ("mlp_ratio", "ce_keep_ratio", "drop_path_rate")
_STR_FIELDS = ("name", "ce_mode", "ce_template_range", "description")
_MAX_INT = 2**40


def _show(value: Any, limit: int = 60) -> str:
    """A value for a one-line message: a hostile file may hold a 10**5000 (whose repr raises) or a
    million-item list, and the message must stay one short line."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        text = f"<{type(value).__name__} of more than 4300 digits>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class ModelConfig:
    """Shape of one CKD network (both student branches and the fused box head).

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
        """Validate types, then ranges, then size: each stage assumes the one before it passed.

        Every value may come from a checkpoint found anywhere, so a wrong one must be named in one
        line (``ConfigError``) here, never surface as a ZeroDivisionError, a NaN-sized layer or an
        allocation of hundreds of GB when the network is built.
        """
        problems = self._type_problems()
        if problems:
            raise ConfigError(f"model config {_show(self.name)}: " + "; ".join(problems))
        for key in _INT_FIELDS:
            object.__setattr__(self, key, int(getattr(self, key)))
        for key in _FLOAT_FIELDS:
            object.__setattr__(self, key, float(getattr(self, key)))
        object.__setattr__(self, "ce_loc", tuple(int(i) for i in self.ce_loc))
        problems = self._range_problems()
        if problems:
            raise ConfigError(f"model config {_show(self.name)}: " + "; ".join(problems))
        count = self.parameter_count()
        if count > MAX_PARAMETERS:
            raise ConfigError(
                f"model config {_show(self.name)}: would have {count / 1e9:.3g} G parameters, about "
                f"{4 * count / 1e9:.3g} GB as float32 (embed_dim {self.embed_dim}, depth {self.depth}, "
                f"mlp_ratio {self.mlp_ratio:g}); ckd_ros builds at most {MAX_PARAMETERS / 1e9:.0f} G "
                f"({4 * MAX_PARAMETERS / 1e9:.0f} GB)"
            )

    def _type_problems(self) -> list[str]:
        """Wrong kinds of value (a string, a bool, a float where a count is needed, NaN, inf)."""
        problems = []
        for key in _INT_FIELDS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                problems.append(f"{key} must be an integer, got {_show(value)} ({type(value).__name__})")
            elif abs(value) > _MAX_INT:  # far past any bound below; keeps float arithmetic finite
                problems.append(f"{key} {_show(value)} is out of range")
        for key in _FLOAT_FIELDS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                problems.append(f"{key} must be a number, got {_show(value)} ({type(value).__name__})")
            elif not (abs(value) <= _MAX_INT and math.isfinite(value)):  # NaN fails both comparisons
                problems.append(f"{key} must be a finite number, got {_show(value)}")
        for key in _STR_FIELDS:
            value = getattr(self, key)
            if not isinstance(value, str):
                problems.append(f"{key} must be a string, got {type(value).__name__}")
        if not isinstance(self.share_student, bool):
            problems.append(f"share_student must be true or false, got {_show(self.share_student)}")
        loc = self.ce_loc
        if not isinstance(loc, list | tuple) or any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in loc):
            problems.append(f"ce_loc must be a list of block indices, got {_show(loc)}")
        return problems

    def _range_problems(self) -> list[str]:
        problems = []
        if self.embed_dim <= 0 or self.depth <= 0 or self.num_heads <= 0:
            problems.append("embed_dim, depth and num_heads must be positive")
        elif self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.depth > MAX_DEPTH:
            problems.append(f"depth {self.depth} is more than {MAX_DEPTH} blocks")
        if self.patch_size <= 0:
            problems.append(f"patch_size {self.patch_size} must be positive")
        else:
            for key in ("template_size", "search_size"):
                size = getattr(self, key)
                if size <= 0 or size % self.patch_size:
                    problems.append(f"{key} {size} is not a positive multiple of patch_size {self.patch_size}")
        if self.mlp_ratio <= 0 or (self.embed_dim > 0 and int(self.embed_dim * self.mlp_ratio) < 1):
            problems.append(f"mlp_ratio {self.mlp_ratio} must give an MLP at least one unit wide")
        if self.ce_mode not in CE_MODES:
            problems.append(f"ce_mode {_show(self.ce_mode)} is not one of {CE_MODES}")
        if self.ce_template_range not in CE_TEMPLATE_RANGES:
            problems.append(f"ce_template_range {_show(self.ce_template_range)} is not one of {CE_TEMPLATE_RANGES}")
        if not 0.0 < self.ce_keep_ratio <= 1.0:
            problems.append(f"ce_keep_ratio {self.ce_keep_ratio} is not in (0, 1]")
        if not 0.0 <= self.drop_path_rate < 1.0:
            problems.append(f"drop_path_rate {self.drop_path_rate} is not in [0, 1)")
        bad_loc = [i for i in self.ce_loc if not 0 <= i < self.depth]
        if bad_loc:
            problems.append(f"ce_loc {_show(list(self.ce_loc))} has blocks outside 0..{self.depth - 1}")
        from ckd_ros.model.head import HEAD  # at call time: no cycle with head.py, and the current head

        head_problem = HEAD.width_problem(self.head_channels)
        if head_problem:
            problems.append(head_problem)
        if self.legacy_pos_tokens < 0:
            problems.append(f"legacy_pos_tokens {self.legacy_pos_tokens} must not be negative")
        return problems

    def state_dict_layout(self) -> Iterator[tuple[str, tuple[int, ...], bool]]:
        """``(key, shape, is_parameter)`` for every entry of the inference state_dict, in order.

        docs/checkpoints.md ("The inference keys") as data, computed from the numbers alone, so
        that a checkpoint can be checked against its config and the parameter count bounded before
        one byte of the network is allocated. Mirrors ``ViTBranch`` and ``CKDNet``; the box head's
        part is the head's own (``head.HEAD.param_layout``). test_checkpoint holds it equal to the
        built network's ``state_dict`` for every shipped variant.
        """
        from ckd_ros.model.head import HEAD  # at call time: no cycle with head.py, and the current head

        d, hidden, p = self.embed_dim, int(self.embed_dim * self.mlp_ratio), self.patch_size
        branch: list[tuple[str, tuple[int, ...]]] = [
            ("cls_token", (1, 1, d)),
            ("pos_embed", (1, self.legacy_pos_tokens, d)),
            ("pos_embed_z", (1, self.template_feat**2, d)),
            ("pos_embed_x", (1, self.search_feat**2, d)),
            ("patch_embed.proj.weight", (d, 3, p, p)),
            ("patch_embed.proj.bias", (d,)),
        ]
        for i in range(self.depth):
            for name, shape in (
                ("norm1.weight", (d,)),
                ("norm1.bias", (d,)),
                ("attn.qkv.weight", (3 * d, d)),
                ("attn.qkv.bias", (3 * d,)),
                ("attn.proj.weight", (d, d)),
                ("attn.proj.bias", (d,)),
                ("norm2.weight", (d,)),
                ("norm2.bias", (d,)),
                ("mlp.fc1.weight", (hidden, d)),
                ("mlp.fc1.bias", (hidden,)),
                ("mlp.fc2.weight", (d, hidden)),
                ("mlp.fc2.bias", (d,)),
            ):
                branch.append((f"blocks.{i}.{name}", shape))
        branch += [("norm.weight", (d,)), ("norm.bias", (d,))]
        for prefix in ("rgb_branch.", "tir_branch."):
            for name, shape in branch:
                yield prefix + name, shape, True
        yield from HEAD.param_layout(2 * d, self.head_channels, "box_head.")

    def state_dict_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every inference state_dict key and its shape (see ``state_dict_layout``)."""
        return {key: shape for key, shape, _ in self.state_dict_layout()}

    def parameter_count(self) -> int:
        """Trainable values of the network, without building it (a shared student counts once)."""
        total = 0
        for key, shape, is_param in self.state_dict_layout():
            if is_param and not (self.share_student and key.startswith("tir_branch.")):
                total += math.prod(shape)
        return total

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
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> ModelConfig:
        """A config from a mapping (YAML, an embedded checkpoint config): one-line errors only."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping of model config keys, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(_show(k, 40) for k in data if k not in known)
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ConfigError(f"{source}: unknown model config keys [{', '.join(unknown[:5])}]{more}; known: {sorted(known)}")
        try:
            return cls(**dict(data))
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
