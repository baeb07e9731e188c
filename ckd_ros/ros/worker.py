"""The inference worker: a one-slot mailbox and the thread that owns the model.

Callbacks put the newest pair and return at once; a pair not yet taken is replaced (and counted),
so memory is constant and latency is bounded by one inference whatever the input rate.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ckd_ros.stats import percentile


class Mailbox:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float) -> Any:
        """The newest item, or None after ``timeout`` seconds (or when closed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Worker(threading.Thread):
    """Runs ``handle(item)`` for each mailbox item; an exception is reported, never fatal."""

    def __init__(self, mailbox: Mailbox, handle: Callable[[Any], None], on_error: Callable[[BaseException], None]) -> None:
        super().__init__(name="ckd_tracker_worker", daemon=True)
        self.mailbox, self.handle, self.on_error = mailbox, handle, on_error
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            item = self.mailbox.take(0.1)
            if item is None:
                continue
            try:
                self.handle(item)
            except Exception as exc:  # the node must keep running whatever one frame does
                self.on_error(exc)

    def stop(self, timeout: float = 5.0) -> None:
        self._halt.set()
        self.mailbox.close()
        self.join(timeout)


class RateMeter:
    """Events per second over a sliding window, and the time of the last event ever (kept apart
    from the window, which forgets events older than ``window`` seconds)."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self.times: deque[float] = deque()
        self._last: float | None = None
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        with self._lock:
            self._last = time.monotonic() if now is None else now
            self.times.append(self._last)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self.times and self.times[0] < now - self.window:
                self.times.popleft()
            if len(self.times) < 2:
                return 0.0
            span = max(now - self.times[0], 1e-6)
            return len(self.times) / span

    @property
    def last(self) -> float | None:
        with self._lock:
            return self._last


class LatencyStats:
    """Percentiles of the last ``size`` latencies (ms)."""

    def __init__(self, size: int = 300) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self.values.append(ms)

    def pct(self, q: float) -> float:
        with self._lock:
            values = list(self.values)
        return percentile(values, q)
