"""The CKD network (docs/model.md, docs/checkpoints.md): build a variant, or load official / own checkpoints.

>>> model = load_model("ckd_vitb_mce.pt", device="cpu")             # MCE at blocks 3, 6, 9
>>> model = load_model("OSTrack_CKD_ep0010.pth.tar", trust_pickle=True, ce_loc=())
>>> out = model(template_rgb, template_tir, search_rgb, search_tir)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from ckd_ros.errors import CheckpointError
from ckd_ros.model.checkpoint import (
    FORMAT,
    check_loadable,
    infer_config,
    read_checkpoint,
    save_checkpoint,
)
from ckd_ros.model.ckd import CKDNet, LockstepOutput, head_input, run_lockstep
from ckd_ros.model.config import ModelConfig, available_variants, load_variant
from ckd_ros.model.head import BoxHead, CenterHead, build_head, decode_boxes
from ckd_ros.model.interface import TrackedModel
from ckd_ros.model.vit import ViTBranch
from ckd_ros.runtime import resolve_device

__all__ = [
    "FORMAT",
    "BoxHead",
    "CKDNet",
    "CenterHead",
    "LockstepOutput",
    "ModelConfig",
    "TrackedModel",
    "ViTBranch",
    "available_variants",
    "build_head",
    "build_model",
    "decode_boxes",
    "head_input",
    "load_model",
    "load_variant",
    "run_lockstep",
    "save_checkpoint",
]


def _as_config(variant: str | ModelConfig | None) -> ModelConfig | None:
    if variant is None or isinstance(variant, ModelConfig):
        return variant
    return load_variant(variant)


def build_model(variant: str | ModelConfig = "ckd_vitb_mce", device: str | torch.device = "cpu") -> CKDNet:
    """A randomly initialised network of a named variant (or config), in eval mode."""
    cfg = _as_config(variant)
    return CKDNet(cfg).to(resolve_device(device)).eval()


def load_model(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    ce_loc: Sequence[int] | None = None,
    ce_mode: str | None = None,
    variant: str | ModelConfig | None = None,
    trust_pickle: bool = False,
) -> CKDNet:
    """Load weights with a strict key and shape match, in eval mode on ``device``.

    ``path``: the project's own file (config embedded), a bare official state_dict, or (with
    ``trust_pickle=True``) an official trainer file; teacher keys are dropped. ``variant`` names
    the config for a bare state_dict when its shapes alone are not enough (e.g. head count);
    without it the official ViT-B settings are assumed. ``ce_loc=()`` or ``ce_mode='none'``
    switches token elimination off; ``ce_mode='ce'`` ranks per branch. Keys, shapes and memory
    are checked against the config before the network is built, so a bad file allocates nothing.
    """
    state, cfg = read_checkpoint(path, trust_pickle=trust_pickle)
    if cfg is None:
        cfg = infer_config(state, _as_config(variant))
    check_loadable(cfg, state, str(path))
    model = CKDNet(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # should be caught above; keep the message short if not
        raise CheckpointError(f"{path}: {str(exc).splitlines()[0]}") from None
    model.set_elimination(ce_mode=ce_mode, ce_loc=ce_loc)
    return model.to(resolve_device(device)).eval()
