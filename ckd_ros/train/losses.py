"""CKD losses (spec §4.5): tracking (focal + GIoU + L1) and the style/content distillation.

Style of a feature X (B, N, C) is its per-channel mean and (unbiased) std over tokens; content is
the instance-normalised X, which by construction carries none of those statistics. CKD pulls the
two students' styles together and keeps each student's content close to its own-modality teacher.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


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


def _gaussian_radius(w: float, h: float, min_overlap: float = 0.7) -> float:
    """CornerNet's radius (the 'bug version' formulas OSTrack uses)."""
    o = min_overlap
    b1, c1 = w + h, w * h * (1 - o) / (1 + o)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (w + h), (1 - o) * w * h
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    b3, c3 = -2 * o * (w + h), (o - 1) * w * h
    r3 = (b3 + math.sqrt(b3**2 - 16 * o * c3)) / 2
    return min(r1, r2, r3)


def _gaussian_kernel(radius: int) -> np.ndarray:
    d = 2 * radius + 1
    sigma = d / 6
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    return g


def gaussian_heatmap(boxes: Tensor, feat_size: int = 16) -> Tensor:
    """CenterNet label: normalised (B, 4) x, y, w, h → (B, 1, F, F), peak 1 at the rounded centre.

    The (2r+1)² Gaussian window is written where it overlaps the map, truncated at the borders, also
    when the rounded centre itself lies outside (a centre at x = 0.99·16 rounds to column 16): the
    official ``draw_gaussian`` then writes the window's tail that stays inside and the map has no
    cell equal to 1 (the focal loss falls back to its negative term). Its slicing arithmetic is the
    intersection of the window with the map, which is what is computed here.
    """
    out = np.zeros((boxes.shape[0], 1, feat_size, feat_size), np.float32)
    fb = (boxes.detach().float().cpu() * feat_size).numpy()
    centres = torch.from_numpy(fb[:, :2] + fb[:, 2:] / 2).round().int().numpy()  # torch.round: half to even
    for i, ((_, _, w, h), (cx, cy)) in enumerate(zip(fb, centres)):
        r = int(max(0, _gaussian_radius(float(w), float(h))))
        x0, x1 = max(0, cx - r), min(feat_size, cx + r + 1)  # the window's columns inside the map
        y0, y1 = max(0, cy - r), min(feat_size, cy + r + 1)
        if x1 <= x0 or y1 <= y0:
            continue  # the whole window is outside
        g = _gaussian_kernel(r)
        region = out[i, 0, y0:y1, x0:x1]
        np.maximum(region, g[y0 - cy + r : y1 - cy + r, x0 - cx + r : x1 - cx + r], out=region)
    return torch.from_numpy(out).to(boxes.device)


def focal_loss(score_map: Tensor, heatmap: Tensor) -> Tensor:
    """CenterNet focal loss (α=2, β=4), normalised by the number of cells with label exactly 1."""
    p = score_map.float().clamp(min=1e-12)
    pos = heatmap.eq(1).float()
    neg = 1.0 - pos
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p**2 * (1 - heatmap) ** 4 * neg
    n_pos = pos.sum()
    if n_pos == 0:
        return -neg_loss.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / n_pos


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
    out: dict[str, Tensor], gt_boxes: Tensor, giou_weight: float = 2.0, l1_weight: float = 5.0, focal_weight: float = 1.0
) -> tuple[Tensor, dict[str, float]]:
    """2·GIoU + 5·L1 + 1·focal on one head's output (box from the un-windowed peak), with its terms."""
    heatmap = gaussian_heatmap(gt_boxes, out["score_map"].shape[-1])
    giou, l1 = giou_l1_loss(out["pred_boxes"].view(-1, 4), gt_boxes)
    focal = focal_loss(out["score_map"], heatmap)
    total = giou_weight * giou + l1_weight * l1 + focal_weight * focal
    with torch.no_grad():
        _, iou = generalized_iou(cxcywh_to_xyxy(out["pred_boxes"].view(-1, 4).float()), xywh_to_xyxy(gt_boxes.float()))
    terms = {"giou": float(giou.detach()), "l1": float(l1.detach()), "focal": float(focal.detach()), "iou": float(iou.mean())}
    return total, terms
