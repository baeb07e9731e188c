"""CKD training (docs/training.md): stage 0 teachers, stage 1 coupled distillation, stage 2 MCE head.

``ckd-ros train config/train/NAME.yaml [--set key=value ...]``; see ``models/README.md`` for the
recipe of the shipped model. ``Trainer`` is the generic loop; ``build_trainer`` assembles a CKD run
(net, starting weights, actor, data) for it.
"""

from ckd_ros.train.actor import CKDActor, LossConfig
from ckd_ros.train.build import build_trainer, initialise, load_teacher
from ckd_ros.train.config import DataConfig, TrainConfig, load_train_config
from ckd_ros.train.data import StepLoader, make_sources
from ckd_ros.train.network import CKDTrainingNet
from ckd_ros.train.sampler import PairSampler, SamplerConfig
from ckd_ros.train.trainer import Trainer, TrainerSettings, param_groups, read_training_state

__all__ = [
    "CKDActor",
    "CKDTrainingNet",
    "DataConfig",
    "LossConfig",
    "PairSampler",
    "SamplerConfig",
    "StepLoader",
    "TrainConfig",
    "Trainer",
    "TrainerSettings",
    "build_trainer",
    "initialise",
    "load_teacher",
    "load_train_config",
    "make_sources",
    "param_groups",
    "read_training_state",
]
