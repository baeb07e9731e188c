"""The ckd_tracker node in a real rclpy graph: pairing, detections, init paths, reset, diagnostics,
malformed input, flooding, parameters, and a second process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="needs the ROS 2 venv (scripts/setup_env.sh)")
pytest.importorskip("vision_msgs.msg", reason="needs vision_msgs (scripts/setup_env.sh builds it)")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import PointStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from vision_msgs.msg import Detection2D, Detection2DArray  # noqa: E402

from ckd_ros.ros.conversions import box_to_bbox, image_msg  # noqa: E402
from ckd_ros.ros.node import CKDTrackerLifecycleNode, CKDTrackerNode  # noqa: E402
from ckd_ros.ros.spinning import BackgroundSpinner  # noqa: E402

pytestmark = pytest.mark.ros
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


def block(tracker, method: str) -> tuple[threading.Event, threading.Event, threading.Event]:
    """Make ``tracker.<method>`` block until released, as an inference stuck on a slow device:
    (entered, release, returned) events."""
    entered, release, returned = threading.Event(), threading.Event(), threading.Event()
    real = getattr(tracker, method)

    def blocking(*a, **k):
        entered.set()
        release.wait(20)
        try:
            return real(*a, **k)
        finally:
            returned.set()

    setattr(tracker, method, blocking)
    return entered, release, returned


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


class Graph:
    """The node under test plus a peer node that publishes images and records outputs.

    ``lifecycle=True``: the managed node, left unconfigured; the test drives its transitions and
    calls ``wait_connected`` once it is configured."""

    def __init__(self, checkpoint: str, lifecycle: bool = False, **params) -> None:
        overrides = [Parameter("checkpoint", value=checkpoint)] + [Parameter(k, value=v) for k, v in params.items()]
        self.node = (CKDTrackerLifecycleNode if lifecycle else CKDTrackerNode)(parameter_overrides=overrides)
        self.peer = rclpy.create_node("test_peer")
        qos = RELIABLE if params.get("qos_reliability") == "reliable" else qos_profile_sensor_data
        self.pub_rgb = self.peer.create_publisher(Image, "rgb/image", qos)
        self.pub_tir = self.peer.create_publisher(Image, "thermal/image", qos)
        self.pub_init = self.peer.create_publisher(Detection2D, "/ckd_tracker/init", RELIABLE)
        self.pub_point = self.peer.create_publisher(PointStamped, "/ckd_tracker/init_point", RELIABLE)
        self.arrays: list[Detection2DArray] = []
        self.dets: list[Detection2D] = []
        self.diags: list[DiagnosticArray] = []
        self.peer.create_subscription(Detection2DArray, "/ckd_tracker/detections", self.arrays.append, RELIABLE)
        self.peer.create_subscription(Detection2D, "/ckd_tracker/detection", self.dets.append, RELIABLE)
        self.peer.create_subscription(DiagnosticArray, "/diagnostics", self.diags.append, RELIABLE)
        self.reset_client = self.peer.create_client(Trigger, "/ckd_tracker/reset")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.spinner = BackgroundSpinner(self.executor).start()
        self.rng = np.random.default_rng(0)
        self.sec = 100
        self.closed = False
        self.raw = [params.get(f"{s}_transport", "raw") == "raw" for s in ("rgb", "thermal")]  # else the test subscribes
        if not lifecycle:
            self.wait_connected()

    def wait_connected(self) -> None:
        """Until the node's subscriptions (made at construction, or at a lifecycle configure) are matched."""
        assert wait_for(
            lambda: (
                (not self.raw[0] or self.pub_rgb.get_subscription_count() >= 1)
                and (not self.raw[1] or self.pub_tir.get_subscription_count() >= 1)
                and self.pub_init.get_subscription_count() >= 1
            )
        )

    def frame(self, h: int = 120, w: int = 160) -> np.ndarray:
        img = np.full((h, w, 3), 60, np.uint8)
        img[40:70, 50:90] = (230, 200, 40)
        return np.clip(img.astype(int) + self.rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)

    def publish(self, rgb_msg: Image | None = None, tir_msg: Image | None = None, stamp: int | None = None) -> int:
        """One pair with a shared stamp (whole seconds, unique per call); returns the stamp."""
        self.sec = stamp if stamp is not None else self.sec + 1
        rgb = self.frame()
        rgb_msg = rgb_msg or image_msg(rgb, "rgb8")
        tir_msg = tir_msg or image_msg(rgb[:, :, 0], "mono8")
        for m in (rgb_msg, tir_msg):
            m.header.stamp.sec, m.header.stamp.nanosec = self.sec, 0
            m.header.frame_id = "camera_rgb"
        self.pub_rgb.publish(rgb_msg)
        self.pub_tir.publish(tir_msg)
        return self.sec

    def publish_paced(self, n: int, period: float = 0.04) -> list[int]:
        stamps = []
        for _ in range(n):
            stamps.append(self.publish())
            time.sleep(period)
        return stamps

    def diag(self) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.diags[-1].status[0].values} if self.diags else {}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.spinner.stop()
        self.node.destroy_node()
        self.peer.destroy_node()


