"""Compressed camera frames (``sensor_msgs/CompressedImage``) → the same raw form as an ``Image``.

``image_transport``'s compressed plugin writes ``format`` as ``"<encoding>; <jpeg|png> compressed
<target>"`` (``"bgr8; jpeg compressed bgr8"``, ``"mono16; png compressed mono16"``); older drivers
write just ``"jpeg"`` or ``"png"``. The codec is read from the bytes themselves, the declared
encoding is checked against what came out (a 16-bit thermal stream that arrives as an 8-bit PNG has
lost its radiometry: refused, not guessed), and the declared size is read from the file header
before anything is decoded, so a few bytes that claim a gigapixel image cost nothing.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from ckd_ros.errors import InputError
from ckd_ros.preprocess.encodings import ENCODINGS

CODECS = ("jpeg", "png")
# Larger than any camera a tracker sees (8K is 33 Mpx); a header claiming more is refused unread.
MAX_PIXELS = 64_000_000
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# What OpenCV returns (channels, dtype) → the raw encoding it is in.
_DECODED = {
    (1, np.dtype(np.uint8)): "mono8",
    (1, np.dtype(np.uint16)): "mono16",
    (3, np.dtype(np.uint8)): "bgr8",
    (4, np.dtype(np.uint8)): "bgra8",
}


def parse_format(fmt: str) -> tuple[str | None, str]:
    """``format`` → (declared encoding or None, codec)."""
    text = fmt.strip().lower()
    _, sep, rest = text.partition(";")
    if not sep:
        rest = text
    codec = next((c for c in CODECS if c in rest.split() or rest.startswith(c)), None)
    if "compresseddepth" in rest.replace(" ", ""):
        raise InputError(f"format {fmt!r}: compressedDepth streams are not supported; use the compressed (png) transport")
    if codec is None:
        raise InputError(f"format {fmt!r} names no codec this node reads ({', '.join(CODECS)})")
    name = fmt.strip().partition(";")[0].strip() if sep else ""
    if name and name not in ENCODINGS:
        raise InputError(f"format {fmt!r}: encoding {name!r} is not supported; supported: {', '.join(ENCODINGS)}")
    return (name or None), codec


def header_size(data: bytes | memoryview) -> tuple[str, int, int]:
    """(codec, width, height) from a PNG or JPEG header, without decoding the pixels."""
    buf = bytes(data)  # the frame header may sit after large EXIF/ICC segments: the loop jumps marker to marker
    if buf.startswith(_PNG_MAGIC):
        if len(buf) < 24 or buf[12:16] != b"IHDR":
            raise InputError("PNG data is truncated before its header")
        width, height = struct.unpack(">II", buf[16:24])
        return "png", width, height
    if buf.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 <= len(buf):
            if buf[i] != 0xFF:
                raise InputError("JPEG data is corrupt (no marker where one belongs)")
            marker = buf[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            length = struct.unpack(">H", buf[i + 2 : i + 4])[0]
            if marker in _JPEG_SOF:
                height, width = struct.unpack(">HH", buf[i + 5 : i + 9])
                return "jpeg", width, height
            i += 2 + length
        raise InputError("JPEG data has no frame header (truncated?)")
    raise InputError(f"compressed data is neither PNG nor JPEG (starts with {bytes(buf[:8])!r})")


def decode_compressed(data: bytes | bytearray | memoryview | np.ndarray, fmt: str) -> tuple[np.ndarray, str]:
    """The frame as (H, W[, C]) uint8/uint16 and its raw encoding (``bgr8``, ``mono8``, ``mono16``,
    ``bgra8``), ready for ``FramePreprocessor`` like an ``Image``'s buffer."""
    declared, codec = parse_format(fmt)
    raw = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    if raw.size == 0:
        raise InputError(f"{codec} data is empty")
    found, width, height = header_size(memoryview(raw))
    if found != codec:
        raise InputError(f"format {fmt!r} says {codec}, the data is {found}")
    if width * height > MAX_PIXELS or width == 0 or height == 0:
        raise InputError(f"{codec} header claims {width}x{height} px (limit {MAX_PIXELS} px)")
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"{codec} data of {raw.size} bytes does not decode (corrupt or truncated)")
    channels = 1 if image.ndim == 2 else image.shape[2]
    encoding = _DECODED.get((channels, image.dtype))
    if encoding is None:
        raise InputError(f"{codec} decoded to {channels} channels of {image.dtype}, which no supported encoding holds")
    if declared is not None:
        want = ENCODINGS[declared]
        if want.dtype != image.dtype or (want.channels == 1) != (channels == 1):
            raise InputError(
                f"format {fmt!r} declares {declared}, but the {codec} holds {channels} channel(s) of {image.dtype} "
                "(a bit depth or colour that does not fit the stream)"
            )
    return image, encoding
