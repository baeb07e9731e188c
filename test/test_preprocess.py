"""Camera encodings, step padding, endianness, thermal AGC, registration and malformed buffers."""

from __future__ import annotations

import numpy as np
import pytest

from ckd_ros.errors import ConfigError, InputError
from ckd_ros.preprocess import (
    AGCConfig,
    Aligner,
    FramePreprocessor,
    PreprocessConfig,
    RawImage,
    ThermalAGC,
    decode,
    encode,
    to_rgb8,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def padded(arr: np.ndarray, pad: int = 5, big: bool = False) -> tuple[bytes, int]:
    """Row-padded bytes like a camera driver with alignment: step = row bytes + pad."""
    a = arr if arr.ndim == 3 else arr[:, :, None]
    dt = a.dtype.newbyteorder(">" if big else "<")
    rows = np.ascontiguousarray(a, dtype=dt).reshape(a.shape[0], -1).view(np.uint8)
    out = np.concatenate([rows, np.full((a.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return out.tobytes(), out.shape[1]


@pytest.mark.parametrize(
    ("encoding", "make"),
    [
        ("rgb8", lambda c: c),
        ("bgr8", lambda c: c[:, :, ::-1]),
        ("8UC3", lambda c: c[:, :, ::-1]),
        ("rgba8", lambda c: np.concatenate([c, np.full((*c.shape[:2], 1), 7, np.uint8)], axis=2)),
        ("bgra8", lambda c: np.concatenate([c[:, :, ::-1], np.full((*c.shape[:2], 1), 7, np.uint8)], axis=2)),
    ],
)
def test_colour_encodings_with_step_padding(encoding, make):
    data, step = padded(make(RGB))
    img, enc = decode(data, 5, 7, encoding, step)
    assert np.array_equal(to_rgb8(img, enc), RGB)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_grey_is_replicated(encoding):
    grey = RGB[:, :, 0]
    data, step = padded(grey)
    img, enc = decode(data, 5, 7, encoding, step)
    out = to_rgb8(img, enc)
    assert out.shape == (5, 7, 3) and all(np.array_equal(out[:, :, c], grey) for c in range(3))


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("big", [False, True])
def test_16bit_both_endiannesses(encoding, big):
    raw = RNG.integers(0, 65536, (5, 7), dtype=np.uint16)
    data, step = padded(raw, big=big)
    img, _ = decode(data, 5, 7, encoding, step, is_bigendian=big)
    assert img.dtype == np.uint16 and np.array_equal(img[:, :, 0], raw)


def test_encode_is_the_inverse_of_decode():
    data, step = encode(RGB, "rgb8")
    img, _enc = decode(data, 5, 7, "rgb8", step)
    assert step == 21 and np.array_equal(img, RGB)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encoding": "yuv422"}, "unsupported image encoding 'yuv422'"),
        ({"height": 0}, "empty image"),
        ({"step": 20}, "step 20 is smaller than one row"),
        ({"data": b"\x00" * 50}, "fewer than height x step"),
    ],
)
def test_malformed_buffers_are_named(kwargs, message):
    data, step = encode(RGB, "rgb8")
    args = {"data": data, "height": 5, "width": 7, "encoding": "rgb8", "step": step} | kwargs
    with pytest.raises(InputError, match=message):
        decode(**args)


def test_agc_none_takes_high_byte_and_passes_8bit():
    raw = np.array([[0, 255, 256, 65535]], np.uint16)
    assert ThermalAGC(AGCConfig(mode="none"))(raw).tolist() == [[0, 0, 1, 255]]
    assert ThermalAGC(AGCConfig(mode="none"))(raw.astype(np.uint8)).dtype == np.uint8


def test_agc_minmax_and_fixed():
    raw = np.array([[1000, 2000, 3000]], np.uint16)
    assert ThermalAGC(AGCConfig(mode="minmax", subsample=1))(raw).tolist() == [[0, 127, 255]]
    fixed = ThermalAGC(AGCConfig(mode="fixed", fixed_min=2000, fixed_max=2510))(raw)
    assert fixed.tolist() == [[0, 0, 255]]


def test_agc_percentile_limits_follow_a_moving_average():
    agc = ThermalAGC(AGCConfig(mode="percentile", low_percentile=0, high_percentile=100, ema=0.5, subsample=1))
    agc(np.array([[1000, 3000]], np.uint16))
    assert agc.limits == (1000.0, 3000.0)
    agc(np.array([[2000, 5000]], np.uint16))  # a hot object: limits move halfway, no jump
    assert agc.limits == (1500.0, 4000.0)
    agc.reset()
    assert agc.limits is None


def test_agc_percentile_clips_outliers():
    raw = np.full((100, 100), 3000, np.uint16)
    raw[:50] = 2000
    raw[0, 0] = 60000  # one dead/hot pixel must not squash the image
    out = ThermalAGC(AGCConfig(low_percentile=1, high_percentile=99, subsample=1))(raw)
    assert out[10, 10] == 0 and out[90, 90] == 255


def test_agc_bad_settings():
    with pytest.raises(ConfigError, match="mode"):
        AGCConfig(mode="auto")
    with pytest.raises(ConfigError, match="percentiles"):
        AGCConfig(low_percentile=99, high_percentile=1)
    with pytest.raises(ConfigError, match="fixed range"):
        AGCConfig(fixed_min=5, fixed_max=5)
    with pytest.raises(InputError, match="one 8- or 16-bit channel"):
        ThermalAGC()(np.zeros((4, 4, 3), np.uint16))


def test_alignment_modes():
    rgb = np.zeros((40, 60, 3), np.uint8)
    tir = np.zeros((20, 30, 3), np.uint8)
    tir[10, 15] = 255
    with pytest.raises(InputError, match="differ in size"):
        Aligner("none")(rgb, tir)
    assert Aligner("resize")(rgb, tir).shape == (40, 60, 3)
    shift = Aligner("homography", [1, 0, 5, 0, 1, 3, 0, 0, 1])(rgb, tir)  # TIR (15, 10) → RGB (20, 13)
    assert shift.shape == (40, 60, 3) and shift[13, 20, 0] == 255
    with pytest.raises(ConfigError, match="9 finite numbers"):
        Aligner("homography", [1, 0, 0])
    with pytest.raises(ConfigError, match="singular"):
        Aligner("homography", [0] * 9)
    with pytest.raises(ConfigError, match="alignment"):
        Aligner("stretch")


def test_frame_preprocessor_end_to_end():
    rgb_data, rgb_step = encode(RGB[:, :, ::-1], "bgr8")
    raw = RNG.integers(2000, 3000, (5, 7), dtype=np.uint16)
    tir_data, tir_step = padded(raw, big=True)
    pre = FramePreprocessor(PreprocessConfig(agc=AGCConfig(mode="minmax", subsample=1)))
    rgb8, tir8 = pre(RawImage(rgb_data, 5, 7, "bgr8", rgb_step), RawImage(tir_data, 5, 7, "mono16", tir_step, True))
    assert np.array_equal(rgb8, RGB)
    assert tir8.shape == (5, 7, 3) and tir8.dtype == np.uint8
    assert tir8[..., 0].min() == 0 and tir8[..., 0].max() == 255


def test_8bit_thermal_passes_through_without_agc():
    grey = np.array([[10, 20], [30, 40]], np.uint8)
    data, step = encode(grey, "mono8")
    pre = FramePreprocessor(PreprocessConfig(agc=AGCConfig(mode="minmax", subsample=1)))
    rgb_data, rgb_step = encode(np.zeros((2, 2, 3), np.uint8), "rgb8")
    _, tir8 = pre(RawImage(rgb_data, 2, 2, "rgb8", rgb_step), RawImage(data, 2, 2, "mono8", step))
    assert tir8[:, :, 0].tolist() == [[10, 20], [30, 40]]  # not stretched to 0..255


def test_rgb8_frames_are_views_of_the_message_buffer_not_copies():
    """The executor hands the worker the message's own buffer (rclpy's array.array); an rgb8 frame
    reaches the tracker without a copy (only grey thermal is widened to three channels)."""
    import array

    from ckd_ros.preprocess import FramePreprocessor, RawImage

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buf = array.array("B", rgb.tobytes())
    tir = array.array("B", rgb[:, :, 0].tobytes())
    out_rgb, out_tir = FramePreprocessor()(RawImage(buf, 48, 64, "rgb8", 192), RawImage(tir, 48, 64, "mono8", 64))
    assert np.shares_memory(out_rgb, np.frombuffer(buf, np.uint8)) and np.array_equal(out_rgb, rgb)
    assert out_tir.shape == (48, 64, 3)
