"""The node's health rule and rate meter, without ROS: failures raise WARN/ERROR, never OK."""

from __future__ import annotations

import numpy as np
import pytest

from ckd_ros.ros.health import ERROR, OK, WARN, Health
from ckd_ros.ros.loss import StreamLoss
from ckd_ros.ros.worker import RateMeter


def test_health_levels_follow_the_outcomes():
    h = Health(window=5.0, error_run=3)
    assert h.status(last_pair=0.0, now=0.0).level == OK
    h.record("ok", now=1.0)
    h.record("malformed", "step 10 too small", now=2.0)
    s = h.status(last_pair=2.0, now=2.5)
    assert s.level == WARN and "1 malformed input pair" in s.message and "step 10 too small" in s.message
    h.record("nonfinite", now=3.0)
    h.record("error", "MemoryError", now=4.0)
    s = h.status(last_pair=4.0, now=4.1)
    assert s.level == ERROR and "the last 3 frames failed" in s.message and "MemoryError" in s.message
    h.record("ok", now=5.0)  # one good frame: no longer every frame failing, still recent failures
    assert h.status(last_pair=5.0, now=5.1).level == WARN
    assert h.status(last_pair=9.5, now=9.5).level == OK  # the failures left the window
    assert h.failures() == 3 and h.totals["ok"] == 2
    with pytest.raises(ValueError, match="unknown outcome"):
        h.record("fine")


def test_a_worker_stuck_in_a_frame_while_pairs_arrive_is_an_error():
    h = Health(stall_seconds=10.0)
    h.started(now=0.0)
    assert h.status(last_pair=5.0, now=5.0).level == OK  # a slow frame, not yet a stall
    s = h.status(last_pair=11.0, now=11.5)
    assert s.level == ERROR and "worker stalled" in s.message
    assert h.status(last_pair=0.0, now=11.5).level == OK  # no input either: the silence WARN covers it
    h.record("ok", now=12.0)
    assert h.status(last_pair=12.0, now=12.0).level == OK


def test_rate_meter_remembers_the_last_event_after_the_window_forgets_it():
    m = RateMeter(window=5.0)
    assert m.last is None
    m.tick(now=100.0)
    m.tick(now=100.5)
    assert m.rate(now=100.5) > 0
    assert m.rate(now=130.0) == 0.0 and m.last == 100.5  # seconds_since_pair stays true after 5 s


@pytest.mark.parametrize("keep", [1.0, 0.9, 0.5, 0.4])
def test_stream_loss_counts_the_frames_that_never_arrived(keep):
    rng = np.random.default_rng(7)
    period = 1 / 30
    stamps = [i * period + rng.normal(0, 0.001) for i in range(600)]
    kept = [s for s in stamps if rng.random() < keep]
    loss = StreamLoss(window=1000)
    for s in kept:
        loss.add(1000.0 + s)
    true_lost = 600 - len(kept) - stamps.index(kept[0])  # frames before the first received are unknowable
    assert loss.received == len(kept) and abs(loss.lost - true_lost) <= 0.03 * 600
    assert abs(loss.recent_loss() - (1 - keep)) < 0.05
    assert loss.period == pytest.approx(period, rel=0.1)


def test_a_pause_of_the_camera_is_not_transport_loss():
    loss = StreamLoss(pause=1.0)
    for s in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 3.0, 3.1, 3.2, 3.4]:  # stopped for 2.5 s; then one frame lost
        loss.add(s)
    assert loss.pauses == 1 and loss.lost == 1


def test_stream_loss_ignores_repeated_and_out_of_order_stamps():
    loss = StreamLoss()
    for s in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.45, 0.6, 1.0]:
        loss.add(s)
    assert loss.received == 10 and loss.lost == 3  # 0.7, 0.8, 0.9 missing


def test_loss_is_still_counted_after_the_stamp_clock_goes_back():
    loss = StreamLoss(pause=1.0)
    for i in range(100):
        loss.add(100.0 + i * 0.1)
    for i in range(100):  # a bag loop: stamps restart at 0, and one frame in four is lost
        if i % 4 != 3:
            loss.add(i * 0.1)
    assert loss.pauses == 1 and loss.lost >= 20
