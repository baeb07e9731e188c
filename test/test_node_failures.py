"""The node never says OK while it fails: bounded inits, frames of another size, non-finite outputs,
clock-skewed init stamps, failing frames, a CUDA failure (simulated on the CPU), init/reset that
never wait for inference, and a seeded fuzz of malformed images among valid ones."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import test_node
import torch
from diagnostic_msgs.msg import DiagnosticStatus
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2D

from ckd_ros.ros.conversions import box_to_bbox, image_msg
from ckd_ros.ros.fuzz import broken_image

pytestmark = pytest.mark.ros
Graph, wait_for = test_node.Graph, test_node.wait_for
graph = test_node.graph  # the same fixture as test_node's
INIT = [50.0, 40.0, 40.0, 30.0]


def level(g: Graph) -> bytes:
    return g.diags[-1].status[0].level if g.diags else b"\xff"


def publish_init(g: Graph, box: tuple[float, ...], sec: int = 0) -> None:
    init = Detection2D()
    init.header.stamp.sec = sec
    init.bbox = box_to_bbox(box)
    g.pub_init.publish(init)
    time.sleep(0.3)


def test_an_init_larger_than_the_image_is_rejected_and_every_pair_still_answered(graph):
    g = graph()
    publish_init(g, (-100.0, -100.0, 30000.0, 30000.0))
    g.publish_paced(10)
    assert wait_for(lambda: len(g.arrays) >= 10 and g.diag().get("processed_total") == "10")
    assert all(len(a.detections) == 0 for a in g.arrays)  # idle, answered
    assert level(g) == DiagnosticStatus.WARN and "larger than the 160x120 image" in g.diags[-1].status[0].message
    assert g.diag()["state"] == "idle" and g.diag()["errors"] == "0" and g.diag()["init_rejected"] == "1"


def test_non_finite_outputs_are_lost_counted_and_an_error(graph):
    g = graph(init_box=INIT)
    g.publish_paced(2)
    assert wait_for(lambda: len(g.dets) >= 2)
    # Outputs turn NaN (broken weights, an fp16 overflow): the hook replaces the network's maps.
    g.node.tracker.model.register_forward_hook(lambda _m, _i, out: {k: v * float("nan") for k, v in out.items()})
    g.publish_paced(4)
    assert wait_for(lambda: len(g.arrays) >= 6 and g.diag().get("nonfinite_outputs") == "4", 5)
    assert len(g.dets) == 2 and all(len(a.detections) == 0 for a in g.arrays[2:6])  # lost: nothing published
    assert wait_for(lambda: level(g) == DiagnosticStatus.ERROR, 3)
    assert g.diag()["state"] == "lost" and "not finite" in g.diags[-1].status[0].message


def test_a_frame_of_another_size_is_skipped_not_tracked(graph):
    g = graph(init_box=INIT)
    g.publish_paced(3)
    assert wait_for(lambda: len(g.dets) >= 3)
    g.publish(image_msg(np.zeros((1, 1, 3), np.uint8), "rgb8"), image_msg(np.zeros((1, 1), np.uint8), "mono8"))
    time.sleep(0.1)
    g.publish_paced(3)
    assert wait_for(lambda: g.diag().get("size_mismatch") == "1" and len(g.arrays) >= 6, 5)
    time.sleep(0.2)
    assert len(g.arrays) == 6 and len(g.dets) == 6  # the 1x1 pair got no answer; the others were tracked
    for d in g.dets:
        x, y = d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2
        assert 0 <= x < 160 and 0 <= y < 120, (x, y)
    assert level(g) == DiagnosticStatus.WARN and "frame size differs" in g.diags[-1].status[0].message


def test_an_init_stamped_far_ahead_of_the_cameras_is_applied_to_the_next_pair(graph):
    g = graph()
    publish_init(g, tuple(INIT), sec=1_800_000_000)  # wall time; the cameras run on sim time (~100 s)
    g.publish_paced(2)
    assert wait_for(lambda: len(g.arrays) >= 2)
    assert [len(a.detections) for a in g.arrays[:2]] == [1, 1]
    assert g.arrays[0].detections[0].bbox.size_x == 40.0


def test_frames_that_keep_failing_raise_an_error_in_diagnostics(graph):
    g = graph(init_box=INIT)
    g.publish_paced(2)
    assert wait_for(lambda: len(g.dets) >= 2 and level(g) == DiagnosticStatus.OK)

    def broken(*_a, **_k):
        raise ValueError("simulated failure")

    g.node.tracker.track = broken
    g.publish_paced(4)
    assert wait_for(lambda: g.diag().get("errors") == "4", 5)
    assert wait_for(lambda: level(g) == DiagnosticStatus.ERROR, 3)
    msg = g.diags[-1].status[0].message
    assert "the last 4 frames failed" in msg and "simulated failure" in msg
    del g.node.tracker.track  # frames succeed again: ERROR clears to WARN (recent failures), then OK
    g.publish_paced(2)
    assert wait_for(lambda: level(g) == DiagnosticStatus.WARN, 3)


def test_reset_and_init_never_wait_for_a_running_inference(graph):
    g = graph(init_box=INIT)
    g.publish_paced(2)
    assert wait_for(lambda: len(g.dets) >= 2)
    entered, release = threading.Event(), threading.Event()
    real_track = g.node.tracker.track

    def blocking(*a, **k):
        entered.set()
        release.wait(20)
        return real_track(*a, **k)

    g.node.tracker.track = blocking
    g.publish()
    assert entered.wait(5)
    assert wait_for(g.reset_client.service_is_ready)
    fut = g.reset_client.call_async(Trigger.Request())
    done_while_blocked = wait_for(fut.done, 5)
    release.set()
    assert done_while_blocked and fut.result().success  # answered while the inference was still running
    g.publish_paced(2)
    assert wait_for(lambda: len(g.arrays) >= 4)
    time.sleep(0.2)
    # The frame that ran across the reset is discarded; the next pairs are idle.
    assert [len(a.detections) for a in g.arrays] == [1, 1, 0, 0]


class CudaFailingTracker:
    """A CPU tracker that says it is on CUDA and fails like CUDA once: the fallback is tested
    without a GPU."""

    def __init__(self, real, error: BaseException) -> None:
        self.real, self.error = real, error
        self.device, self.model, self.config = torch.device("cuda"), real.model, real.config

    state = property(lambda self: self.real.state)
    cuda_graphs_status = property(lambda self: self.real.cuda_graphs_status)
    initialized = property(lambda self: self.real.initialized)

    def reset(self) -> None:
        self.real.reset()

    def track(self, *_a, **_k):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB"),
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        torch.AcceleratorError("CUDA error: device-side assert triggered"),
    ],
    ids=["oom", "runtime", "accelerator"],
)
def test_a_cuda_failure_moves_the_model_to_the_cpu_and_tracking_goes_on(graph, error):
    g = graph(init_box=INIT)
    g.publish_paced(2)
    assert wait_for(lambda: len(g.dets) >= 2)
    g.node.tracker = CudaFailingTracker(g.node.tracker, error)
    g.publish_paced(4)
    assert wait_for(lambda: len(g.dets) >= 5, 10)  # no deadlock: frames after the failure are tracked
    assert {d.id for d in g.dets} == {"1"}  # the same target, re-initialised at its box on the CPU
    assert wait_for(lambda: g.diag().get("device") == "cpu" and g.diag().get("errors") == "1", 3)
    assert "CUDA failed" in g.diag()["last_failure"]
    assert isinstance(g.node.tracker.model, torch.nn.Module) and g.node.tracker.device.type == "cpu"


def test_fuzz_malformed_images_among_valid_ones_never_crash_the_node(graph):
    g = graph(init_box=INIT, qos_reliability="reliable", qos_depth=50)
    rng = np.random.default_rng(2026)
    g.publish_paced(2)
    assert wait_for(lambda: len(g.dets) >= 2)
    fuzzed = 0
    for _ in range(150):
        good = g.frame()
        if rng.random() < 0.6:
            fuzzed += 1
            rgb, tir = broken_image(rng, good), None
            if rng.random() < 0.5:
                rgb, tir = None, broken_image(rng, good)
            g.publish(rgb, tir)
        else:
            g.publish()
        time.sleep(0.02)
    g.publish_paced(3)
    assert wait_for(lambda: int(g.diag().get("processed_total", 0)) >= 5, 10)
    stamps_before = {a.header.stamp.sec for a in g.arrays}
    last = g.publish_paced(3)
    assert wait_for(lambda: set(last) <= {a.header.stamp.sec for a in g.arrays}, 10)  # alive and answering
    d = g.diag()
    assert g.node.worker.is_alive() and d["errors"] == "0"  # every bad input handled as bad input
    rejected = int(d["malformed"]) + int(d["size_mismatch"])
    assert rejected > 0.3 * fuzzed and int(d["processed_total"]) > len(stamps_before) / 2


def test_setting_the_same_init_box_again_re_acquires_the_target(graph):
    from rclpy.parameter import Parameter

    g = graph(init_box=INIT)
    g.publish_paced(2)
    assert wait_for(lambda: len(g.dets) >= 2)
    assert g.node.set_parameters([Parameter("init_box", value=INIT)])[0].successful
    g.publish_paced(2)
    assert wait_for(lambda: any(d.id == "2" for d in g.dets))  # a new track from the same box
    assert g.node.set_parameters([Parameter("score_threshold", value=0.3)])[0].successful
    g.publish_paced(2)
    assert wait_for(lambda: len(g.dets) >= 6) and {d.id for d in g.dets[-2:]} == {"2"}  # other sets do not re-init


@pytest.mark.parametrize("stuck", ["track", "initialize"])
def test_a_worker_stuck_past_cleanup_never_publishes_into_the_next_session(graph, stuck):
    """An inference blocked past teardown's join (cleanup → configure → activate meanwhile): the old
    worker's answer is dropped, not published by the new session's publishers, and the new session
    tracks from its own init (a stuck *init* used to bump the new session's target id)."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    ok = TransitionCallbackReturn.SUCCESS
    g = graph(lifecycle=True, init_box=INIT, diagnostics_period=0.1)
    assert g.node.trigger_configure() == ok and g.node.trigger_activate() == ok
    g.wait_connected()
    g.publish_paced(2)
    assert wait_for(lambda: len(g.dets) >= 2)
    entered, release, returned = test_node.block(g.node.tracker, stuck)  # the old session's inference, stuck past the join
    g.node.worker_join_timeout = 0.2
    if stuck == "initialize":  # the same box again re-acquires: the next pair runs an init
        assert g.node.set_parameters([Parameter("init_box", value=INIT)])[0].successful
    stale = g.publish()
    assert entered.wait(5)
    old_worker = g.node.worker
    assert g.node.trigger_deactivate() == ok and g.node.trigger_cleanup() == ok
    assert old_worker.is_alive()  # the join timed out: the old worker is still in its inference
    assert g.node.trigger_configure() == ok and g.node.trigger_activate() == ok
    assert g.node.worker is not old_worker
    g.wait_connected()
    fresh = g.publish_paced(2)
    assert wait_for(lambda: {a.header.stamp.sec for a in g.arrays} >= set(fresh))
    release.set()  # the old inference returns, into the new session
    assert returned.wait(5) and wait_for(lambda: not old_worker.is_alive(), 5)
    later = g.publish_paced(2)
    assert wait_for(lambda: {a.header.stamp.sec for a in g.arrays} >= set(later))
    time.sleep(0.2)
    assert stale not in {a.header.stamp.sec for a in g.arrays} | {d.header.stamp.sec for d in g.dets}
    assert [len(a.detections) for a in g.arrays if a.header.stamp.sec in fresh + later] == [1, 1, 1, 1]
    assert {d.id for d in g.dets if d.header.stamp.sec in fresh + later} == {"1"}  # the new session's own track
    # the new session counts its own four frames, and no failure of the old worker
    assert wait_for(lambda: g.diag().get("processed_total") == "4", 3) and g.diag()["errors"] == "0"
