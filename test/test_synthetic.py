"""The synthetic RGB-T world: determinism, layout on disk, and the modality gap on purpose."""

from __future__ import annotations

import numpy as np
import pytest

from ckd_ros.data.synthetic import SCENARIOS, SynthConfig, SyntheticPool, SyntheticSequence, suite_sequence, write_sequence


def region(img: np.ndarray, box: np.ndarray, grow: float = 0.0) -> np.ndarray:
    x, y, w, h = box
    x0, y0 = int(max(0, x - grow * w)), int(max(0, y - grow * h))
    return img[y0 : int(y + h + grow * h), x0 : int(x + w + grow * w)]


def contrast(img: np.ndarray, box: np.ndarray) -> float:
    """Largest |mean inside the box − mean of a ring around it| over the channels."""
    inner = region(img, box).astype(np.float64).reshape(-1, img.shape[2])
    outer = region(img, box, 0.6).astype(np.float64).reshape(-1, img.shape[2])
    ring = (outer.sum(0) - inner.sum(0)) / max(1, len(outer) - len(inner))
    return float(np.abs(inner.mean(0) - ring).max())


def test_deterministic_per_seed_and_any_frame_alone():
    a, b = SyntheticSequence(5), SyntheticSequence(5)
    assert np.array_equal(a.boxes, b.boxes)
    for i in (0, 77, 149):
        assert all(np.array_equal(x, y) for x, y in zip(a.frame(i), b.frame(i)))
    assert not np.array_equal(SyntheticSequence(6).frame(0)[0], a.frame(0)[0])


def test_boxes_stay_in_frame_and_segments_start_normal():
    for seed in range(5):
        seq = SyntheticSequence(seed)
        b = seq.boxes
        assert b.shape == (150, 4) and (b[:, 2:] > 5).all()
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 0] + b[:, 2] <= 320).all() and (b[:, 1] + b[:, 3] <= 240).all()
        assert seq.segments[0][2] == "normal" and set(seq.scenario) <= set(SCENARIOS)
        rgb, tir = seq.frame(0)
        assert rgb.shape == tir.shape == (240, 320, 3) and rgb.dtype == np.uint8
        assert np.array_equal(tir[:, :, 0], tir[:, :, 2])  # thermal is grey, replicated


def frames_with(scenario: str, seeds=range(40)):
    for k in seeds:
        _name, seq = suite_sequence(k, length=120)
        for a, b, s in seq.segments:
            if s == scenario:
                yield seq, (a + b) // 2


@pytest.mark.parametrize(("scenario", "dead", "alive"), [("night", 0, 1), ("glare", 0, 1), ("crossover", 1, 0)])
def test_the_gap_scenarios_blind_one_modality(scenario, dead, alive):
    """In a gap segment the target stands out in one modality and not in the other."""
    checked = 0
    for seq, i in frames_with(scenario):
        imgs, box, normal = seq.frame(i), seq.boxes[i], seq.frame(0)
        assert contrast(imgs[dead], box) < 0.35 * max(contrast(normal[dead], seq.boxes[0]), 8.0)
        assert contrast(imgs[alive], box) > 8.0
        checked += 1
        if checked == 4:
            break
    assert checked >= 2


def test_distractor_segments_add_lookalikes():
    seq, i = next(frames_with("distractor"))
    assert sum(1 for _, always in seq.distractors if not always) >= 2
    assert seq.scenario[i] == "distractor"


def test_write_sequence_in_lasher_layout(tmp_path):
    seq = SyntheticSequence(3, SynthConfig(length=12))
    folder = write_sequence(seq, tmp_path / "s")
    assert len(list((folder / "visible").glob("*.jpg"))) == 12 == len(list((folder / "infrared").glob("*.jpg")))
    rows = (folder / "init.txt").read_text().splitlines()
    assert len(rows) == 12 and np.allclose([float(v) for v in rows[0].split(",")], seq.boxes[0], atol=0.01)
    assert (folder / "visible.txt").read_text() == (folder / "infrared.txt").read_text() == (folder / "init.txt").read_text()
    assert len((folder / "scenario.txt").read_text().splitlines()) == 12


def test_training_pool_stays_clear_of_the_held_out_suite():
    pool = SyntheticPool(4, length=30)
    assert pool(2) is pool(2) and len(pool(2)) == 30
    with pytest.raises(ValueError, match="held-out"):
        SyntheticPool(10_001)
    segs = SyntheticSequence(1, SynthConfig(length=12)).segments  # short sequences still get segments
    assert segs[0][0] == 0 and segs[-1][1] == 12 and all(a[1] == b[0] for a, b in zip(segs, segs[1:]))