@pytest.fixture
def graph(checkpoint):
    rclpy.init()
    graphs = []

    def make(**params) -> Graph:
        g = Graph(checkpoint, **params)
        graphs.append(g)
        return g

    yield make
    for g in graphs:
        g.close()
    rclpy.try_shutdown()


def test_one_detection_per_processed_pair_with_the_source_stamp(graph):
    g = graph(init_box=[50.0, 40.0, 40.0, 30.0], qos_reliability="best_effort")
    stamps = g.publish_paced(15)
    assert wait_for(lambda: len(g.arrays) >= 15)
    got = [a.header.stamp.sec for a in g.arrays]
    assert got == stamps  # paced slower than inference: every pair processed, in order
    assert all(len(a.detections) == 1 for a in g.arrays) and len(g.dets) == 15
    first = g.arrays[0].detections[0]
    assert first.header.frame_id == "camera_rgb" and first.id == "1"
    assert (first.bbox.center.position.x, first.bbox.center.position.y, first.bbox.size_x, first.bbox.size_y) == (70, 55, 40, 30)
    assert first.results[0].hypothesis.class_id == "target" and first.results[0].hypothesis.score == 1.0
    assert all(0.0 <= d.results[0].hypothesis.score <= 1.0 for d in g.dets)


def test_idle_until_init_then_topic_init_at_its_stamp_and_reset(graph):
    g = graph()
    g.publish_paced(3)
    assert wait_for(lambda: len(g.arrays) >= 3)
    assert all(len(a.detections) == 0 for a in g.arrays[:3]) and not g.dets  # idle: empty arrays
    init = Detection2D()
    init.header.stamp.sec = g.sec + 2  # applies to the second pair from now, not the first
    init.bbox = box_to_bbox((50.0, 40.0, 40.0, 30.0))
    g.pub_init.publish(init)
    time.sleep(0.3)
    g.publish_paced(4)
    assert wait_for(lambda: len(g.arrays) >= 7)
    assert [len(a.detections) for a in g.arrays[3:7]] == [0, 1, 1, 1]
    assert g.arrays[4].detections[0].bbox.size_x == 40.0
    assert wait_for(g.reset_client.service_is_ready)
    fut = g.reset_client.call_async(Trigger.Request())
    assert wait_for(fut.done) and fut.result().success
    g.publish_paced(2)
    assert wait_for(lambda: len(g.arrays) >= 9)
    assert [len(a.detections) for a in g.arrays[7:9]] == [0, 0]
    assert wait_for(lambda: g.diag().get("state") == "idle", 3)


