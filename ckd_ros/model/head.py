"""The CENTER head (``box_head``): score, size and offset maps, and their decoding to a box."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=True), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _trunk(cin: int, width: int, cout: int) -> list[nn.Module]:
    widths = [cin, width, width // 2, width // 4, width // 8]
    convs: list[nn.Module] = [_conv_bn_relu(widths[i], widths[i + 1]) for i in range(4)]
    return [*convs, nn.Conv2d(widths[4], cout, 1)]


class CenterHead(nn.Module):
    """Three parallel 5-conv trunks: centre score (1), size (w, h) and sub-cell offset (x, y)."""

    def __init__(self, in_channels: int, width: int, feat_size: int) -> None:
        super().__init__()
        self.feat_size = feat_size
        for branch, cout in (("ctr", 1), ("offset", 2), ("size", 2)):
            for i, layer in enumerate(_trunk(in_channels, width, cout), start=1):
                setattr(self, f"conv{i}_{branch}", layer)

    def _run(self, branch: str, x: Tensor) -> Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv{i}_{branch}")(x)
        return x

    def forward(self, fmap: Tensor) -> dict[str, Tensor]:
        score = torch.clamp(self._run("ctr", fmap).sigmoid(), 1e-4, 1 - 1e-4)
        size = torch.clamp(self._run("size", fmap).sigmoid(), 1e-4, 1 - 1e-4)
        offset = self._run("offset", fmap)
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
