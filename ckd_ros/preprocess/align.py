"""RGB–thermal registration: the model needs pixel-aligned pairs of one size (docs/tracker.md, Input).

``none``: the sizes must already match (a mismatch is an error, never a silent stretch);
``resize``: scale the thermal frame to the RGB size (co-axial rigs with different resolutions);
``homography``: warp thermal into RGB pixels with a 3x3 TIR→RGB matrix from calibration. Boxes are
always reported in RGB pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from ckd_ros.errors import ConfigError, InputError

# The modes that need no calibration matrix: all the offline ``track`` command can be told.
UNCALIBRATED_MODES = ("none", "resize")
ALIGN_MODES = (*UNCALIBRATED_MODES, "homography")


class Aligner:
    def __init__(self, mode: str = "none", homography: Sequence[float] | None = None) -> None:
        if mode not in ALIGN_MODES:
            raise ConfigError(f"alignment {mode!r} is not one of {ALIGN_MODES}")
        self.mode = mode
        self.matrix: np.ndarray | None = None
        if mode == "homography":
            values = [float(v) for v in (homography or [])]
            if len(values) != 9 or not all(math.isfinite(v) for v in values):
                raise ConfigError(f"homography needs 9 finite numbers (row-major 3x3, TIR→RGB), got {list(homography or [])}")
            self.matrix = np.array(values, dtype=np.float64).reshape(3, 3)
            if abs(np.linalg.det(self.matrix)) < 1e-12:
                raise ConfigError("homography matrix is singular")

    def __call__(self, rgb: np.ndarray, tir: np.ndarray) -> np.ndarray:
        """The thermal frame in RGB pixel coordinates, same height and width as ``rgb``."""
        h, w = rgb.shape[:2]
        if self.mode == "none":
            if tir.shape[:2] != (h, w):
                raise InputError(
                    f"thermal {tir.shape[1]}x{tir.shape[0]} and RGB {w}x{h} differ in size; set alignment "
                    "to 'resize' or 'homography'"
                )
            return tir
        if self.mode == "resize":
            return tir if tir.shape[:2] == (h, w) else cv2.resize(tir, (w, h), interpolation=cv2.INTER_LINEAR)
        return cv2.warpPerspective(tir, self.matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
