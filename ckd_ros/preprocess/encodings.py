"""Raw camera buffers (as in ``sensor_msgs/Image``) → numpy arrays, without ROS.

``decode`` honours ``step`` (row padding) and ``is_bigendian``, and checks every size before it
touches the data, so a malformed message becomes one ``InputError`` naming what is wrong rather
than a garbled image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ckd_ros.errors import InputError


@dataclass(frozen=True)
class Encoding:
    channels: int
    dtype: np.dtype
    order: str  # "rgb", "bgr", "rgba", "bgra", "mono"


ENCODINGS: dict[str, Encoding] = {
    "rgb8": Encoding(3, np.dtype(np.uint8), "rgb"),
    "bgr8": Encoding(3, np.dtype(np.uint8), "bgr"),
    "rgba8": Encoding(4, np.dtype(np.uint8), "rgba"),
    "bgra8": Encoding(4, np.dtype(np.uint8), "bgra"),
    "mono8": Encoding(1, np.dtype(np.uint8), "mono"),
    "8UC1": Encoding(1, np.dtype(np.uint8), "mono"),
    "8UC3": Encoding(3, np.dtype(np.uint8), "bgr"),  # OpenCV's (and cv_bridge's) convention
    "mono16": Encoding(1, np.dtype(np.uint16), "mono"),
    "16UC1": Encoding(1, np.dtype(np.uint16), "mono"),
}


def decode(
    data: bytes | bytearray | memoryview | np.ndarray,
    height: int,
    width: int,
    encoding: str,
    step: int,
    is_bigendian: bool = False,
) -> tuple[np.ndarray, Encoding]:
    """The image as (H, W, C) in its own dtype and channel order (a view where possible)."""
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise InputError(f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    if height <= 0 or width <= 0:
        raise InputError(f"empty image: {width}x{height}")
    row_bytes = width * enc.channels * enc.dtype.itemsize
    if step < row_bytes:
        raise InputError(f"step {step} is smaller than one row of {width} px {encoding} ({row_bytes} bytes)")
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    if buf.size < height * step:
        raise InputError(f"image data has {buf.size} bytes, fewer than height x step = {height} x {step} = {height * step}")
    rows = buf[: height * step].reshape(height, step)[:, :row_bytes]
    wire = enc.dtype.newbyteorder(">" if is_bigendian else "<")
    image = np.ascontiguousarray(rows).view(wire).reshape(height, width, enc.channels)
    return image.astype(enc.dtype, copy=False), enc  # native byte order; no copy when it already is


def to_rgb8(image: np.ndarray, enc: Encoding) -> np.ndarray:
    """8-bit colour or grey → HxWx3 uint8 RGB (grey replicated, alpha dropped)."""
    if image.dtype != np.uint8:
        raise InputError(f"expected an 8-bit image for colour conversion, got {image.dtype}; thermal 16-bit goes through AGC")
    if enc.order == "mono":
        return np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    if enc.order in ("bgr", "bgra"):
        return np.ascontiguousarray(image[:, :, 2::-1])
    return np.ascontiguousarray(image[:, :, :3])


def encode(image: np.ndarray, encoding: str) -> tuple[bytes, int]:
    """(data, step) for an (H, W[, C]) array in ``encoding``, little-endian: the inverse of ``decode``."""
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise InputError(f"unsupported image encoding {encoding!r}")
    arr = np.ascontiguousarray(image, dtype=enc.dtype.newbyteorder("<"))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] != enc.channels:
        raise InputError(f"{encoding} needs {enc.channels} channels, the array has {arr.shape[2]}")
    return arr.tobytes(), arr.shape[1] * enc.channels * enc.dtype.itemsize
