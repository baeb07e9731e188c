"""Replay a bag into a real ROS 2 graph running the ckd_tracker node, and measure it.

Graph: a player publishes the bag's raw CDR image messages on their topics; the ``ckd_tracker``
node (remapped to those topics, initialised from the first ground-truth box or a given one)
tracks; a recorder collects ``~/detections``. The node runs in this process (one executor for the
whole graph), or with ``node_process=True`` in its own process, as deployed next to a camera driver.
Two pacing modes:

* ``realtime``: messages go out at the bag's stamps (× ``rate_scale``): the node drops what it
  cannot keep up with, as on a robot; the report counts processed vs dropped pairs;
* ``lockstep``: the next pair goes out once the previous one's detections arrived: every frame is
  processed, so the boxes equal an offline run of the same tracker on the same frames.

Frames without a published box (dropped, or the target reported lost) are scored as an empty box,
which the LasHeR protocol replaces by the previous row.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ckd_ros.benchmark import Timing
from ckd_ros.errors import ConfigError, InputError
from ckd_ros.eval.metrics import SequenceScore, score_lasher_sequence, summarise
from ckd_ros.ros.bags import DEFAULT_TOPICS, Topics, pairs_by_stamp, read_bag


@dataclass
class ReplayReport:
    frames: int
    processed: int
    dropped: int
    boxes: np.ndarray
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    metrics: dict | None = None
    score: SequenceScore | None = None

    def text(self) -> str:
        t = Timing(tuple(self.latencies_ms or [float("nan")]))
        lines = [
            f"frames {self.frames}, processed {self.processed}, dropped {self.dropped} "
            f"({self.processed / max(self.seconds, 1e-9):.1f} processed/s over {self.seconds:.1f} s)",
            f"latency publish → detection: p50 {t.pct(50):.1f} ms, p95 {t.pct(95):.1f} ms, p99 {t.pct(99):.1f} ms",
        ]
        if self.metrics is not None:
            m = self.metrics
            lines.append(
                f"accuracy vs ground truth (LasHeR protocol): PR@20 {100 * m['PR']:.1f}, NPR {100 * m['NPR']:.1f}, "
                f"SR {100 * m['SR']:.1f}"
            )
        else:
            lines.append("no ground-truth topic: latency and rate only")
        return "\n".join(lines)


def replay(
    bag: str | Path,
    checkpoint: str | None = None,
    topics: Topics = DEFAULT_TOPICS,
    mode: str = "realtime",
    rate_scale: float = 1.0,
    init_box: tuple[float, float, float, float] | None = None,
    params: dict | None = None,
    slop: float = 0.02,
    progress: bool = True,
    node_process: bool = False,
) -> ReplayReport:
    """Play a bag through the node (see the module doc); the init box defaults to the first GT box."""
    frames = read_bag(bag, topics)
    pairs = list(pairs_by_stamp(frames, int(slop * 1e9)))
    if not pairs:
        raise InputError(f"{bag}: no RGB/thermal pairs within {slop} s on {topics.rgb} and {topics.thermal}")
    if init_box is None:
        if pairs[0][0] not in frames.gt:
            raise InputError(f"{bag}: no ground truth at the first frame on {topics.gt}; give an init box")
        init_box = frames.gt[pairs[0][0]]
    return play_through_node(
        pairs,
        frames.gt or None,
        init_box,
        checkpoint,
        topics,
        mode,
        rate_scale,
        params,
        slop,
        progress,
        Path(bag).name,
        node_process,
    )


def play_through_node(
    pairs: list[tuple[int, object, object]],
    gt: dict[int, tuple] | None,
    init_box: tuple[float, float, float, float],
    checkpoint: str | None = None,
    topics: Topics = DEFAULT_TOPICS,
    mode: str = "realtime",
    rate_scale: float = 1.0,
    params: dict | None = None,
    slop: float = 0.02,
    progress: bool = True,
    name: str = "sequence",
    node_process: bool = False,
) -> ReplayReport:
    """Publish (stamp_ns, rgb, thermal) pairs — Image messages or their raw CDR bytes — into a graph
    with the ckd_tracker node and collect its detections (see the module doc). Image messages are
    stamped with the pair's stamp as they go out, so one message object may serve several pairs.
    With ``node_process`` the processed count is the detections received (every processed pair
    publishes one) and the rest count as dropped."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from tqdm import tqdm
    from vision_msgs.msg import Detection2DArray

    from ckd_ros.ros.node import CKDTrackerNode
    from ckd_ros.ros.spinning import BackgroundSpinner

    if mode not in ("realtime", "lockstep"):
        raise ConfigError(f"mode {mode!r} is not realtime or lockstep")
    if rate_scale <= 0:
        raise ConfigError("rate_scale must be positive")
    first = pairs[0][0]
    reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=100)
    overrides = {
        "init_box": [float(v) for v in init_box],
        "qos_reliability": "reliable",
        "qos_depth": 100,
        "debug_image": False,
        "slop": slop,
        **(params or {}),
    }
    if checkpoint:
        overrides["checkpoint"] = str(checkpoint)
    own_context = not rclpy.ok()
    if own_context:
        rclpy.init()
    proc = node = spinner = None
    try:
        if node_process:
            proc = _NodeProcess(overrides, topics, name)
            det_topic = "/ckd_tracker/detections"
        else:
            node = CKDTrackerNode(
                parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
                cli_args=["--ros-args", "-r", f"rgb/image:={topics.rgb}", "-r", f"thermal/image:={topics.thermal}"],
            )
            det_topic = node.resolve_topic_name("~/detections")
        player = rclpy.create_node("ckd_player")
        pub_rgb = player.create_publisher(Image, topics.rgb, reliable)
        pub_tir = player.create_publisher(Image, topics.thermal, reliable)
        results: dict[int, tuple[tuple[float, float, float, float] | None, float]] = {}
        cond = threading.Condition()

        def on_det(msg: Detection2DArray) -> None:
            s = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            box = None
            if msg.detections:
                b = msg.detections[0].bbox
                box = (b.center.position.x - b.size_x / 2, b.center.position.y - b.size_y / 2, b.size_x, b.size_y)
            with cond:
                results[s] = (box, time.monotonic())
                cond.notify_all()

        player.create_subscription(Detection2DArray, det_topic, on_det, reliable)
        ex = SingleThreadedExecutor()
        for n in (node, player):
            if n is not None:
                ex.add_node(n)
        spinner = BackgroundSpinner(ex).start()
        deadline = time.monotonic() + (120 if node_process else 30)  # a node process loads torch first
        while (pub_rgb.get_subscription_count() < 1 or pub_tir.get_subscription_count() < 1) and time.monotonic() < deadline:
            if proc is not None:
                proc.check_alive()
            time.sleep(0.01)
        sent: dict[int, float] = {}
        t_start = time.monotonic()
        for stamp, rgb, tir in tqdm(pairs, desc=name, unit="frame", disable=not progress):
            if mode == "realtime":
                due = t_start + (stamp - first) / 1e9 / rate_scale
                while (wait := due - time.monotonic()) > 0:
                    time.sleep(min(wait, 0.002))
            for msg in (rgb, tir):
                if isinstance(msg, Image):
                    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            sent[stamp] = time.monotonic()
            pub_rgb.publish(rgb)
            pub_tir.publish(tir)
            if mode == "lockstep":
                with cond:
                    if not cond.wait_for(lambda s=stamp: s in results, timeout=60):
                        raise RuntimeError(f"no detections for the frame stamped {stamp} within 60 s")
        with cond:  # let the last pair in flight finish
            cond.wait_for(lambda: pairs[-1][0] in results, timeout=5)
        time.sleep(0.1)
        seconds = time.monotonic() - t_start
        if node is not None:
            processed, dropped = node.frames, node.mailbox.dropped
        else:
            processed = sum(1 for s, _, _ in pairs if s in results)
            dropped = len(pairs) - processed
        spinner.stop()
        if node is not None:
            node.destroy_node()
        player.destroy_node()
    finally:
        if spinner is not None:
            spinner.stop()  # again after an error: its thread must not outlive the context
        if proc is not None:
            proc.stop()
        if own_context:
            rclpy.try_shutdown()
    boxes = np.array(
        [results[s][0] if s in results and results[s][0] is not None else (0.0, 0.0, 0.0, 0.0) for s, _, _ in pairs],
        dtype=np.float64,
    )
    latencies = [(results[s][1] - sent[s]) * 1000 for s, _, _ in pairs if s in results]
    report = ReplayReport(len(pairs), processed, dropped, boxes, latencies, seconds)
    if gt:  # frames without a GT message count as invalid-GT frames (LasHeR rules)
        gt_arr = np.array([gt.get(s, (0.0, 0.0, 0.0, 0.0)) for s, _, _ in pairs])
        report.score = score_lasher_sequence(name, boxes, gt_arr)
        report.metrics = summarise([report.score], "lasher")
    return report


class _NodeProcess:
    """The ckd_tracker node started as ``ckd-ros launch`` would, its output kept for error messages."""

    def __init__(self, overrides: dict, topics: Topics, name: str) -> None:
        import subprocess
        import tempfile

        from ckd_ros.ros.launcher import node_command
        from ckd_ros.ros.params import yaml_value

        cmd = node_command(None, topics.rgb, topics.thermal, [f"{k}:={yaml_value(v)}" for k, v in overrides.items()])
        self.log = tempfile.TemporaryFile(mode="w+", prefix=f"ckd_tracker_{name}_")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            self.log.seek(0)
            tail = " | ".join(self.log.read().strip().splitlines()[-5:])
            raise RuntimeError(f"the ckd_tracker node process exited with {self.proc.returncode}: {tail}")

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
