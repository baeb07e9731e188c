"""Training run configuration: one YAML file per run under ``config/train/``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ckd_ros.data.files import read_text
from ckd_ros.errors import ConfigError
from ckd_ros.model import ModelConfig, load_variant
from ckd_ros.train.actor import LossConfig
from ckd_ros.train.sampler import SamplerConfig


@dataclass
class DataConfig:
    kind: str = "synthetic"  # synthetic | lasher | rgbt234 | rgbt210 | gtot | vtuav | folder (with ``root``)
    root: str | None = None
    num_sequences: int = 256  # synthetic: training seeds 0..n-1 (the test suite uses 10000+)
    length: int = 150
    focus: str = "none"  # synthetic: "cycle" gives each sequence a gap-scenario focus, as the test suite
    sequences: list[str] | None = None  # datasets: only these sequence names (default: all, or the root's list file)
    align: str = "resize"  # thermal onto RGB pixels before cropping: none | resize | homography (as the node)
    homography: list[float] | None = None  # align=homography: row-major 3x3 TIR→RGB
    num_workers: int = 2  # DataLoader worker processes that decode frames and build pairs (0: in the loop)

    def __post_init__(self) -> None:
        from ckd_ros.preprocess.align import Aligner

        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be ≥ 0, got {self.num_workers}")
        Aligner(self.align, self.homography)  # a bad mode or matrix: one line now, not in a worker


@dataclass
class TrainConfig:
    name: str = "run"
    stage: int = 1
    model: str = "ckd_small"
    init: str | None = None  # previous stage's last.pt, or real weights: a CKD model / a ViT tracker (backbone.*)
    trust_pickle: bool = False  # init: also read official trainer files (the allowlist unpickler, as `convert`)
    steps: int = 1000
    batch_size: int = 16
    lr: dict[str, float] = field(
        default_factory=lambda: {"head": 5e-5, "rgb_branch": 5e-6, "tir_branch": 5e-6, "teacher_rgb": 5e-6, "teacher_tir": 5e-6}
    )
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    loss: LossConfig = field(default_factory=LossConfig)
    sampler: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    checkpoint_every: int = 500
    log_every: int = 10
    tensorboard: bool = True  # also write OUT/tensorboard scalars (needs the tensorboard package)
    out_dir: str = "out/train"
    seed: int = 42
    device: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.stage not in (0, 1, 2):
            raise ConfigError(f"stage must be 0 (teachers), 1 (CKD) or 2 (MCE head), got {self.stage}")
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("steps and batch_size must be positive")
        if not self.lr:
            raise ConfigError("lr needs at least one 'name substring: learning rate' entry")
        if self.stage > 0 and not self.init:
            raise ConfigError(f"stage {self.stage} starts from the previous stage: set init to its checkpoint")

    def model_config(self) -> ModelConfig:
        return load_variant(self.model)

    def sampler_config(self) -> SamplerConfig:
        m = self.model_config()
        base = {"template_size": m.template_size, "search_size": m.search_size, "patch_size": m.patch_size}
        if self.stage == 2:  # no masked modelling when fine-tuning the head
            base["mask_ratio"] = 0.0
        try:
            return SamplerConfig(**(base | self.sampler))
        except TypeError as exc:
            raise ConfigError(f"sampler: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**data)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value (e.g. steps=200 or loss.style=0)")
    key, value = text.split("=", 1)
    return key.split("."), yaml.safe_load(value)


def load_train_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such training config")
    try:
        data = yaml.safe_load(read_text(path, "training config")) or {}
    except yaml.YAMLError as exc:  # PyYAML's message spans several lines: one line for the CLI
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping")
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    data.setdefault("name", path.stem)
    try:
        loss = _build(LossConfig, data.pop("loss", {}) or {}, f"{path}: loss")
        dcfg = _build(DataConfig, data.pop("data", {}) or {}, f"{path}: data")
        return _build(TrainConfig, data | {"loss": loss, "data": dcfg}, str(path))
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
