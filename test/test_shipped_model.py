"""The shipped model: safe to load, tracks held-out synthetic sequences, and the fast path agrees
with the eager fp32 path within the documented tolerance (README: fast path)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ckd_ros.data.synthetic import suite_sequence
from ckd_ros.eval.metrics import score_lasher_sequence, summarise
from ckd_ros.model import load_model
from ckd_ros.model.int8 import int8_available, int8_support
from ckd_ros.resources import shipped_model
from ckd_ros.tracker import CKDTracker

HELD_OUT = (0, 1, 2, 3, 4)  # night, glare, crossover, occlusion, distractor focus
# Regression floors: the shipped model measured PR 0.753 / SR 0.613 on these five 120-frame held-out
# sequences (models/README.md has the full-suite table); a constant box scores about 0.2 / 0.14.
PR_FLOOR, SR_FLOOR = 0.65, 0.50


def test_shipped_model_is_small_and_loads_without_pickle():
    path = shipped_model()
    assert path.stat().st_size < 20 * 2**20
    raw = torch.load(path, weights_only=True)
    assert raw["config"]["name"] == "ckd_small" and raw["meta"]["stage"] == 2
    model = load_model(path)
    assert model.cfg.ce_mode == "mce" and model.cfg.elimination_layers == (1, 2)


def held_out_metrics(**options: object) -> dict:
    """LasHeR-style PR/SR of the shipped model, closed loop, on the five held-out sequences."""
    scores = []
    for k in HELD_OUT:
        name, seq = suite_sequence(k, 120)
        trk = CKDTracker(load_model(shipped_model()), **options)
        boxes = [trk.initialize(*seq.frame(0), tuple(seq.boxes[0])).box]
        boxes += [trk.track(*seq.frame(i)).box for i in range(1, len(seq))]
        scores.append(score_lasher_sequence(name, np.array(boxes), seq.boxes))
    return summarise(scores, "lasher")


@pytest.fixture(scope="module")
def fp32_metrics() -> dict:
    return held_out_metrics()


def test_shipped_model_tracks_held_out_sequences(fp32_metrics):
    m = fp32_metrics
    assert m["SR"] > SR_FLOOR and m["PR"] > PR_FLOOR, (m["PR"], m["SR"])


def worst_box_difference(load_options: dict, fast: dict) -> float:
    """Eager fp32 and a fast path tracking from the same state every frame (three held-out
    sequences, 60 frames): the largest box coordinate difference in pixels."""
    eager = CKDTracker(load_model(shipped_model(), **load_options))
    quick = CKDTracker(load_model(shipped_model(), **load_options), **fast)
    worst = 0.0
    for k in HELD_OUT[:3]:
        _, seq = suite_sequence(k, 60)
        eager.initialize(*seq.frame(0), tuple(seq.boxes[0]))
        quick.initialize(*seq.frame(0), tuple(seq.boxes[0]))
        for i in range(1, len(seq)):
            quick.state = eager.state
            a, b = eager.track(*seq.frame(i)), quick.track(*seq.frame(i))
            worst = max(worst, max(abs(x - y) for x, y in zip(a.box, b.box)))
    return worst


@pytest.mark.parametrize(
    ("fast", "tolerance_px"),
    [({"fused_attention": True}, 0.5), ({"fused_attention": True, "stack_branches": True}, 0.5)],
)
def test_fast_path_matches_eager_frame_by_frame(fast, tolerance_px):
    """Boxes within the tolerance on every frame."""
    worst = worst_box_difference({}, fast)
    assert worst <= tolerance_px, worst


# Reduced precision (README "Speed", tolerance): quantization noise moves a box by a fraction of a
# pixel, but it can flip which search tokens MCE keeps (a top-k at the boundary), and a flipped
# decision changes that frame's maps. So: frame by frame without elimination, and closed-loop
# accuracy with it. Measured on this suite: int8 max 0.23 px (bf16 0.58) without elimination;
# PR/SR int8 73.5/58.4 and bf16 74.2/61.1 vs fp32 75.3/61.3 closed loop.
REDUCED_PRECISION_POINTS = 0.04
needs_int8 = pytest.mark.skipif(not int8_available(), reason=f"int8 unavailable here: {int8_support().reason}")


@needs_int8
def test_int8_boxes_match_fp32_frame_by_frame_without_elimination():
    worst = worst_box_difference({"ce_loc": ()}, {"precision": "int8", "fused_attention": True})
    assert 0.0 < worst <= 0.5, worst  # > 0: the int8 kernels really ran


@needs_int8
def test_int8_closed_loop_accuracy_within_tolerance(fp32_metrics):
    m = held_out_metrics(precision="int8", fused_attention=True)
    for key in ("PR", "SR"):
        assert m[key] >= fp32_metrics[key] - REDUCED_PRECISION_POINTS, (key, m[key], fp32_metrics[key])
