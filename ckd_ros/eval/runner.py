"""Run trackers over a dataset and write result files in the toolkit layout (docs/metrics.md, Result files).

``<out>/<sequence>.txt``: one ``x,y,w,h`` line per frame, the first the initial box;
``<out>/<sequence>_time.txt``: seconds per frame. A sequence whose result file exists is skipped,
so an interrupted run resumes. Boxes are truncated to integers like the official runner's files
(``float_boxes=True`` keeps decimals).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ckd_ros.data.datasets import Sequence
from ckd_ros.data.files import output_dir, output_file
from ckd_ros.errors import InputError
from ckd_ros.tracker.geometry import Box
from ckd_ros.tracker.offline import track_sequence
from ckd_ros.tracker.tracker import TrackResult, check_box


class PairTracker(Protocol):
    """Anything with the tracker's two calls, returning ``TrackResult``s (CKD or a baseline)."""

    def initialize(self, rgb: np.ndarray, tir: np.ndarray, box: Box) -> TrackResult: ...

    def track(self, rgb: np.ndarray, tir: np.ndarray) -> TrackResult: ...


def write_result(path: Path, boxes: list[Box], seconds: list[float], float_boxes: bool = False) -> None:
    fmt = (lambda v: f"{v:.2f}") if float_boxes else (lambda v: str(math.trunc(v)))
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(",".join(fmt(v) for v in b) + "\n" for b in boxes))
    (path.parent / f"{path.stem}_time.txt").write_text("".join(f"{s:f}\n" for s in seconds))
    tmp.replace(path)  # the result file appears only when complete: resume never trusts a partial one


def run_dataset(
    make_tracker: Callable[[], PairTracker],
    sequences: list[Sequence],
    out_dir: str | Path,
    float_boxes: bool = False,
    progress: bool = True,
    desc: str = "sequences",
) -> dict[str, float]:
    """Track every sequence not yet in ``out_dir``; returns {"fps": …, "tracked": n, "skipped": n}."""
    from tqdm import tqdm

    out = output_dir(out_dir, "results folder")
    frames, secs, tracked, skipped = 0, 0.0, 0, 0
    bar = tqdm(sequences, desc=desc, unit="seq", disable=not progress)
    for seq in bar:
        path = out / f"{seq.name}.txt"
        if path.is_file():
            skipped += 1
            continue
        bar.set_postfix(seq=seq.name)
        output_file(path, "result file")  # not a folder of that name: found before the sequence is tracked
        check_init_box(seq)
        run = track_sequence(make_tracker(), seq.pairs(), seq.init_box)
        boxes, seconds = run.boxes, run.seconds
        write_result(path, boxes, seconds, float_boxes)
        frames += len(seconds) - 1
        secs += sum(seconds[1:])
        tracked += 1
    return {"fps": frames / secs if secs > 0 else float("nan"), "tracked": tracked, "skipped": skipped}


def check_init_box(seq: Sequence) -> None:
    """The sequence's initial box against its first frame, the message naming the file it came from
    (the tracker's own check would only show the numbers)."""
    from ckd_ros.data.frames import read_rgb

    rgb_files, _ = seq.files()
    try:
        check_box(seq.init_box, read_rgb(rgb_files[0]).shape[:2])
    except InputError as exc:
        source = seq.init_file or (seq.gt_files[0] if seq.gt_files else seq.name)
        raise InputError(f"{source}: initial box of sequence {seq.name}: {exc}") from None


class ConstantBox:
    """Baseline: the initial box, forever."""

    def initialize(self, rgb: np.ndarray, tir: np.ndarray, box: Box) -> TrackResult:
        self.box, self.frame = tuple(float(v) for v in box), 0
        return TrackResult(self.box, 1.0, False, 0)

    def track(self, rgb: np.ndarray, tir: np.ndarray) -> TrackResult:
        self.frame += 1
        return TrackResult(self.box, float("nan"), False, self.frame)


class OpenCVTracker:
    """Baseline: OpenCV's TrackerMIL on one modality (keeps the last box when it reports failure)."""

    def __init__(self, modality: str = "rgb") -> None:
        self.modality = modality

    def _img(self, rgb: np.ndarray, tir: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(rgb if self.modality == "rgb" else tir, cv2.COLOR_RGB2BGR)

    def initialize(self, rgb: np.ndarray, tir: np.ndarray, box: Box) -> TrackResult:
        self.tracker = cv2.TrackerMIL.create()
        self.box, self.frame = tuple(float(v) for v in box), 0
        self.tracker.init(self._img(rgb, tir), tuple(round(float(v)) for v in box))
        return TrackResult(self.box, 1.0, False, 0)

    def track(self, rgb: np.ndarray, tir: np.ndarray) -> TrackResult:
        ok, box = self.tracker.update(self._img(rgb, tir))
        if ok:
            self.box = tuple(float(v) for v in box)
        self.frame += 1
        return TrackResult(self.box, float("nan"), not ok, self.frame)