def test_click_point_init_and_parameter_init(graph):
    g = graph(init_point_box_size=[20.0, 10.0])
    pt = PointStamped()
    pt.point.x, pt.point.y = 70.0, 55.0
    g.pub_point.publish(pt)
    time.sleep(0.3)
    g.publish_paced(2)
    assert wait_for(lambda: len(g.dets) >= 2)  # both frames processed before the next init
    d = g.dets[0].bbox
    assert (d.center.position.x, d.center.position.y, d.size_x, d.size_y) == (70.0, 55.0, 20.0, 10.0)
    result = g.node.set_parameters([Parameter("init_box", value=[10.0, 10.0, 30.0, 30.0])])
    assert result[0].successful
    g.publish_paced(2)
    assert wait_for(lambda: sum(d.id == "2" for d in g.dets) >= 2)
    first_new = next(d for d in g.dets if d.id == "2")  # a new track id, starting at the parameter's box
    assert first_new.bbox.size_x == 30.0 and first_new.bbox.center.position.x == 25.0


def test_diagnostics_warn_when_thermal_stops_and_recover(graph):
    g = graph(init_box=[50.0, 40.0, 40.0, 30.0], no_pair_warn_seconds=0.6)
    g.publish_paced(5)
    assert wait_for(lambda: g.diag().get("processed_total") == "5", 5)
    status = g.diags[-1].status[0]
    assert status.level == DiagnosticStatus.OK and status.message == "tracking"
    for key in ("rgb_hz", "thermal_hz", "pair_hz", "dropped_pairs", "latency_p50_ms", "latency_p95_ms", "device"):
        assert key in g.diag()
    assert float(g.diag()["latency_p50_ms"]) > 0
    t0 = time.monotonic()
    for _ in range(30):  # RGB keeps coming, thermal has stopped
        g.sec += 1
        m = image_msg(g.frame(), "rgb8")
        m.header.stamp.sec = g.sec
        g.pub_rgb.publish(m)
        time.sleep(0.05)
        if g.diags and g.diags[-1].status[0].level == DiagnosticStatus.WARN:
            break
    warned_after = time.monotonic() - t0
    warn = g.diags[-1].status[0]
    assert warn.level == DiagnosticStatus.WARN and "no synchronized RGB/thermal pair" in warn.message
    assert "/rgb/image" in warn.message and "/thermal/image" in warn.message and "best_effort" in warn.message
    assert warned_after < 1.5
    g.publish_paced(3)
    assert wait_for(lambda: g.diags[-1].status[0].level == DiagnosticStatus.OK, 3)


def test_malformed_messages_are_counted_and_the_node_keeps_running(graph):
    g = graph(init_box=[50.0, 40.0, 40.0, 30.0])
    good = g.frame()
    bad_step = image_msg(good, "rgb8")
    bad_step.step = 10
    short = image_msg(good, "rgb8")
    short.data = bytes(100)
    unknown = image_msg(good, "rgb8")
    unknown.encoding = "yuv422_weird"
    small_tir = image_msg(good[:60, :80, 0], "mono8")  # size mismatch with alignment "none"
    for rgb, tir in ((bad_step, None), (short, None), (unknown, None), (None, small_tir)):
        g.publish(rgb, tir)
        time.sleep(0.1)
    g.publish_paced(3)
    assert wait_for(lambda: g.diag().get("malformed") == "4" and len(g.arrays) >= 3, 5)
    assert len(g.dets) == 3 and g.diag()["errors"] == "0"
    bad = g.node.set_parameters([Parameter("init_box", value=[500.0, 10.0, 30.0, 30.0])])[0]  # outside: rejected at the frame
    assert bad.successful
    g.publish_paced(2)
    assert wait_for(lambda: g.diag().get("init_rejected") == "1", 5)
    assert g.diag()["malformed"] == "4" and g.diag()["state"] == "tracking"  # the old target keeps being tracked


