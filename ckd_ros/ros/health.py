"""What the node's frames came to, as one diagnostics level.

The level is derived from outcomes, not from the node's intentions: a node whose every frame fails
(a 40 GiB crop, NaN weights, frames of the wrong size, a worker stuck in a CUDA call) must not
report OK while it publishes nothing. Plain Python, so the rule is tested without ROS.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}

# Ways a frame (or a request) can fail. Each is counted and shown in /diagnostics.
FAILURES = {
    "malformed": "malformed input pair",
    "size_mismatch": "frame size differs from the initialised one",
    "init_rejected": "init rejected",
    "nonfinite": "non-finite network output",
    "error": "frame failed",
    "cuda_fallback": "CUDA failed, moved to the CPU",
}


@dataclass(frozen=True)
class HealthStatus:
    level: int
    message: str


class Health:
    """Outcomes of the worker's frames in a sliding window.

    ERROR: the last ``error_run`` frames all failed (nothing the node did in between succeeded), or
    the worker has not finished a frame for ``stall_seconds`` while pairs keep arriving.
    WARN: some frame failed within the last ``window`` seconds.
    """

    def __init__(self, window: float = 5.0, error_run: int = 3, stall_seconds: float = 10.0) -> None:
        self.window, self.error_run, self.stall_seconds = window, error_run, stall_seconds
        self.totals: Counter[str] = Counter()
        self._recent: deque[tuple[float, str]] = deque()
        self._run = 0  # consecutive failures
        self._last_failure = ""
        self._busy_since: float | None = None
        self._lock = threading.Lock()

    def started(self, now: float | None = None) -> None:
        """The worker took a pair (for the stall rule)."""
        with self._lock:
            self._busy_since = time.monotonic() if now is None else now

    def record(self, outcome: str, detail: str = "", now: float | None = None) -> None:
        """``ok`` or one of ``FAILURES``; ``detail`` is the reason shown in the status message."""
        if outcome != "ok" and outcome not in FAILURES:
            raise ValueError(f"unknown outcome {outcome!r}")
        now = time.monotonic() if now is None else now
        with self._lock:
            self._busy_since = None
            self.totals[outcome] += 1
            if outcome == "ok":
                self._run = 0
                return
            self._run += 1
            self._recent.append((now, outcome))
            self._last_failure = f"{FAILURES[outcome]}: {detail}" if detail else FAILURES[outcome]

    def failures(self) -> int:
        with self._lock:
            return sum(n for k, n in self.totals.items() if k != "ok")

    @property
    def last_failure(self) -> str:
        with self._lock:
            return self._last_failure

    def status(self, last_pair: float | None, now: float | None = None) -> HealthStatus:
        """The level and a one-line reason; ``last_pair``: monotonic time of the newest input pair."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._recent and self._recent[0][0] < now - self.window:
                self._recent.popleft()
            busy = None if self._busy_since is None else now - self._busy_since
            if busy is not None and busy > self.stall_seconds and last_pair is not None and now - last_pair < self.stall_seconds:
                return HealthStatus(ERROR, f"worker stalled: no frame finished for {busy:.1f} s while pairs arrive")
            if self._run >= self.error_run:
                return HealthStatus(ERROR, f"the last {self._run} frames failed ({self._last_failure})")
            if self._recent:
                kinds = Counter(kind for _, kind in self._recent)
                counts = ", ".join(f"{n} {FAILURES[k]}" for k, n in kinds.most_common())
                return HealthStatus(WARN, f"{counts} in the last {self.window:g} s ({self._last_failure})")
            return HealthStatus(OK, "")
