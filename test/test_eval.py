"""Metrics on hand-made boxes (toolkit definitions, docs/metrics.md), readers on fixture folders, scoring."""

from __future__ import annotations

import numpy as np
import pytest

from ckd_ros.data.datasets import read_boxes, read_dataset
from ckd_ros.errors import InputError
from ckd_ros.eval import read_results, score
from ckd_ros.eval.metrics import (
    GTOT_PR_THRESHOLDS,
    PR_THRESHOLDS,
    SR_THRESHOLDS,
    centre_error,
    iou,
    lasher_prepare,
    precision_curve,
    score_lasher_sequence,
    score_two_gt_sequence,
    success_curve,
    summarise,
)


def test_iou_and_centre_error_hand_computed():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[5, 0, 10, 10], [20, 20, 5, 5]], float)
    assert iou(a, b).tolist() == [50 / 150, 0.0]
    assert centre_error(a, b).tolist() == pytest.approx([5.0, np.hypot(17.5, 17.5)])
    # normalised by the GT size: (5 / 10, 0)
    assert centre_error(a[:1], b[:1], normalise_by=b[:1]).tolist() == pytest.approx([0.5])


def test_threshold_conventions_at_exact_ties():
    err = np.array([20.0, 20.0001])
    assert precision_curve(err, PR_THRESHOLDS)[20] == 0.5  # error == threshold is a hit (≤)
    assert precision_curve(np.array([5.0]), GTOT_PR_THRESHOLDS, strict=True)[10] == 0.0  # GTOT: strict <
    ov = np.array([0.5, 0.55])
    assert success_curve(ov)[10] == 0.5  # IoU == threshold (0.5) is a miss (>)


def test_lasher_first_frame_chained_invalid_boxes_and_invalid_gt():
    gt = np.array([[10, 10, 20, 20], [10, 10, 20, 20], [0, 10, 20, 20], [10, 10, 20, 20], [10, 10, 20, 20]], float)
    res = np.array([[99, 99, 5, 5], [40, 40, 20, 20], [10, 10, 20, 20], [5, 5, 0, 20], [1, 1, -3, 4]], float)
    fixed, _gt2, invalid = lasher_prepare(res, gt)
    assert fixed[0].tolist() == gt[0].tolist()  # row 0 := GT
    assert fixed[3].tolist() == [10, 10, 20, 20] and fixed[4].tolist() == [10, 10, 20, 20]  # chained
    assert invalid.tolist() == [False, False, True, False, False]  # GT x = 0 counts as invalid
    s = score_lasher_sequence("s", res, gt)
    assert s.errors[2] == -1 and s.overlaps[2] == -1
    assert s.pr[20] == pytest.approx(4 / 5)  # frames 0, 2 (invalid → hit), 3, 4 hit; frame 1 misses
    assert s.sr[0] == pytest.approx(3 / 5)  # frame 2 (invalid) and frame 1 (IoU 0) miss at t = 0


def test_lasher_rounds_results_half_to_even_and_cuts_to_gt_length():
    gt = np.array([[10, 10, 20, 20]] * 3, float)
    res = np.array([[0, 0, 1, 1], [10.5, 11.5, 20, 20], [10, 10, 20, 20], [1, 1, 1, 1]], float)
    fixed, _, _ = lasher_prepare(res, gt)
    assert len(fixed) == 3 and fixed[1].tolist() == [10, 12, 20, 20]


def test_two_gt_protocol_takes_the_better_modality():
    res = np.array([[0, 0, 10, 10]], float)
    v = np.array([[30, 30, 10, 10]], float)
    i = np.array([[2, 0, 10, 10]], float)
    s = score_two_gt_sequence("s", res, v, i)
    assert s.errors[0] == pytest.approx(2.0) and s.overlaps[0] == pytest.approx(80 / 120)