def test_flood_keeps_memory_flat_and_counts_drops(graph):
    import psutil

    g = graph(init_box=[50.0, 40.0, 40.0, 30.0], qos_reliability="reliable", qos_depth=50)
    real_track = g.node.tracker.track

    def slow_track(*a, **k):  # inference 10x slower than the input rate
        time.sleep(0.05)
        return real_track(*a, **k)

    g.node.tracker.track = slow_track
    g.publish_paced(5, 0.06)
    proc = psutil.Process(os.getpid())
    rss0 = proc.memory_info().rss
    for _ in range(300):  # ~200 Hz
        g.publish()
        time.sleep(0.005)
    assert wait_for(lambda: g.diag().get("pairs_total") == "305", 10)
    time.sleep(0.5)
    d = g.diag()
    processed, dropped = int(d["processed_total"]), int(d["dropped_pairs"])
    assert dropped > 150 and processed < 150
    assert processed + dropped in (305, 304)  # every pair processed or dropped (one may be in flight)
    assert proc.memory_info().rss - rss0 < 80 * 2**20


def test_parameters_are_validated_with_a_reason(graph):
    g = graph()
    r = g.node.set_parameters([Parameter("thermal_agc", value="auto")])[0]
    assert not r.successful and "thermal_agc='auto' is not one of" in r.reason
    r = g.node.set_parameters([Parameter("homography", value=[1.0, 2.0])])[0]
    assert not r.successful and "9 numbers" in r.reason
    r = g.node.set_parameters([Parameter("agc_low_percentile", value=99.0), Parameter("agc_high_percentile", value=5.0)])[0]
    assert not r.successful and "percentiles" in r.reason
    r = g.node.set_parameters([Parameter("device", value="cpu")])[0]
    assert not r.successful  # read-only: shapes the node at start
    assert g.node.set_parameters([Parameter("score_threshold", value=0.9)])[0].successful
    assert g.node.tracker.config.score_threshold == 0.9
    assert g.node.set_parameters([Parameter("thermal_agc", value="minmax")])[0].successful
    assert g.node.preprocess.agc.config.mode == "minmax"


