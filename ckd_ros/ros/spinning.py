"""An rclpy executor spun in a background thread that stops without a race.

Calling ``Executor.shutdown`` from another thread while ``Executor.spin`` runs can leave the spin
thread in a busy loop (rclpy in Jazzy: if shutdown lands between two callbacks,
``wait_for_ready_callbacks`` recreates an empty generator forever), and that thread then starves
every other one of the interpreter: a replay hung in CI this way. So the thread spins in short
``spin_once`` steps, checking a flag; ``stop`` sets it, joins the thread, and only then shuts the
executor down.
"""

from __future__ import annotations

import threading

from rclpy.executors import Executor, ExternalShutdownException


class BackgroundSpinner:
    def __init__(self, executor: Executor, step: float = 0.05) -> None:
        self.executor = executor
        self.step = step
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ckd_spinner", daemon=True)

    def _run(self) -> None:
        while not self._halt.is_set() and self.executor.context.ok():
            try:
                self.executor.spin_once(timeout_sec=self.step)
            except ExternalShutdownException:  # the context went down under us: nothing left to spin
                return

    def start(self) -> BackgroundSpinner:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Idempotent: the thread ends within one step, then the executor is shut down."""
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.executor.shutdown()