def test_gtot_is_frame_weighted_with_trapezoid_msr():
    a = score_two_gt_sequence(
        "a",
        np.zeros((1, 4)) + [0, 0, 10, 10],
        np.array([[0, 0, 10, 10.0]]),
        np.array([[0, 0, 10, 10.0]]),
        GTOT_PR_THRESHOLDS,
        strict=True,
    )
    b = score_two_gt_sequence(
        "b",
        np.array([[0, 0, 10, 10.0]] * 3),
        np.array([[50, 50, 10, 10.0]] * 3),
        np.array([[50, 50, 10, 10.0]] * 3),
        GTOT_PR_THRESHOLDS,
        strict=True,
    )
    m = summarise([a, b], "gtot")
    assert m["PR"] == pytest.approx(1 / 4)  # frame-weighted: 1 of 4 frames, not mean(1, 0) = 0.5
    sr = m["sr_curve"]
    assert m["SR"] == pytest.approx(np.sum((sr[:-1] + sr[1:]) / 2 * 0.05))


def test_summary_is_sequence_averaged_for_lasher():
    gt = np.array([[10, 10, 20, 20]] * 4, float)
    good = score_lasher_sequence("g", gt.copy(), gt)
    bad = score_lasher_sequence("b", gt + [100, 100, 0, 0], gt)  # all but frame 0 wrong
    m = summarise([good, bad], "lasher")
    assert m["PR"] == pytest.approx((1 + 0.25) / 2)
    assert m["SR"] == pytest.approx((good.sr.mean() + bad.sr.mean()) / 2)
    assert len(SR_THRESHOLDS) == 21 and "NPR" in m


def write(path, rows, sep=","):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sep.join(str(v) for v in r) + "\n" for r in rows) + "\n\n")


def frames(folder, n):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        cv2.imwrite(str(folder / f"{k:04d}.png"), np.full((30, 40, 3), 10 * k, np.uint8))


def test_readers_on_each_layout(tmp_path):
    box = [[5, 6, 10, 12]] * 3
    # LasHeR
    write(tmp_path / "lasher/seqA/init.txt", box)
    frames(tmp_path / "lasher/seqA/visible", 3)
    frames(tmp_path / "lasher/seqA/infrared", 3)
    (s,) = read_dataset("lasher", tmp_path / "lasher")
    assert s.init_box == (5, 6, 10, 12) and len(s) == 3 and s.gt["aligned"].shape == (3, 4)
    assert next(s.pairs())[0].shape == (30, 40, 3)
    # RGBT234: per-modality GT; init.txt may differ
    for f, rows in (("init.txt", box), ("visible.txt", box), ("infrared.txt", [[6, 6, 10, 12]] * 3)):
        write(tmp_path / "rgbt234/s1" / f, rows)
    assert read_dataset("rgbt234", tmp_path / "rgbt234")[0].gt["infrared"][0].tolist() == [6, 6, 10, 12]
    # GTOT: ltrb, space separated, v/ and i/
    write(tmp_path / "gtot/s/groundTruth_v.txt", [[5, 6, 15, 18]] * 3, " ")
    write(tmp_path / "gtot/s/groundTruth_i.txt", [[5, 6, 15, 18]] * 3, " ")
    write(tmp_path / "gtot/s/init.txt", box, "\t")
    g = read_dataset("gtot", tmp_path / "gtot")[0]
    assert g.gt["visible"][0].tolist() == [5, 6, 10, 12] and g.rgb_dir.name == "v"
    # VTUAV: sparse GT every 10th frame, NaN = absent
    write(tmp_path / "vt/test_ST/test_ST/u1/rgb.txt", [[5, 6, 10, 12], ["NaN"] * 4])
    frames(tmp_path / "vt/test_ST/test_ST/u1/rgb", 20)
    v = read_dataset("vtuav", tmp_path / "vt")[0]
    assert v.gt_frames.tolist() == [0, 10] and v.gt["aligned"][1].tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,2,3\n", r"init.txt:2: expected 4 \(or 8\) values"),
        ("1,2,x,4\n", "not numbers"),
        ("\n\n", "no boxes"),
        ("1,NaN,3,4\n", "NaN"),
    ],
)
def test_malformed_ground_truth_names_file_and_line(tmp_path, content, message):
    f = tmp_path / "init.txt"
    f.write_text("1,2,3,4\n" + content if "no boxes" not in message else content)
    with pytest.raises(InputError, match=message):
        read_boxes(f)


