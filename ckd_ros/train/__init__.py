"""CKD training (spec §4): stage 0 teachers, stage 1 coupled distillation, stage 2 MCE head.

``ckd-ros train config/train/NAME.yaml [--set key=value ...]``; see ``models/README.md`` for the
recipe of the shipped model.
"""

from ckd_ros.train.actor import CKDActor, LossConfig
from ckd_ros.train.config import DataConfig, TrainConfig, load_train_config
from ckd_ros.train.network import CKDTrainingNet
from ckd_ros.train.sampler import PairSampler, SamplerConfig
from ckd_ros.train.trainer import Trainer, param_groups, read_training_state

__all__ = [
    "CKDActor",
    "CKDTrainingNet",
    "DataConfig",
    "LossConfig",
    "PairSampler",
    "SamplerConfig",
    "TrainConfig",
    "Trainer",
    "load_train_config",
    "param_groups",
    "read_training_state",
]


def make_sources(cfg: TrainConfig):
    """(callable index → source, count) for the run's data section."""
    from ckd_ros.errors import ConfigError

    if cfg.data.kind == "synthetic":
        from ckd_ros.data.synthetic import SyntheticPool

        pool = SyntheticPool(cfg.data.num_sequences, cfg.data.length, focus=cfg.data.focus)
        return pool, len(pool)
    raise ConfigError(f"data kind {cfg.data.kind!r} is not supported yet; use 'synthetic'")
