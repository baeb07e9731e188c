"""Compressed camera frames → the same raw form as an Image, without ROS: the format strings
image_transport writes, 16-bit thermal PNG, and every way such a message can be wrong."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from ckd_ros.errors import InputError
from ckd_ros.preprocess import FramePreprocessor, RawImage, encode
from ckd_ros.preprocess.compressed import decode_compressed, header_size, parse_format


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


@pytest.mark.parametrize(
    ("fmt", "declared", "codec"),
    [
        ("rgb8; jpeg compressed bgr8", "rgb8", "jpeg"),
        ("mono16; png compressed mono16", "mono16", "png"),
        ("bgr8; png compressed ", "bgr8", "png"),
        ("jpeg", None, "jpeg"),
        ("PNG", None, "png"),
    ],
)
def test_formats_image_transport_writes(fmt, declared, codec):
    assert parse_format(fmt) == (declared, codec)


def test_sixteen_bit_thermal_png_round_trips_exactly_through_the_preprocessor():
    rng = np.random.default_rng(0)
    thermal = rng.integers(20000, 40000, (48, 64), dtype=np.uint16)
    image, encoding = decode_compressed(png(thermal), "mono16; png compressed mono16")
    assert encoding == "mono16" and np.array_equal(image, thermal)
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    decoded_rgb, rgb_enc = decode_compressed(png(rgb[:, :, ::-1]), "rgb8; png compressed bgr8")
    pre = FramePreprocessor()
    raw = RawImage(*encode(rgb, "rgb8")[:1], 48, 64, "rgb8", 64 * 3)
    ref = pre(raw, RawImage(thermal.tobytes(), 48, 64, "mono16", 128))
    got = FramePreprocessor()(
        RawImage(decoded_rgb, 48, 64, rgb_enc, 64 * 3), RawImage(image, 48, 64, encoding, 128)
    )  # PNG is lossless: the model sees the same pixels as from the raw stream
    assert np.array_equal(ref[0], got[0]) and np.array_equal(ref[1], got[1])


def test_jpeg_colour_is_bgr_as_opencv_writes_it():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 200  # red
    image, encoding = decode_compressed(jpeg(rgb[:, :, ::-1]), "rgb8; jpeg compressed bgr8")
    assert encoding == "bgr8" and abs(int(image[16, 16, 2]) - 200) <= 3 and image[16, 16, 0] < 5


def test_headers_give_the_size_without_decoding():
    assert header_size(png(np.zeros((7, 9), np.uint8))) == ("png", 9, 7)
    assert header_size(jpeg(np.zeros((7, 9, 3), np.uint8))) == ("jpeg", 9, 7)


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header that claims a huge image (no pixel data follows)."""
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"", "jpeg", "empty"),
        (b"not an image at all", "jpeg", "neither PNG nor JPEG"),
        (None, "theora", "names no codec"),
        (None, "16UC1; compressedDepth png", "compressedDepth"),
        (None, "yuv422; png compressed", "'yuv422' is not supported"),
        (None, "mono16; png compressed mono16", "declares mono16"),  # an 8-bit PNG on a 16-bit stream
        (None, "jpeg", "says jpeg, the data is png"),
        (bomb_png(100_000, 100_000), "png", "claims 100000x100000"),
        (bomb_png(64, 48), "png", "does not decode"),  # a header and nothing else
        (png(np.zeros((8, 8), np.uint8))[:30], "png", "does not decode"),
    ],
)
def test_bad_compressed_frames_are_one_input_error(data, fmt, message):
    data = png(np.zeros((8, 8), np.uint8)) if data is None else data
    with pytest.raises(InputError, match=message):
        decode_compressed(data, fmt)
