"""CKD losses (docs/training.md, "Losses"): tracking (head term + GIoU + L1) and the style/content
distillation.

The tracking loss's head-specific term (the CENTER head's focal loss on a Gaussian heatmap) is the
box head's own (``BoxHead.loss`` in ``model/head.py``); ``gaussian_heatmap`` and ``focal_loss`` are
re-exported from there. GIoU and L1 on the decoded box are the same for every head.

Style of a feature X (B, N, C) is its per-channel mean and (unbiased) std over tokens; content is
the instance-normalised X, which by construction carries none of those statistics. CKD pulls the
two students' styles together and keeps each student's content close to its own-modality teacher.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ckd_ros.model import head as box_heads
from ckd_ros.model.head import BoxHead, focal_loss, gaussian_heatmap

__all__ = [
    "content_loss",
    "cxcywh_to_xyxy",
    "feature_style",
    "focal_loss",
    "gaussian_heatmap",
    "generalized_iou",
    "giou_l1_loss",
    "instance_norm",
    "style_loss",
    "tracking_loss",
    "xywh_to_xyxy",
]


def feature_style(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and unbiased std over tokens: (B, C) each."""
    return x.mean(dim=1), x.std(dim=1)


def instance_norm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``nn.InstanceNorm1d(C)`` on (B, C, N): per channel over tokens, biased variance, no affine."""
    mu = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps)


def style_loss(feats_rgb: Sequence[Tensor], feats_tir: Sequence[Tensor], stop_gradient: bool = False) -> Tensor:
    """Σ_layers mean_{b,c}[(μ_rgb − μ_tir)² + (σ_rgb − σ_tir)²] between the two students.

    ``stop_gradient`` detaches the RGB side, pulling only TIR toward the RGB style.
    """
    total = feats_rgb[0].new_zeros(())
    for a, b in zip(feats_rgb, feats_tir, strict=True):
        mu_a, sd_a = feature_style(a.detach() if stop_gradient else a)
        mu_b, sd_b = feature_style(b)
        total = total + ((mu_a - mu_b) ** 2 + (sd_a - sd_b) ** 2).mean()
    return total


def content_loss(teacher_feats: Sequence[Tensor], student_feats: Sequence[Tensor], stop_gradient: bool = True) -> Tensor:
    """Σ_layers MSE(IN(teacher), IN(student)) for one modality pair (teachers detached by default)."""
    total = student_feats[0].new_zeros(())
    for t, s in zip(teacher_feats, student_feats, strict=True):
        total = total + F.mse_loss(instance_norm(s), instance_norm(t.detach() if stop_gradient else t))
    return total


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    return torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], dim=1)


def xywh_to_xyxy(b: Tensor) -> Tensor:
    return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], dim=1)


def generalized_iou(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Element-wise GIoU and IoU of xyxy boxes (B, 4)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-12)
    enclose = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    return iou - (enclose - union) / enclose.clamp(min=1e-12), iou


def giou_l1_loss(pred_boxes: Tensor, gt_boxes: Tensor) -> tuple[Tensor, Tensor]:
    """(mean(1 − GIoU), mean |pred − gt|) in xyxy; pred (B, 4) cx, cy, w, h; gt (B, 4) x, y, w, h.

    The GT is clamped to [0, 1]. Degenerate predictions (negative size) give a GIoU loss of 0, as the
    official code's fallback does.
    """
    pred = cxcywh_to_xyxy(pred_boxes.float())
    gt = xywh_to_xyxy(gt_boxes.float()).clamp(0.0, 1.0)
    l1 = F.l1_loss(pred, gt)
    if bool((pred[:, 2:] < pred[:, :2]).any()):
        return pred.new_zeros(()), l1
    giou, _ = generalized_iou(pred, gt)
    return (1 - giou).mean(), l1


def tracking_loss(
    out: dict[str, Tensor],
    gt_boxes: Tensor,
    giou_weight: float = 2.0,
    l1_weight: float = 5.0,
    head_weight: float = 1.0,
    head: type[BoxHead] | BoxHead | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """2·GIoU + 5·L1 + 1·(the head's term: focal for CENTER) on one head's output (box from the
    un-windowed peak), with its terms; the head's term is named ``head.LOSS_NAME``. ``head``: the
    class (or an instance) that produced ``out``; by default the network's (``head.HEAD``)."""
    head = head if head is not None else box_heads.HEAD
    giou, l1 = giou_l1_loss(out["pred_boxes"].view(-1, 4), gt_boxes)
    own = head.loss(out, gt_boxes)
    total = giou_weight * giou + l1_weight * l1 + head_weight * own
    with torch.no_grad():
        _, iou = generalized_iou(cxcywh_to_xyxy(out["pred_boxes"].view(-1, 4).float()), xywh_to_xyxy(gt_boxes.float()))
    terms = {
        "giou": float(giou.detach()),
        "l1": float(l1.detach()),
        head.LOSS_NAME: float(own.detach()),
        "iou": float(iou.mean()),
    }
    return total, terms