def test_polygon_rows_become_bounding_boxes(tmp_path):
    f = tmp_path / "gt.txt"
    f.write_text("1,2, 11,2, 11,22, 1,22\n")
    assert read_boxes(f).tolist() == [[1, 2, 10, 20]]


def test_score_contract_and_missing_results(tmp_path):
    gt = [[10, 10, 20, 20]] * 4
    write(tmp_path / "ds/a/init.txt", gt)
    write(tmp_path / "ds/b/init.txt", gt)
    write(tmp_path / "res/a.txt", gt)
    write(tmp_path / "res/b.txt", [[10, 10, 20, 20]] + [[100, 100, 20, 20]] * 3, "\t")
    m = score("lasher", tmp_path / "ds", tmp_path / "res")
    assert m["PR"] == pytest.approx(0.625) and 0 <= m["SR"] <= 1 and 0 <= m["NPR"] <= 1
    assert set(m["per_sequence"]) == {"a", "b"}
    (tmp_path / "res/b.txt").unlink()
    with pytest.raises(InputError, match="no result file for 1 of 2 sequences"):
        score("lasher", tmp_path / "ds", tmp_path / "res")
    with pytest.raises(InputError, match="unknown dataset"):
        score("otb", tmp_path / "ds", tmp_path / "res")
    (tmp_path / "r.txt").write_text("1 2 3\n")
    with pytest.raises(InputError, match="expected x,y,w,h"):
        read_results(tmp_path / "r.txt")


def test_short_and_long_results_keep_the_toolkit_score_and_are_listed(tmp_path):
    """score() is the toolkit's (a 1-row result scores over its one frame); length_mismatches is
    what lets ``eval score`` refuse to print that as if it were the whole sequence."""
    from ckd_ros.eval import length_mismatches, read_result_folder

    gt = [[10, 10, 20, 20]] * 4
    for s in ("a", "b", "c"):
        write(tmp_path / f"ds/{s}/init.txt", gt)
    write(tmp_path / "res/a.txt", gt[:1])
    write(tmp_path / "res/b.txt", gt)
    write(tmp_path / "res/c.txt", gt + [[0, 0, 5, 5]] * 2)
    m = score("lasher", tmp_path / "ds", tmp_path / "res")
    assert m["per_sequence"]["a"]["PR"] == 1.0 and m["frames"] == 1 + 4 + 4  # a: its own frame; c: cut to the GT
    seqs = read_dataset("lasher", tmp_path / "ds")
    short, long = length_mismatches(seqs, read_result_folder(tmp_path / "res", seqs), tmp_path / "res", "lasher")
    assert short.short and not long.short
    assert short.text() == f"{tmp_path / 'res/a.txt'} has 1 rows, the ground truth {tmp_path / 'ds/a/init.txt'} has 4"
    assert (long.rows, long.expected) == (6, 4)


def test_unanswered_frames_are_misses_where_a_lost_box_takes_the_previous_one():
    gt = np.array([[10, 10, 20, 20]] * 4, float)
    res = gt.copy()
    res[2] = 0  # no box at frame 2
    assert score_lasher_sequence("s", res, gt).pr[20] == 1.0  # an empty row repeats the previous box (toolkit)
    s = score_lasher_sequence("s", res, gt, missing=np.array([True, False, True, False]))
    assert s.pr[20] == 0.75 and np.isinf(s.errors[2]) and s.overlaps[2] == 0
    assert s.errors[0] == 0  # frame 0 is the GT whatever happened there, as in the toolkit


def test_timing_files_are_read_strictly(tmp_path):
    from ckd_ros.eval import read_seconds

    f = tmp_path / "s_time.txt"
    f.write_text("0.5\n\n0.25\n")
    assert read_seconds(f).tolist() == [0.5, 0.25]
    for text, message in (("0.1\nabc\n", r"s_time.txt:2: not a number of seconds: 'abc'"), ("-1\n", "not a time")):
        f.write_text(text)
        with pytest.raises(InputError, match=message):
            read_seconds(f)
    f.write_bytes(b"\xff\n")
    with pytest.raises(InputError, match="s_time.txt: timing file is not UTF-8"):
        read_seconds(f)
