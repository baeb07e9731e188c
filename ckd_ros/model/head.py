"""The box head: everything that depends on which head the network has lives in this file.

A head reads the fused feature map (B, C, F, F) and returns a dict of maps; ``BoxHead`` is what the
rest of the project may ask of it, so the network (``ckd.py``), the training model and losses
(``train/network.py``, ``train/losses.py``), the tracker and the ONNX export never name a map or a
weight of a particular head:

* ``build_head(in_channels, cfg)``: the one place that chooses the head class (``HEAD``);
* ``param_layout``, ``width_problem``, ``WIDTH_KEY``: its ``state_dict`` keys and shapes as plain
  numbers, which widths it can be built with, and the key that tells its width (``config.py`` and
  ``checkpoint.py`` ask ``HEAD`` for them, to check a checkpoint and bound the parameter count
  before anything is built, and to read a bare state_dict);
* ``forward``: the maps, named in ``OUTPUTS`` (also the ONNX outputs, before ``pred_boxes``);
* ``fused``: an inference-only equivalent (BatchNorm folded, int8 first layer), or None;
* ``decode`` / ``score``: the box (cx, cy, w, h) and the confidence, optionally Hann-weighted;
* ``merge_from``: the stage-1 fused head from the two single-modality teacher heads;
* ``loss``: the head-specific training term (``LOSS_NAME``); GIoU and L1 on the decoded box are
  generic and stay in ``train/losses.py``.

The head in use is OSTrack's CENTER head (docs/model.md, "Fusion and head"): its output contract is
``score_map`` (B, 1, F, F), ``size_map`` (B, 2, F, F, w then h) and ``offset_map`` (B, 2, F, F, x
then y). Swapping it: docs/model.md, "Swapping the head".
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ckd_ros.model.int8 import Int8Conv3x3

if TYPE_CHECKING:
    from ckd_ros.model.config import ModelConfig

Layout = Iterator[tuple[str, tuple[int, ...], bool]]
"""``(key, shape, is_parameter)`` per ``state_dict`` entry, in module order."""


class BoxHead(nn.Module):
    """The contract of a box head (see the module doc). Subclasses implement every method that
    raises here; ``fused`` defaults to None (no separate inference form)."""

    OUTPUTS: ClassVar[tuple[str, ...]] = ()
    """The maps ``forward`` returns, in export order; the first is the score map whose peak
    ``decode`` reads (what a parity check compares peaks on)."""
    LOSS_NAME: ClassVar[str] = "head"
    """The name of ``loss``'s term in the training statistics (its weight in the training config
    keeps the name ``focal``: ``LossConfig.focal``)."""
    WIDTH_KEY: ClassVar[str] = ""
    """The ``state_dict`` key (without ``box_head.``) whose first dimension is the head's width
    (``head_channels``), for reading a bare state_dict."""

    @staticmethod
    def param_layout(in_channels: int, width: int, prefix: str = "") -> Layout:
        """``(key, shape, is_parameter)`` of the ``state_dict`` of ``cls(in_channels, width, ...)``,
        each key after ``prefix``, computed from the numbers alone (nothing is allocated)."""
        raise NotImplementedError

    @staticmethod
    def width_problem(width: int) -> str | None:
        """Why ``head_channels`` = ``width`` cannot build this head, or None."""
        raise NotImplementedError

    def fused(self, int8_first: bool = False) -> nn.Module | None:
        """An inference-only module with this head's forward and weights copied now (``int8_first``:
        its heaviest layer as an int8 GEMM), or None where the head itself is its inference form
        (the default). It must hold no ``state_dict`` entries: the network keeps it beside the head."""
        return None

    @staticmethod
    def decode(maps: dict[str, Tensor], window: Tensor | None = None) -> Tensor:
        """(cx, cy, w, h) in [0, 1] of the search crop, (B, 4); ``window`` (F, F) weights the
        evidence first (the tracker's Hann window; the model decodes without)."""
        raise NotImplementedError

    @staticmethod
    def score(maps: dict[str, Tensor]) -> Tensor:
        """The confidence that the target is in the search crop, in [0, 1], (B,)."""
        raise NotImplementedError

    def merge_from(self, rgb: BoxHead, tir: BoxHead) -> None:
        """Become the fused head (reading both branches, RGB channels first) whose response starts
        as the sum of the two single-modality heads' (stage-1 init)."""
        raise NotImplementedError

    @staticmethod
    def loss(maps: dict[str, Tensor], gt_boxes: Tensor) -> Tensor:
        """The head's own training term against ``gt_boxes`` (B, 4) x, y, w, h in [0, 1]."""
        raise NotImplementedError


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=True), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _trunk_widths(cin: int, width: int) -> list[int]:
    """A CENTER trunk's channels: ``cin`` in, then ``width`` narrowing /2, /4, /8 over four layers."""
    return [cin, width, width // 2, width // 4, width // 8]


def _trunk(cin: int, width: int, cout: int) -> list[nn.Module]:
    widths = _trunk_widths(cin, width)
    convs: list[nn.Module] = [_conv_bn_relu(widths[i], widths[i + 1]) for i in range(4)]
    return [*convs, nn.Conv2d(widths[4], cout, 1)]


class CenterHead(BoxHead):
    """Three parallel 5-conv trunks: centre score (1), size (w, h) and sub-cell offset (x, y)."""

    BRANCHES = ("ctr", "offset", "size")
    BRANCH_OUTPUTS = (1, 2, 2)
    """The trunks' output channels: score, sub-cell offset (x, y), size (w, h)."""
    OUTPUTS = ("score_map", "size_map", "offset_map")
    LOSS_NAME = "focal"
    WIDTH_KEY = "conv1_ctr.0.weight"

    def __init__(self, in_channels: int, width: int, feat_size: int) -> None:
        super().__init__()
        self.feat_size = feat_size
        for branch, cout in zip(self.BRANCHES, self.BRANCH_OUTPUTS, strict=True):
            for i, layer in enumerate(_trunk(in_channels, width, cout), start=1):
                setattr(self, f"conv{i}_{branch}", layer)

    @staticmethod
    def param_layout(in_channels: int, width: int, prefix: str = "") -> Layout:
        """Per trunk four conv + BatchNorm layers narrowing ``width`` → /2 → /4 → /8, then a 1x1
        convolution (docs/checkpoints.md, "The inference keys")."""
        widths = _trunk_widths(in_channels, width)
        for trunk, cout in zip(CenterHead.BRANCHES, CenterHead.BRANCH_OUTPUTS, strict=True):
            for i in range(4):
                conv = f"{prefix}conv{i + 1}_{trunk}"
                cin, c = widths[i], widths[i + 1]
                yield f"{conv}.0.weight", (c, cin, 3, 3), True
                yield f"{conv}.0.bias", (c,), True
                yield f"{conv}.1.weight", (c,), True
                yield f"{conv}.1.bias", (c,), True
                for buffer in ("running_mean", "running_var", "num_batches_tracked"):
                    yield f"{conv}.1.{buffer}", () if buffer == "num_batches_tracked" else (c,), False
            yield f"{prefix}conv5_{trunk}.weight", (cout, widths[4], 1, 1), True
            yield f"{prefix}conv5_{trunk}.bias", (cout,), True

    @staticmethod
    def width_problem(width: int) -> str | None:
        if width < 8 or width % 8:
            return f"head_channels {width} must be a multiple of 8 (widths /2, /4, /8)"
        return None

    def _run(self, branch: str, x: Tensor) -> Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv{i}_{branch}")(x)
        return x

    def forward(self, fmap: Tensor) -> dict[str, Tensor]:
        ctr, offset, size = (self._run(b, fmap) for b in self.BRANCHES)
        return _maps(ctr, offset, size)

    def fused(self, int8_first: bool = False) -> nn.Module | None:
        return FusedCenterHead(self, int8_first=int8_first)

    @staticmethod
    def decode(maps: dict[str, Tensor], window: Tensor | None = None) -> Tensor:
        score = maps["score_map"] if window is None else window * maps["score_map"]
        return decode_boxes(score, maps["size_map"], maps["offset_map"])

    @staticmethod
    def score(maps: dict[str, Tensor]) -> Tensor:
        """The raw (un-windowed) score-map peak."""
        return maps["score_map"].flatten(1).max(dim=1).values

    @torch.no_grad()
    def merge_from(self, rgb: BoxHead, tir: BoxHead) -> None:
        """The first convolutions concatenate both heads' (biases summed), so the response starts
        as the sum of the two, as the official init's duplication does; the deeper layers take the
        RGB head's."""
        fused = self.state_dict()
        v, i = rgb.state_dict(), tir.state_dict()
        for key in fused:
            if key.startswith("conv1_") and key.endswith(".0.weight"):
                fused[key] = torch.cat([v[key], i[key]], dim=1)
            elif key.startswith("conv1_") and key.endswith(".0.bias"):
                fused[key] = v[key] + i[key]
            else:
                fused[key] = v[key].clone()
        self.load_state_dict(fused)

    @staticmethod
    def loss(maps: dict[str, Tensor], gt_boxes: Tensor) -> Tensor:
        """CenterNet focal loss of the score map against a Gaussian heatmap at the target's cell
        (docs/training.md, "Losses")."""
        return focal_loss(maps["score_map"], gaussian_heatmap(gt_boxes, maps["score_map"].shape[-1]))


HEAD: type[BoxHead] = CenterHead
"""The head the network uses: the one name a head swap changes (``config.py`` and ``checkpoint.py``
read its ``param_layout``, ``width_problem`` and ``WIDTH_KEY`` from here when called)."""


def build_head(in_channels: int, cfg: ModelConfig) -> BoxHead:
    """The network's box head reading ``in_channels`` (both branches for the fused head, one for a
    teacher's), ``cfg.head_channels`` wide, on the ``cfg.search_feat`` grid."""
    return HEAD(in_channels, cfg.head_channels, cfg.search_feat)


def _maps(ctr: Tensor, offset: Tensor, size: Tensor) -> dict[str, Tensor]:
    """The trunks' raw outputs → the head's maps (score and size squashed to (0, 1))."""
    score = torch.clamp(ctr.sigmoid(), 1e-4, 1 - 1e-4)
    size = torch.clamp(size.sigmoid(), 1e-4, 1 - 1e-4)
    return {"score_map": score, "size_map": size, "offset_map": offset}


def decode_boxes(score_map: Tensor, size_map: Tensor, offset_map: Tensor) -> Tensor:
    """(cx, cy, w, h) in [0, 1] of the search crop at the first peak of ``score_map``: (B, 4).

    ``score_map`` may be raw or Hann-weighted; the model decodes the raw one, the tracker the
    windowed one.
    """
    feat = score_map.shape[-1]
    idx = torch.max(score_map.flatten(1), dim=1, keepdim=True).indices
    iy = idx // feat
    ix = idx % feat
    gather = idx.unsqueeze(1).expand(idx.shape[0], 2, 1)
    size = size_map.flatten(2).gather(2, gather).squeeze(-1)
    offset = offset_map.flatten(2).gather(2, gather).squeeze(-1)
    cx = (ix.to(torch.float) + offset[:, :1]) / feat
    cy = (iy.to(torch.float) + offset[:, 1:]) / feat
    return torch.cat([cx, cy, size], dim=1)


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[Tensor, Tensor]:
    """The convolution's weight and bias with an inference BatchNorm after it folded in."""
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    if bn is None:
        return w, b
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return w * scale.view(-1, 1, 1, 1), (b - bn.running_mean) * scale + bn.bias.detach()


class FusedCenterHead(nn.Module):
    """A ``CenterHead``'s three trunks as five convolutions instead of fifteen (inference only).

    BatchNorm is folded into each convolution; the trunks' first convolutions read the same map,
    so they are one convolution with their outputs concatenated; the later layers are grouped
    convolutions (groups = 3), the final 1x1 layer padded to two outputs per trunk. Equal to the
    head up to float rounding, and 9 kernels instead of 39 on a GPU (its CPU timing: README "Speed").
    The weights are copies taken when built (as stacked branches).

    ``int8_first``: the first (by far the largest: 3x3 over both branches' channels) convolution
    as an int8 GEMM (``int8.Int8Conv3x3``), for the CPU int8 path.
    """

    def __init__(self, head: CenterHead, int8_first: bool = False) -> None:
        super().__init__()
        self.first: nn.Module | None = None
        for i in range(1, 6):
            ws, bs = [], []
            for branch in head.BRANCHES:
                layer = getattr(head, f"conv{i}_{branch}")
                conv, bn = (layer[0], layer[1]) if isinstance(layer, nn.Sequential) else (layer, None)
                w, b = _fold_bn(conv, bn)
                if i == 5 and w.shape[0] < 2:  # pad the 1-channel score output to the group width
                    w, b = torch.cat([w, torch.zeros_like(w)]), torch.cat([b, torch.zeros_like(b)])
                ws.append(w)
                bs.append(b)
            if i == 1 and int8_first:
                self.first = Int8Conv3x3(torch.cat(ws), torch.cat(bs))
                continue
            self.register_buffer(f"w{i}", torch.cat(ws).contiguous(), persistent=False)
            self.register_buffer(f"b{i}", torch.cat(bs).contiguous(), persistent=False)

    def forward(self, fmap: Tensor) -> dict[str, Tensor]:
        x = torch.relu(self.first(fmap) if self.first is not None else F.conv2d(fmap, self.w1, self.b1, padding=1))
        for i in (2, 3, 4):
            x = torch.relu(F.conv2d(x, getattr(self, f"w{i}"), getattr(self, f"b{i}"), padding=1, groups=3))
        out = F.conv2d(x, self.w5, self.b5, groups=3)  # channels: ctr (+ a zero pad), offset, size
        return _maps(out[:, 0:1], out[:, 2:4], out[:, 4:6])


# The CENTER head's training target (moved from train/losses.py, which re-exports both names).


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
