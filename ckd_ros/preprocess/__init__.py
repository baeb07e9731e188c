"""Camera buffers → the model's RGB-T pair: encodings, thermal AGC, registration.

``FramePreprocessor`` is what the ROS node and bag tools use: raw (data, encoding, step, …) of
both cameras in, two HxWx3 uint8 RGB arrays of one size out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ckd_ros.preprocess.align import ALIGN_MODES, Aligner
from ckd_ros.preprocess.encodings import ENCODINGS, Encoding, decode, encode, to_rgb8
from ckd_ros.preprocess.thermal import AGC_MODES, AGCConfig, ThermalAGC

__all__ = [
    "AGC_MODES",
    "ALIGN_MODES",
    "ENCODINGS",
    "AGCConfig",
    "Aligner",
    "Encoding",
    "FramePreprocessor",
    "PreprocessConfig",
    "RawImage",
    "ThermalAGC",
    "decode",
    "encode",
    "thermal_to_rgb8",
    "to_rgb8",
]


@dataclass(frozen=True)
class RawImage:
    """The fields of a ``sensor_msgs/Image`` that matter here."""

    data: bytes | bytearray | memoryview | np.ndarray
    height: int
    width: int
    encoding: str
    step: int
    is_bigendian: bool = False


@dataclass
class PreprocessConfig:
    agc: AGCConfig = field(default_factory=AGCConfig)
    align: str = "none"
    homography: list[float] | None = None


def thermal_to_rgb8(image: np.ndarray, enc: Encoding, agc: ThermalAGC) -> np.ndarray:
    """Grey thermal wider than 8 bits through AGC; 8-bit thermal as the camera's own AGC made it (the
    model was trained on such 8-bit frames); grey replicated to 3 channels, colour thermal as is.
    Which sample types AGC can map is ``ThermalAGC``'s decision alone, so a new raw thermal encoding
    is an ``ENCODINGS`` entry plus, for a new sample type, AGC support."""
    if enc.order != "mono":
        return to_rgb8(image, enc)
    grey = agc(image) if image.dtype != np.uint8 else image.reshape(image.shape[0], image.shape[1])
    return np.repeat(grey[:, :, None], 3, axis=2)


class FramePreprocessor:
    def __init__(self, config: PreprocessConfig | None = None) -> None:
        self.config = config or PreprocessConfig()
        self.agc = ThermalAGC(self.config.agc)
        self.visible_agc = ThermalAGC(AGCConfig(mode="minmax"))  # only for a 16-bit grey visible camera
        self.aligner = Aligner(self.config.align, self.config.homography)

    def __call__(self, rgb: RawImage, tir: RawImage) -> tuple[np.ndarray, np.ndarray]:
        rgb_arr, rgb_enc = decode(rgb.data, rgb.height, rgb.width, rgb.encoding, rgb.step, rgb.is_bigendian)
        tir_arr, tir_enc = decode(tir.data, tir.height, tir.width, tir.encoding, tir.step, tir.is_bigendian)
        rgb8 = to_rgb8(rgb_arr, rgb_enc) if rgb_enc.dtype == np.uint8 else thermal_to_rgb8(rgb_arr, rgb_enc, self.visible_agc)
        tir8 = thermal_to_rgb8(tir_arr, tir_enc, self.agc)
        return rgb8, self.aligner(rgb8, tir8)