def test_node_in_a_second_process_via_ckd_ros_launch(checkpoint):
    """`ckd-ros launch`: the YAML, topic remaps, overrides, and SIGINT forwarded to the node."""
    cmd = [
        sys.executable,
        "-m",
        "ckd_ros.cli",
        "launch",
        "--rgb-topic",
        "/cam/rgb",
        "--thermal-topic",
        "/cam/tir",
        "-p",
        f"checkpoint:={checkpoint}",
        "-p",
        "init_box:=[50.0, 40.0, 40.0, 30.0]",
        "-p",
        "qos_reliability:=reliable",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rclpy.init()
    try:
        peer = rclpy.create_node("remote_peer")
        pub_rgb = peer.create_publisher(Image, "/cam/rgb", RELIABLE)
        pub_tir = peer.create_publisher(Image, "/cam/tir", RELIABLE)
        got: list[Detection2DArray] = []
        peer.create_subscription(Detection2DArray, "/ckd_tracker/detections", got.append, RELIABLE)
        ex = SingleThreadedExecutor()
        ex.add_node(peer)
        spinner = BackgroundSpinner(ex).start()
        assert wait_for(lambda: pub_rgb.get_subscription_count() >= 1 and pub_tir.get_subscription_count() >= 1, 30)
        rng = np.random.default_rng(1)

        def send(sec: int) -> None:
            img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            a, b = image_msg(img, "rgb8"), image_msg(img[:, :, 0], "mono8")
            a.header.stamp.sec = b.header.stamp.sec = sec
            pub_rgb.publish(a)
            pub_tir.publish(b)
            time.sleep(0.05)

        sec = 0
        while not got and sec < 400:  # until both directions are discovered and detections flow
            sec += 1
            send(sec)
        assert got, "no detections from the launched node"
        n = len(got)
        for k in range(1, 11):
            send(1000 + k)
        assert wait_for(lambda: len(got) >= n + 10, 20)
        tail = [m for m in got if m.header.stamp.sec > 1000]
        assert [m.header.stamp.sec for m in tail] == list(range(1001, 1011))
        assert all(len(m.detections) == 1 for m in tail)
        spinner.stop()
        peer.destroy_node()
    finally:
        rclpy.try_shutdown()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert "ckd_tracker configured" in out and "/cam/rgb + /cam/tir (QoS reliable" in out
    assert proc.returncode == 0


def test_params_yaml_matches_the_declared_parameters():
    import yaml

    from ckd_ros.ros.params import PARAMS, yaml_text

    text = (Path(__file__).parents[1] / "config" / "ckd_tracker.yaml").read_text()
    assert text == yaml_text(), "config/ckd_tracker.yaml is stale: regenerate it (see ckd_ros.ros.params.yaml_text)"
    data = yaml.safe_load(text)
    values = data["/**/ckd_tracker"]["ros__parameters"]  # any namespace
    assert list(values) == [p.name for p in PARAMS]
    assert all(values[p.name] == p.default for p in PARAMS)


def test_launcher_rejects_unknown_parameters():
    from ckd_ros.errors import ConfigError
    from ckd_ros.ros.launcher import node_command

    with pytest.raises(ConfigError, match="ckd_tracker parameter name"):
        node_command(None, "a", "b", ["nonsense:=1"])


def test_node_exits_2_on_a_bad_checkpoint(tmp_path):
    (tmp_path / "bad.pt").write_text("nope")
    proc = subprocess.run(
        [sys.executable, "-m", "ckd_ros.ros.node", "--ros-args", "-p", f"checkpoint:={tmp_path / 'bad.pt'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "not a readable PyTorch checkpoint" in proc.stderr


def test_lifecycle_node_transitions(checkpoint):
    from rclpy.lifecycle import TransitionCallbackReturn

    from ckd_ros.ros.node import CKDTrackerLifecycleNode

    ok = TransitionCallbackReturn.SUCCESS

    rclpy.init()
    try:
        node = CKDTrackerLifecycleNode(parameter_overrides=[Parameter("checkpoint", value=checkpoint)])
        peer = rclpy.create_node("lc_peer")
        pub_rgb = peer.create_publisher(Image, "rgb/image", qos_profile_sensor_data)
        pub_tir = peer.create_publisher(Image, "thermal/image", qos_profile_sensor_data)
        got: list[Detection2DArray] = []
        peer.create_subscription(Detection2DArray, "/ckd_tracker/detections", got.append, RELIABLE)
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        ex.add_node(peer)
        spinner = BackgroundSpinner(ex).start()
        assert not node.configured and not hasattr(node, "tracker")  # unconfigured: no model loaded yet
        assert node.set_parameters([Parameter("init_box", value=[50.0, 40.0, 40.0, 30.0])])[0].successful

        def send(n: int) -> None:
            for _ in range(n):
                img = np.full((120, 160, 3), 90, np.uint8)
                a, b = image_msg(img, "rgb8"), image_msg(img[:, :, 0], "mono8")
                send.sec += 1
                a.header.stamp.sec = b.header.stamp.sec = send.sec
                pub_rgb.publish(a)
                pub_tir.publish(b)
                time.sleep(0.05)

        send.sec = 0
        assert node.trigger_configure() == ok and node.configured and not node.active
        assert wait_for(lambda: pub_rgb.get_subscription_count() >= 1)
        send(3)
        time.sleep(0.3)
        assert not got  # inactive: pairs are not processed
        assert node.trigger_activate() == ok and node.active
        send(4)
        assert wait_for(lambda: len(got) >= 4)
        assert all(len(m.detections) == 1 for m in got)
        assert node.trigger_deactivate() == ok and not node.active
        n = len(got)
        send(3)
        time.sleep(0.3)
        assert len(got) == n
        assert node.trigger_cleanup() == ok and not node.configured and not hasattr(node, "tracker")
        assert node.trigger_configure() == ok and node.tracker.model is not None  # the model loads again
        assert node.trigger_shutdown() == ok and not node.configured
        spinner.stop()
        peer.destroy_node()
        node.destroy_node()
    finally:
        rclpy.try_shutdown()


def test_plain_node_outputs_are_plain_publishers(graph):
    from rclpy.lifecycle import LifecyclePublisher

    g = graph()
    assert not any(isinstance(pub, LifecyclePublisher) for pub in (g.node.det_array_pub, g.node.det_pub, g.node.debug_pub))
    g.publish_paced(2)
    assert wait_for(lambda: len(g.arrays) >= 2)  # idle answers go out: nothing to activate


def test_lifecycle_outputs_go_out_only_while_active_and_diagnostics_in_every_state(graph):
    """Detections and the debug image are lifecycle publishers: silent while inactive, even for a
    frame that was in inference at deactivate; /diagnostics flows while inactive too."""
    from rclpy.lifecycle import LifecyclePublisher, TransitionCallbackReturn

    ok = TransitionCallbackReturn.SUCCESS
    g = graph(lifecycle=True, init_box=[50.0, 40.0, 40.0, 30.0], diagnostics_period=0.1, debug_rate=100.0)
    debug: list[Image] = []
    g.peer.create_subscription(Image, "/ckd_tracker/debug_image", debug.append, RELIABLE)
    assert g.node.trigger_configure() == ok
    g.wait_connected()
    outputs = (g.node.det_array_pub, g.node.det_pub, g.node.debug_pub)
    assert all(isinstance(pub, LifecyclePublisher) and not pub.is_activated for pub in outputs)
    assert not isinstance(g.node.diag_pub, LifecyclePublisher)
    assert wait_for(lambda: g.node.debug_pub.get_subscription_count() >= 1)

    # inactive: pairs come in, nothing goes out (not even a direct publish), diagnostics do
    n_diag = len(g.diags)
    g.publish_paced(3)
    g.node.det_array_pub.publish(Detection2DArray())
    g.node.det_pub.publish(Detection2D())
    time.sleep(0.4)
    assert not g.arrays and not g.dets and not debug
    assert wait_for(lambda: len(g.diags) >= n_diag + 3, 3)  # ~10 Hz while inactive
    assert g.diags[-1].status[0].message == "inactive (lifecycle)" and g.diag()["state"] == "idle"

    # active: detections and debug images arrive
    assert g.node.trigger_activate() == ok and all(pub.is_activated for pub in outputs)
    stamps = g.publish_paced(4)
    assert wait_for(lambda: len(g.arrays) >= 4 and len(g.dets) >= 4 and len(debug) >= 1)
    assert [a.header.stamp.sec for a in g.arrays] == stamps and all(len(a.detections) == 1 for a in g.arrays)

    # deactivate while a frame is in inference: its answer is dropped by the disabled publishers
    entered, release, returned = block(g.node.tracker, "track")
    in_flight = g.publish()
    assert entered.wait(5)
    assert g.node.trigger_deactivate() == ok and not any(pub.is_activated for pub in outputs)
    n_arrays, n_dets, n_debug, n_diag = len(g.arrays), len(g.dets), len(debug), len(g.diags)
    release.set()
    assert returned.wait(5)
    del g.node.tracker.track
    g.publish_paced(3)
    time.sleep(0.4)
    assert in_flight not in {a.header.stamp.sec for a in g.arrays}
    assert (len(g.arrays), len(g.dets), len(debug)) == (n_arrays, n_dets, n_debug)
    assert wait_for(lambda: len(g.diags) >= n_diag + 3, 3)
    assert g.node.trigger_activate() == ok  # and out again on the next activate
    resumed = g.publish_paced(2)
    assert wait_for(lambda: {a.header.stamp.sec for a in g.arrays} >= set(resumed))


def test_background_spinner_stops_promptly_while_callbacks_keep_coming():
    """Stopping while a 1 ms timer keeps the executor busy, many times over: the thread always ends
    (``Executor.shutdown`` from outside a running ``spin`` could leave it in a busy loop)."""
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init()
    try:
        for _ in range(20):
            node = rclpy.create_node("spinner_probe")
            ticks: list[int] = []
            node.create_timer(0.001, lambda ticks=ticks: ticks.append(1))
            ex = SingleThreadedExecutor()
            ex.add_node(node)
            spinner = BackgroundSpinner(ex).start()
            assert wait_for(lambda ticks=ticks: len(ticks) > 3, 5)
            t0 = time.monotonic()
            spinner.stop()
            assert time.monotonic() - t0 < 1.0 and not spinner._thread.is_alive()
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
