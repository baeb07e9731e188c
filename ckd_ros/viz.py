"""Annotated frames for people: the node's debug image, the track/demo videos."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

LAYOUTS = ("side_by_side", "blend")
GREEN, RED, YELLOW = (0, 220, 0), (230, 40, 40), (255, 210, 0)


def _rect(img: np.ndarray, box: Sequence[float], color: tuple[int, int, int], thickness: int = 2) -> None:
    x, y, w, h = (int(round(float(v))) for v in box)  # noqa: RUF046 (numpy scalars)
    cv2.rectangle(img, (x, y), (x + w, y + h), color, thickness)


def _text(img: np.ndarray, text: str, org: tuple[int, int]) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def annotate_pair(
    rgb: np.ndarray,
    tir: np.ndarray,
    box: Sequence[float] | None,
    caption: str = "",
    lost: bool = False,
    gt: Sequence[float] | None = None,
    layout: str = "side_by_side",
) -> np.ndarray:
    """RGB order in and out: RGB | thermal (or a 50/50 blend) with the box (red when lost), the
    ground truth in yellow when given, and a caption (score, state, FPS)."""
    if layout == "blend":
        panels = [cv2.addWeighted(rgb, 0.5, tir, 0.5, 0)]
    else:
        panels = [rgb.copy(), tir.copy()]
    for panel in panels:
        if gt is not None:
            _rect(panel, gt, YELLOW, 1)
        if box is not None:
            _rect(panel, box, RED if lost else GREEN)
    out = np.ascontiguousarray(np.concatenate(panels, axis=1))
    if caption:
        _text(out, caption, (6, 18))
    return out


class VideoWriter:
    """mp4 writer that opens on the first frame (its size) and takes RGB frames."""

    def __init__(self, path: str, fps: float = 20.0) -> None:
        self.path, self.fps, self.writer = path, fps, None

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is None:
            h, w = rgb.shape[:2]
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
