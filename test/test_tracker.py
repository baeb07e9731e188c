"""Tracker geometry against hand-computed cases, parity with the official per-frame arithmetic,
the torch crop path, confidence/lost, re-initialisation and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference_tracker import OfficialStyleTracker, synthetic_frames

from ckd_ros.errors import ConfigError, InputError
from ckd_ros.tracker import (
    CKDTracker,
    clip_box,
    crop_numpy,
    crop_torch,
    crop_window,
    hann_window,
    map_back,
)


def test_crop_window_hand_computed():
    win = crop_window((10, 20, 30, 40), 2.0, (100, 200))
    # side ceil(sqrt(1200)·2) = ceil(69.28) = 70; x1 = round(25 − 35) = −10; y1 = round(40 − 35) = 5
    assert (win.size, win.x1, win.y1) == (70, -10, 5)
    assert (win.pad_l, win.pad_t, win.pad_r, win.pad_b) == (10, 0, 0, 0)


def test_crop_window_rounds_half_to_even():
    assert crop_window((0.5, 0.5, 1, 1), 1.0, (10, 10)).x1 == 0  # round(0.5) = 0
    assert crop_window((1.5, 2.5, 1, 1), 1.0, (10, 10)).x1 == 2  # round(1.5) = 2
    assert crop_window((1.5, 2.5, 1, 1), 1.0, (10, 10)).y1 == 2  # round(2.5) = 2


def test_crop_right_edge_off_by_one_becomes_padding():
    img = np.full((100, 100, 3), 200, np.uint8)
    win = crop_window((50, 50, 50, 50), 1.0, (100, 100))  # window [50, 100): touches the edge
    assert (win.x1, win.size, win.pad_r, win.pad_b) == (50, 50, 1, 1)
    patch = crop_numpy(img, win, 50)  # same size: cv2.resize is the identity
    assert patch[:49, :49].min() == 200
    assert patch[:, 49].max() == 0 and patch[49, :].max() == 0  # the last row/column is black


def test_crop_fully_outside_is_black_not_a_crash():
    img = np.full((50, 50, 3), 255, np.uint8)
    win = crop_window((-100, -100, 10, 10), 2.0, (50, 50))
    assert crop_numpy(img, win, 16).max() == 0
    assert crop_torch(torch.from_numpy(img).permute(2, 0, 1).float(), win, 16).max() == 0


def test_torch_crop_matches_opencv_within_one_grey_level():
    rgb, _ = synthetic_frames(1)[0]
    for box, out in (((600, 5, 60, 40), 128), ((100, 100, 80, 120), 256), ((0, 0, 30, 30), 64)):
        win = crop_window(box, 4.0, rgb.shape[:2])
        ref = crop_numpy(rgb, win, out).astype(np.float32)
        got = crop_torch(torch.from_numpy(rgb).permute(2, 0, 1).float(), win, out)[0].permute(1, 2, 0).numpy()
        assert np.abs(got - ref).max() <= 1.0


def test_map_back_hand_computed():
    # prev centre (125, 125); rf = 256/200 → half crop = 100 px; crop centre (100, 100) is the prev centre
    assert map_back([100.0, 100.0, 20.0, 30.0], (100, 100, 50, 50), 256, 256 / 200) == (115.0, 110.0, 20.0, 30.0)


def test_clip_box_hand_computed():
    assert clip_box((-5, -5, 8, 8), 100, 100) == (0, 0, 10, 10)
    assert clip_box((95, 50, 20, 20), 100, 100) == (90, 50, 10, 20)
    assert clip_box((20, 30, 40, 50), 100, 100) == (20, 30, 40, 50)


def test_hann_window_is_centred_and_never_zero():
    w = hann_window(16)[0, 0]
    assert w.shape == (16, 16)
    h1 = 0.5 * (1 - math.cos(2 * math.pi / 17))
    assert w[0, 0].item() == pytest.approx(h1 * h1, rel=1e-6)
    torch.testing.assert_close(w, w.flip(0))
    torch.testing.assert_close(w, w.T)
    assert w.min() > 0 and w.argmax().item() in (7 * 16 + 7, 7 * 16 + 8, 8 * 16 + 7, 8 * 16 + 8)


def test_boxes_match_official_tracker_arithmetic(tiny_model):
    frames = synthetic_frames(8)
    init = (0.0, 10.0, 70.0, 60.0)  # touches the left border
    ours, ref = CKDTracker(tiny_model, preprocess="cpu"), OfficialStyleTracker(tiny_model)
    ours.initialize(*frames[0], init)
    ref.initialize(*frames[0], init)
    worst = 0.0
    for rgb, tir in frames[1:]:
        a, b = ours.track(rgb, tir).box, ref.track(rgb, tir)
        worst = max(worst, max(abs(x - y) for x, y in zip(a, b)))
    assert worst <= 1e-3, f"largest box difference {worst} px"


def test_torch_preprocess_path_gives_the_same_model_inputs(tiny_model):
    rgb, tir = synthetic_frames(1, seed=3)[0]
    crops = {}
    for mode in ("cpu", "torch"):
        trk = CKDTracker(tiny_model, preprocess=mode)
        assert trk.use_torch_crop == (mode == "torch")
        crops[mode] = trk._crops(rgb, tir, (600.0, 5.0, 60.0, 40.0), 4.0, trk.search_size)
    assert crops["cpu"][2] == crops["torch"][2]  # same resize factor, same window
    for a, b in zip(crops["cpu"][:2], crops["torch"][:2]):
        assert a.shape == b.shape == (1, 3, 128, 128)
        assert (a - b).abs().max().item() <= 1.0 / 255 / 0.224 + 1e-6  # at most one grey level


def test_deterministic_and_reinitialisable(tiny_model):
    frames = synthetic_frames(5)
    runs = []
    for _ in range(2):
        trk = CKDTracker(tiny_model)
        trk.initialize(*frames[0], (30, 30, 40, 40))
        runs.append([trk.track(*f) for f in frames[1:]])
    assert [r.box for r in runs[0]] == [r.box for r in runs[1]]
    assert [r.frame for r in runs[0]] == [1, 2, 3, 4]
    res = trk.initialize(*frames[2], (200, 100, 60, 50))
    assert res.box == (200.0, 100.0, 60.0, 50.0) and res.frame == 0 and trk.frame == 0
    assert trk.track(*frames[3]).frame == 1
    trk.reset()
    assert not trk.initialized
    with pytest.raises(InputError, match="before initialize"):
        trk.track(*frames[3])


def test_score_is_the_raw_peak_and_lost_after_n_low_frames(tiny_model):
    frames = synthetic_frames(6)
    trk = CKDTracker(tiny_model, score_threshold=1.0, lost_frames=3)  # every score < 1 counts as low
    trk.initialize(*frames[0], (30, 30, 40, 40))
    results = [trk.track(*f) for f in frames[1:]]
    assert [r.lost for r in results] == [False, False, True, True, True]
    assert all(0.0 < r.score < 1.0 for r in results)
    trk2 = CKDTracker(tiny_model, score_threshold=0.0, lost_frames=1)
    trk2.initialize(*frames[0], (30, 30, 40, 40))
    assert not any(trk2.track(*f).lost for f in frames[1:])
    assert set(results[0].timing_ms) == {"preprocess", "model", "postprocess"}


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((10, 10, float("nan"), 5), "NaN"),
        ((10, 10, 0, 5), "zero or negative size"),
        ((700, 10, 20, 20), "outside"),
        ((-50, 10, 20, 20), "outside"),
        ((1, 2, 3), "four numbers"),
        ("abc", "four numbers"),
        ((-100, -100, 30000, 30000), "larger than the"),  # would ask for a crop of tens of GiB
        ((0, 0, 20, 10000), "larger than the"),
    ],
)
def test_bad_boxes(tiny_model, box, message):
    rgb, tir = synthetic_frames(1)[0]
    with pytest.raises(InputError, match=message):
        CKDTracker(tiny_model).initialize(rgb, tir, box)


def test_a_frame_of_another_size_is_refused_and_the_target_kept(tiny_model):
    (rgb, tir), (rgb2, tir2) = synthetic_frames(2)
    trk = CKDTracker(tiny_model)
    trk.initialize(rgb, tir, (40, 30, 20, 16))
    with pytest.raises(InputError, match="initialised on"):
        trk.track(np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1, 3), np.uint8))
    assert trk.state == (40.0, 30.0, 20.0, 16.0) and trk.frame == 0
    assert trk.track(rgb2, tir2).valid


def test_non_finite_outputs_are_a_lost_frame_that_keeps_the_last_good_box(tiny_model):
    (rgb, tir), (rgb2, tir2), (rgb3, tir3) = synthetic_frames(3)
    trk = CKDTracker(tiny_model, lost_frames=5)
    trk.initialize(rgb, tir, (40, 30, 20, 16))
    good = trk.track(rgb2, tir2)
    hook = tiny_model.register_forward_hook(lambda _m, _i, out: {k: v * float("nan") for k, v in out.items()})
    bad = trk.track(rgb3, tir3)
    assert not bad.valid and bad.lost and math.isnan(bad.score) and bad.box == good.box == trk.state
    hook.remove()
    again = trk.track(rgb3, tir3)
    assert again.valid and math.isfinite(again.score)


def test_bad_images(tiny_model):
    rgb, tir = synthetic_frames(1)[0]
    trk = CKDTracker(tiny_model)
    with pytest.raises(InputError, match="differ in size"):
        trk.initialize(rgb, tir[:100], (10, 10, 20, 20))
    with pytest.raises(InputError, match="uint8"):
        trk.initialize(rgb.astype(np.float32), tir, (10, 10, 20, 20))
    with pytest.raises(InputError, match="HxWx3"):
        trk.initialize(rgb[:, :, 0], tir, (10, 10, 20, 20))
    with pytest.raises(InputError, match="empty"):
        trk.initialize(rgb[:0], tir[:0], (10, 10, 20, 20))


def test_bad_tracker_settings(tiny_model):
    with pytest.raises(ConfigError, match="precision"):
        CKDTracker(tiny_model, precision="fp8")
    with pytest.raises(ConfigError, match="preprocess"):
        CKDTracker(tiny_model, preprocess="gpu")
    with pytest.raises(ConfigError, match="fp16 is only supported on CUDA"):
        trk = CKDTracker(tiny_model, precision="fp16")
        frames = synthetic_frames(2)
        trk.initialize(*frames[0], (30, 30, 40, 40))
        trk.track(*frames[1])


def test_bf16_fast_path_casts_weights_once_and_tracks(tiny_model):
    frames = synthetic_frames(4)
    ref = CKDTracker(tiny_model)
    ref.initialize(*frames[0], (30, 30, 40, 40))
    ref_boxes = [ref.track(*f).box for f in frames[1:]]
    fast = CKDTracker(tiny_model, precision="bf16", fused_attention=True)
    assert next(tiny_model.parameters()).dtype == torch.bfloat16 and tiny_model.fused_attention
    fast.initialize(*frames[0], (30, 30, 40, 40))
    boxes = [fast.track(*f).box for f in frames[1:]]
    assert all(math.isfinite(v) for b in boxes for v in b) and len(boxes) == len(ref_boxes)
