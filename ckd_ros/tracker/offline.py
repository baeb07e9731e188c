"""Track a whole recorded sequence (the offline ``track`` command and the evaluation runner)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ckd_ros.tracker.geometry import Box
from ckd_ros.tracker.tracker import CKDTracker, TrackResult


@dataclass
class SequenceResult:
    results: list[TrackResult] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # wall time per frame (frame 0: init)

    @property
    def boxes(self) -> list[Box]:
        return [r.box for r in self.results]

    @property
    def fps(self) -> float:
        tracked = self.seconds[1:]
        return len(tracked) / sum(tracked) if tracked and sum(tracked) > 0 else float("nan")


def track_sequence(
    tracker: CKDTracker,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    init_box: Box,
    on_frame: Callable[[np.ndarray, np.ndarray, TrackResult], None] | None = None,
) -> SequenceResult:
    """Initialise on the first pair, track the rest; ``on_frame`` sees every frame (videos, bars)."""
    out = SequenceResult()
    for i, (rgb, tir) in enumerate(pairs):
        t0 = time.perf_counter()
        res = tracker.initialize(rgb, tir, init_box) if i == 0 else tracker.track(rgb, tir)
        out.seconds.append(time.perf_counter() - t0)
        out.results.append(res)
        if on_frame is not None:
            on_frame(rgb, tir, res)
    return out


def write_boxes(path: str | Path, boxes: Iterable[Box], decimals: int = 4) -> None:
    """One ``x,y,w,h`` line per frame, the layout RGBT toolkits read."""
    with open(path, "w") as f:
        for b in boxes:
            f.write(",".join(f"{v:.{decimals}f}" for v in b) + "\n")
