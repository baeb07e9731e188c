"""The CENTER head (``box_head``): score, size and offset maps, and their decoding to a box."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ckd_ros.model.int8 import Int8Conv3x3


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=True), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _trunk(cin: int, width: int, cout: int) -> list[nn.Module]:
    widths = [cin, width, width // 2, width // 4, width // 8]
    convs: list[nn.Module] = [_conv_bn_relu(widths[i], widths[i + 1]) for i in range(4)]
    return [*convs, nn.Conv2d(widths[4], cout, 1)]


class CenterHead(nn.Module):
    """Three parallel 5-conv trunks: centre score (1), size (w, h) and sub-cell offset (x, y)."""

    BRANCHES = ("ctr", "offset", "size")

    def __init__(self, in_channels: int, width: int, feat_size: int) -> None:
        super().__init__()
        self.feat_size = feat_size
        for branch, cout in zip(self.BRANCHES, (1, 2, 2), strict=True):
            for i, layer in enumerate(_trunk(in_channels, width, cout), start=1):
                setattr(self, f"conv{i}_{branch}", layer)

    def _run(self, branch: str, x: Tensor) -> Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv{i}_{branch}")(x)
        return x

    def forward(self, fmap: Tensor) -> dict[str, Tensor]:
        ctr, offset, size = (self._run(b, fmap) for b in self.BRANCHES)
        return _maps(ctr, offset, size)


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
