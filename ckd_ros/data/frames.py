"""Frame sources: a folder of images (sorted by file name, as every RGBT benchmark) or a video."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ckd_ros.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no {'/'.join(IMAGE_SUFFIXES)} images")
    return files


def read_rgb(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB, grey files replicated (cv2 IMREAD_COLOR + BGR→RGB, as the official runner)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class FrameSource:
    """Iterate RGB frames of a folder or a video file; ``len()`` is known for both."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such folder or video")
        self.files = list_images(self.path) if self.path.is_dir() else None
        if self.files is None:
            cap = cv2.VideoCapture(str(self.path))
            if not cap.isOpened():
                raise InputError(f"{self.path}: not a readable video (or a folder of images)")
            self.count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            cap.release()

    def __len__(self) -> int:
        return len(self.files) if self.files is not None else self.count

    def first(self) -> np.ndarray:
        """The first frame, read alone: its size checks an init box before a model is loaded or an
        output written. A video that decodes no frame is an error here (its header count may lie)."""
        if self.files is not None:
            return read_rgb(self.files[0])
        cap = cv2.VideoCapture(str(self.path))
        try:
            ok, frame = cap.read()
        finally:
            cap.release()
        if not ok:
            raise InputError(f"{self.path}: no frame could be decoded from this video")
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.files is not None:
            yield from (read_rgb(p) for p in self.files)
            return
        cap = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
