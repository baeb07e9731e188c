"""Frames that never arrived, estimated from the header stamps of those that did.

A camera stamps its frames at a steady period; best-effort transport (the camera default) drops
frames without a word, and a large image over default Fast DDS falls back to fragmented UDP, where
half of them can vanish. The period is the median gap of recent stamps (robust to the gaps
themselves while fewer than half the frames are lost), and a gap of k periods means k - 1 frames
lost. Plain Python, so the estimate is tested without ROS.
"""

from __future__ import annotations

import threading
from collections import deque


class StreamLoss:
    """Per-stream loss estimate. ``add(stamp)`` for each received message (stamp in seconds).

    A gap longer than ``pause`` seconds is the camera stopping (a dropout, which the node reports
    as silence), not frames lost on the way: it is counted in ``pauses``, not in the loss."""

    def __init__(self, history: int = 60, window: int = 200, pause: float = 1.0) -> None:
        self.pause = pause
        self.pauses = 0
        self._gaps: deque[float] = deque(maxlen=history)  # recent stamp differences, for the period
        self._uncounted: list[float] = []  # gaps seen before the period was known
        self._recent: deque[tuple[int, int]] = deque(maxlen=window)  # (received, lost) per message
        self._last: float | None = None
        self.received = 0
        self.lost = 0
        self._lock = threading.Lock()

    def add(self, stamp: float) -> None:
        with self._lock:
            self.received += 1
            lost = 0
            if self._last is not None and abs(stamp - self._last) > self.pause:
                self.pauses += 1  # a stop, or the clock went back (bag loop, sim reset, camera restart)
                self._last = stamp
            elif self._last is not None and stamp > self._last:
                self._gaps.append(stamp - self._last)
                self._uncounted.append(stamp - self._last)
                period = self._period()
                if period is not None:  # the first gaps are counted once the period is known
                    lost = sum(max(0, round(gap / period) - 1) for gap in self._uncounted)
                    self._uncounted.clear()
            if self._last is None or stamp > self._last:  # out-of-order or repeated stamps carry no gap
                self._last = stamp
            self.lost += lost
            self._recent.append((1, lost))

    def _period(self) -> float | None:
        """The source's frame period, once there are enough gaps to tell."""
        if len(self._gaps) < 5:
            return None
        gaps = sorted(self._gaps)
        return gaps[len(gaps) // 5]

    @property
    def period(self) -> float | None:
        with self._lock:
            return self._period()

    def recent_loss(self) -> float:
        """Fraction of the source's frames lost over the last ``window`` received messages."""
        with self._lock:
            received = sum(r for r, _ in self._recent)
            lost = sum(n for _, n in self._recent)
        return lost / (received + lost) if received + lost else 0.0
