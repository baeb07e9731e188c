"""Crop geometry of the official tracker (docs/tracker.md), reproduced exactly.

The crop window, its padding (with the off-by-one on the right/bottom edge), the bilinear resize,
the map-back that ignores the crop's rounding and the 10-px ``clip_box`` are all OSTrack quirks
that the official boxes depend on, so they are kept, and tested against hand-computed cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ckd_ros.errors import InputError

Box = tuple[float, float, float, float]  # x, y, w, h in pixels


@dataclass(frozen=True)
class CropWindow:
    """An integer square window of side ``size`` at (x1, y1), and the parts of it outside the image.

    Rows/columns ``[y1 + pad_t, y1 + size - pad_b)`` × ``[x1 + pad_l, x1 + size - pad_r)`` are copied
    from the image; the rest of the square is black.
    """

    x1: int
    y1: int
    size: int
    pad_l: int
    pad_t: int
    pad_r: int
    pad_b: int


def crop_window(box: Box, factor: float, image_hw: tuple[int, int]) -> CropWindow:
    """``sample_target``'s window: side ceil(sqrt(w·h)·factor), centred with Python's round-half-even."""
    x, y, w, h = box
    size = math.ceil(math.sqrt(w * h) * factor)
    if size < 1:
        raise InputError(f"box {box} is too small to crop (crop side {size} px)")
    x1 = round(x + 0.5 * w - size * 0.5)
    y1 = round(y + 0.5 * h - size * 0.5)
    height, width = image_hw
    return CropWindow(
        x1=x1,
        y1=y1,
        size=size,
        pad_l=max(0, -x1),
        pad_t=max(0, -y1),
        pad_r=max(x1 + size - width + 1, 0),  # official off-by-one: the last column becomes padding
        pad_b=max(y1 + size - height + 1, 0),
    )


def _valid_slices(win: CropWindow) -> tuple[slice, slice, slice, slice] | None:
    """(image rows, image cols, canvas rows, canvas cols), or None when nothing of the image is inside."""
    r0, r1 = win.y1 + win.pad_t, win.y1 + win.size - win.pad_b
    c0, c1 = win.x1 + win.pad_l, win.x1 + win.size - win.pad_r
    if r1 <= r0 or c1 <= c0:
        return None
    return slice(r0, r1), slice(c0, c1), slice(win.pad_t, win.pad_t + r1 - r0), slice(win.pad_l, win.pad_l + c1 - c0)


def crop_numpy(image: np.ndarray, win: CropWindow, out_size: int) -> np.ndarray:
    """Zero-padded crop resized with cv2 INTER_LINEAR (the official CPU path), uint8 HxWx3."""
    canvas = np.zeros((win.size, win.size, image.shape[2]), dtype=image.dtype)
    sl = _valid_slices(win)
    if sl is not None:
        canvas[sl[2], sl[3]] = image[sl[0], sl[1]]
    return cv2.resize(canvas, (out_size, out_size))


def crop_torch(image: torch.Tensor, win: CropWindow, out_size: int) -> torch.Tensor:
    """The same crop on a (3, H, W) tensor (uint8 or float) on any device, as float: no host round
    trip on a GPU, and only the window is converted to float.

    Bilinear with half-pixel centres and edge clamping, as cv2 INTER_LINEAR; cv2 rounds to uint8
    with fixed-point weights, this stays in float, so pixels differ by at most about one grey level.
    """
    canvas = torch.zeros((1, image.shape[0], win.size, win.size), dtype=torch.float32, device=image.device)
    sl = _valid_slices(win)
    if sl is not None:
        canvas[0, :, sl[2], sl[3]] = image[:, sl[0], sl[1]]
    if win.size == out_size:
        return canvas
    return F.interpolate(canvas, size=(out_size, out_size), mode="bilinear", align_corners=False)


def hann_window(size: int) -> torch.Tensor:
    """Centred 2-D Hann window (1, 1, size, size): 0.5(1 − cos(2πk/(size+1))), k = 1..size."""
    k = torch.arange(1, size + 1).float()
    h = 0.5 * (1 - torch.cos((2 * math.pi / (size + 1)) * k))
    return h.reshape(1, 1, -1, 1) * h.reshape(1, 1, 1, -1)


def map_back(box_crop: list[float], prev: Box, search_size: int, resize_factor: float) -> Box:
    """Crop-pixel (cx, cy, w, h) → image (x, y, w, h) around the previous state's centre.

    The crop origin is taken as prev_centre − half the crop, ignoring the integer rounding of the
    actual window (an OSTrack sub-pixel quirk the official boxes contain).
    """
    cx, cy, w, h = box_crop
    pcx, pcy = prev[0] + 0.5 * prev[2], prev[1] + 0.5 * prev[3]
    half = 0.5 * search_size / resize_factor
    cx_img, cy_img = cx + (pcx - half), cy + (pcy - half)
    return (cx_img - 0.5 * w, cy_img - 0.5 * h, w, h)


def clip_box(box: Box, height: int, width: int, margin: float = 10) -> Box:
    """OSTrack ``clip_box``: keep at least ``margin`` px of the box inside the image."""
    x1, y1, w, h = box
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0, x1), width - margin)
    x2 = min(max(margin, x2), width)
    y1 = min(max(0, y1), height - margin)
    y2 = min(max(margin, y2), height)
    return (x1, y1, max(margin, x2 - x1), max(margin, y2 - y1))
