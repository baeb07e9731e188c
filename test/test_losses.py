"""CKD losses against hand-computed values (docs/training.md, Losses)."""

from __future__ import annotations

import math

import pytest
import torch

from ckd_ros.train.losses import content_loss, focal_loss, gaussian_heatmap, giou_l1_loss, style_loss


def t(rows):
    return torch.tensor(rows, dtype=torch.float32).view(1, len(rows), 1)  # (B=1, N tokens, C=1)


def test_style_loss_hand_computed():
    # RGB tokens [1, 3]: μ = 2, σ = √2 (unbiased); TIR [2, 2]: μ = 2, σ = 0 → (0)² + (√2)² = 2 per layer
    assert style_loss([t([1, 3])], [t([2, 2])]).item() == pytest.approx(2.0)
    assert style_loss([t([1, 3])] * 3, [t([2, 2])] * 3).item() == pytest.approx(6.0)  # summed over layers


def test_style_loss_stop_gradient_detaches_rgb():
    a, b = t([1, 3]).requires_grad_(), t([2, 2]).requires_grad_()
    style_loss([a], [b], stop_gradient=True).backward()
    assert a.grad is None and b.grad is not None


def test_content_loss_is_style_free():
    # IN removes per-channel mean and scale: [0, 4] and [1, 3] have the same content
    assert content_loss([t([0, 4])], [t([1, 3])]).item() == pytest.approx(0.0, abs=1e-6)
    # opposite content: IN → [−1, 1] vs [1, −1]: MSE = 4 (up to the 1e-5 epsilon)
    assert content_loss([t([3, 1])], [t([1, 3])]).item() == pytest.approx(4.0, rel=1e-4)


def test_content_loss_detaches_the_teacher_by_default():
    teacher, student = t([3, 1]).requires_grad_(), t([1, 3]).requires_grad_()
    content_loss([teacher], [student]).backward()
    assert teacher.grad is None and student.grad is not None


def test_gaussian_heatmap_hand_computed():
    # box (4, 4, 8, 8) in feature units: centre (8, 8); CornerNet radius min(15.26, 29.39, 2.19) → 2
    hm = gaussian_heatmap(torch.tensor([[0.25, 0.25, 0.5, 0.5]]), 16)[0, 0]
    assert hm.shape == (16, 16)
    assert hm[8, 8].item() == 1.0 and (hm == 1).sum().item() == 1
    sigma = 5 / 6
    assert hm[8, 10].item() == pytest.approx(math.exp(-4 / (2 * sigma * sigma)), rel=1e-5)
    assert hm[8, 11].item() == 0.0 and hm[11, 8].item() == 0.0  # outside the radius


def test_gaussian_heatmap_truncates_at_the_border():
    # box (−3.2, −3.2, 8, 8) in feature units: centre (0.8, 0.8) → (1, 1), radius 2 → cut at row/col 0
    hm = gaussian_heatmap(torch.tensor([[-0.2, -0.2, 0.5, 0.5]]), 16)[0, 0]
    assert hm[1, 1].item() == 1.0
    assert hm[0, 0].item() > 0 and hm[3, 3].item() > 0 and hm[4, 1].item() == 0.0
    assert (hm > 0).sum().item() == 16  # the 5x5 window minus its cut-off first row and column


def test_gaussian_heatmap_centre_rounded_onto_column_or_row_16_keeps_its_tail():
    # box (12, 4, 8, 8) in feature units: centre (16, 8), one column past the map; radius 2. The
    # official draw_gaussian slices columns [16 − 2, 16) of the map and [0, 2) of the 5x5 window:
    # the tail at dx = −2, −1 stays, and no cell reaches 1 (docs/training.md, "Losses", and
    # ``gaussian_heatmap`` in ckd_ros/model/head.py: "truncated at the borders").
    g = lambda dx, dy: math.exp(-(dx * dx + dy * dy) / (2 * (5 / 6) ** 2))  # noqa: E731
    hm = gaussian_heatmap(torch.tensor([[0.75, 0.25, 0.5, 0.5]]), 16)[0, 0]
    assert hm[8, 15].item() == pytest.approx(g(-1, 0), rel=1e-5) and hm[8, 14].item() == pytest.approx(g(-2, 0), rel=1e-5)
    assert hm[6, 15].item() == pytest.approx(g(-1, -2), rel=1e-5) and hm[10, 14].item() == pytest.approx(g(-2, 2), rel=1e-5)
    assert (hm > 0).sum().item() == 10 and hm[:, :14].abs().sum() == 0 and hm.max().item() < 1
    # the same on row 16, and a window entirely off the map (centre 19 > 16 + 2) writes nothing
    assert torch.equal(gaussian_heatmap(torch.tensor([[0.25, 0.75, 0.5, 0.5]]), 16)[0, 0], hm.T)
    assert gaussian_heatmap(torch.tensor([[0.94, 0.25, 0.5, 0.5]]), 16).abs().sum() == 0


def test_focal_loss_hand_computed():
    score = torch.full((1, 1, 16, 16), 0.1)
    score[0, 0, 3, 4] = 0.5
    label = torch.zeros(1, 1, 16, 16)
    label[0, 0, 3, 4] = 1.0
    pos = -math.log(0.5) * 0.25
    neg = -math.log(0.9) * 0.01 * 255
    assert focal_loss(score, label).item() == pytest.approx(pos + neg, rel=1e-5)
    assert focal_loss(score, torch.zeros(1, 1, 16, 16)).item() == pytest.approx(
        -math.log(0.9) * 0.01 * 255 - math.log(0.5) * 0.25, rel=1e-5
    )


def test_giou_l1_hand_computed():
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.5]])  # x, y, w, h
    same = torch.tensor([[0.25, 0.25, 0.5, 0.5]])  # cx, cy, w, h of the same box
    giou, l1 = giou_l1_loss(same, gt)
    assert giou.item() == pytest.approx(0.0, abs=1e-6) and l1.item() == pytest.approx(0.0, abs=1e-7)
    shifted = torch.tensor([[0.5, 0.5, 0.5, 0.5]])  # xyxy (0.25, 0.25, 0.75, 0.75)
    giou, l1 = giou_l1_loss(shifted, gt)
    iou = 0.0625 / 0.4375
    assert giou.item() == pytest.approx(1 - (iou - (0.5625 - 0.4375) / 0.5625), rel=1e-5)
    assert l1.item() == pytest.approx(0.25)


def test_giou_degenerate_prediction_is_zero_not_a_crash():
    giou, l1 = giou_l1_loss(torch.tensor([[0.5, 0.5, -0.1, 0.2]]), torch.tensor([[0.1, 0.1, 0.2, 0.2]]))
    assert giou.item() == 0.0 and l1.item() > 0
