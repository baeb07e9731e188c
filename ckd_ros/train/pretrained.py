"""Starting a stage from real weights rather than from a training file of ours.

Two kinds of file, told apart by their key names:

* a CKD model (``rgb_branch.*``, ``tir_branch.*``, ``box_head.*``: a converted official checkpoint,
  ``ckd-ros convert`` output, or an official trainer file read with ``trust_pickle``): stages 1
  and 2 load the students and the fused head as they are. Teacher keys are never kept by the
  checkpoint reader, so the teachers start as copies of the students, each single-modality head as
  its half of the fused head's first convolutions (biases halved, so the two halves add up to the
  fused response) and the fused head's deeper layers. Stage 2 never runs the teachers anyway.
* a single-modality ViT tracker with the official key names (``backbone.*``, ``box_head.*``:
  DropTrack, OSTrack): the official stage-1 initialisation (docs/training.md, Stages). Position embeddings are
  resized bilinearly to this model's grids and DropTrack's temporal embeddings added; stage 0 loads
  both teachers and their heads; stage 1 also gives both students the backbone and the fused head
  the head with its first convolutions duplicated along the input channels (not halved).

Anything else is a CheckpointError naming the file and the keys it does have.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ckd_ros.errors import CheckpointError
from ckd_ros.model.checkpoint import check_state_dict, read_checkpoint
from ckd_ros.train.network import STUDENT_PREFIXES, CKDTrainingNet

OPTIONAL_BRANCH_KEYS = ("cls_token", "pos_embed")  # unused legacy parameters (docs/official-quirks.md): kept only if they fit


def _resize_grid(pe: Tensor, side: int) -> Tensor:
    """(1, n², C) position embeddings on an n×n grid → (1, side², C), bilinear, align_corners False."""
    n = math.isqrt(pe.shape[1])
    if n * n != pe.shape[1]:
        raise CheckpointError(f"position embedding of {pe.shape[1]} tokens is not a square grid")
    if n == side:
        return pe
    grid = pe.reshape(1, n, n, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, side * side, -1)


def _backbone_state(net: CKDTrainingNet, state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """``backbone.*`` adapted to one of this net's branches (resized grids, temporal embeddings added)."""
    src = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    for part, side in (("z", net.cfg.template_feat), ("x", net.cfg.search_feat)):
        key = f"pos_embed_{part}"
        if key not in src:
            raise CheckpointError(f"{path}: backbone has no {key}: not a ViT tracker backbone")
        src[key] = _resize_grid(src[key], side)
        temporal = src.pop(f"temporal_pos_embed_{part}", None)
        if temporal is not None:
            src[key] = src[key] + temporal.reshape(1, -1, src[key].shape[-1])
    want = net.teacher_rgb.state_dict()
    for key in OPTIONAL_BRANCH_KEYS:
        if key in src and key in want and src[key].shape != want[key].shape:
            del src[key]
    loaded = {k: v for k, v in src.items() if k in want}
    expected = {k: v for k, v in want.items() if k in loaded or k not in OPTIONAL_BRANCH_KEYS}
    check_state_dict(expected, loaded, f"{path} (backbone.*)")
    return loaded


def _head_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k.removeprefix("box_head."): v for k, v in state.items() if k.startswith("box_head.")}


@torch.no_grad()
def _from_vit_tracker(net: CKDTrainingNet, state: dict[str, Tensor], path: Path, stage: int) -> None:
    if stage == 2:
        raise CheckpointError(
            f"{path}: a single-modality tracker (backbone.*); stage 2 fine-tunes the MCE head of a CKD model: "
            "init from a stage-1 run or a converted CKD checkpoint"
        )
    backbone, head = _backbone_state(net, state, path), _head_state(state)
    check_state_dict(net.box_head_v.state_dict(), head, f"{path} (box_head.*)")
    for branch in (net.teacher_rgb, net.teacher_tir) + ((net.rgb_branch, net.tir_branch) if stage == 1 else ()):
        branch.load_state_dict(backbone, strict=False)
    net.box_head_v.load_state_dict(head)
    net.box_head_i.load_state_dict(head)
    if stage == 1:
        fused = {
            k: torch.cat([v, v], dim=1) if k.startswith("conv1_") and k.endswith(".0.weight") else v for k, v in head.items()
        }
        net.box_head.load_state_dict(fused)


@torch.no_grad()
def init_teachers_from_students(net: CKDTrainingNet) -> None:
    """Teachers for a stage started from a CKD model: copies of the students; each single-modality
    head is its modality's half of the fused first convolutions (bias halved) plus the deeper layers."""
    net.teacher_rgb.load_state_dict(net.rgb_branch.state_dict())
    net.teacher_tir.load_state_dict(net.tir_branch.state_dict())
    fused, c = net.box_head.state_dict(), net.cfg.embed_dim
    for half, head in ((slice(0, c), net.box_head_v), (slice(c, 2 * c), net.box_head_i)):
        own = {}
        for key, value in fused.items():
            if key.startswith("conv1_") and key.endswith(".0.weight"):
                own[key] = value[:, half].clone()
            elif key.startswith("conv1_") and key.endswith(".0.bias"):
                own[key] = value / 2
            else:
                own[key] = value.clone()
        head.load_state_dict(own)


def load_pretrained(net: CKDTrainingNet, path: str | Path, stage: int, trust_pickle: bool = False) -> None:
    """Initialise ``net`` for ``stage`` from a file that is not a training file of ours (see module doc)."""
    path = Path(path)
    state, _ = read_checkpoint(path, trust_pickle)
    if any(k.startswith("rgb_branch.") for k in state):
        if stage == 0:
            raise CheckpointError(
                f"{path}: a CKD model (students + fused head); stage 0 trains teachers from a single-modality ViT "
                "tracker checkpoint (backbone.*, box_head.*)"
            )
        expected = {k: v for k, v in net.state_dict().items() if k.startswith(STUDENT_PREFIXES)}
        check_state_dict(expected, state, str(path))
        net.load_state_dict(state, strict=False)
        init_teachers_from_students(net)
    elif any(k.startswith("backbone.") for k in state):
        _from_vit_tracker(net, state, path, stage)
    else:
        raise CheckpointError(
            f"{path}: keys fit neither a CKD model (rgb_branch.*, tir_branch.*, box_head.*) nor a ViT tracker "
            f"(backbone.*, box_head.*); it has {list(state)[:5]}"
        )
