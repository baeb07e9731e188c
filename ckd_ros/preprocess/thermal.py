"""Thermal images → the 8-bit, 3-channel frames the model was trained on (docs/tracker.md, Input).

Radiometric / raw 16-bit thermal cameras need an automatic gain control (AGC): the model only ever
saw 8-bit thermal jpgs. Modes:

* ``percentile`` (default): map the [low, high] percentiles to [0, 255]; the limits follow an
  exponential moving average so the picture does not flicker when a hot object enters the frame.
* ``minmax``: the frame's own min and max (flickers; useful for stills).
* ``fixed``: a fixed raw range, e.g. a known scene temperature span in counts.
* ``none``: the high byte (value / 256).

AGC applies to 16-bit frames; 8-bit thermal already went through the camera's own AGC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ckd_ros.errors import ConfigError, InputError

AGC_MODES = ("percentile", "minmax", "fixed", "none")


@dataclass
class AGCConfig:
    mode: str = "percentile"
    low_percentile: float = 1.0
    high_percentile: float = 99.0
    ema: float = 0.2  # weight of the newest frame's limits; 1.0 = no smoothing
    fixed_min: float = 0.0
    fixed_max: float = 65535.0
    subsample: int = 4  # percentiles from every n-th pixel in each direction: ~16x cheaper, same limits

    def __post_init__(self) -> None:
        if self.mode not in AGC_MODES:
            raise ConfigError(f"thermal AGC mode {self.mode!r} is not one of {AGC_MODES}")
        if not 0 <= self.low_percentile < self.high_percentile <= 100:
            raise ConfigError(f"AGC percentiles need 0 <= low < high <= 100, got {self.low_percentile}, {self.high_percentile}")
        if not 0 < self.ema <= 1:
            raise ConfigError(f"AGC ema {self.ema} is not in (0, 1]")
        if not (math.isfinite(self.fixed_min) and math.isfinite(self.fixed_max)) or self.fixed_max <= self.fixed_min:
            raise ConfigError(f"AGC fixed range needs fixed_min < fixed_max, got {self.fixed_min}, {self.fixed_max}")
        if self.subsample < 1:
            raise ConfigError("AGC subsample must be >= 1")


class ThermalAGC:
    """Stateful (for the moving-average limits): one instance per thermal stream."""

    def __init__(self, config: AGCConfig | None = None) -> None:
        self.config = config or AGCConfig()
        self.limits: tuple[float, float] | None = None

    def reset(self) -> None:
        self.limits = None

    def _frame_limits(self, grey: np.ndarray) -> tuple[float, float]:
        c = self.config
        if c.mode == "fixed":
            return c.fixed_min, c.fixed_max
        sample = grey[:: c.subsample, :: c.subsample]
        if c.mode == "minmax":
            return float(sample.min()), float(sample.max())
        lo, hi = np.percentile(sample, (c.low_percentile, c.high_percentile))
        return float(lo), float(hi)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(H, W) or (H, W, 1) uint8/uint16 → (H, W) uint8."""
        grey = image.reshape(image.shape[0], image.shape[1]) if image.ndim == 3 and image.shape[2] == 1 else image
        if grey.ndim != 2 or grey.dtype not in (np.uint8, np.uint16):
            raise InputError(f"thermal AGC expects one 8- or 16-bit channel, got shape {image.shape} dtype {image.dtype}")
        if self.config.mode == "none":
            return grey if grey.dtype == np.uint8 else (grey >> 8).astype(np.uint8)
        lo, hi = self._frame_limits(grey)
        if self.limits is not None and self.config.mode == "percentile":
            a = self.config.ema
            lo, hi = (1 - a) * self.limits[0] + a * lo, (1 - a) * self.limits[1] + a * hi
        self.limits = (lo, hi)
        scale = 255.0 / max(hi - lo, 1e-6)
        out = (grey.astype(np.float32) - lo) * scale
        return np.clip(out, 0, 255).astype(np.uint8)
