"""Replay a bag into a real ROS 2 graph running the ckd_tracker node, and measure it.

Graph: a player publishes the bag's raw CDR image messages on their topics; the ``ckd_tracker``
node (remapped to those topics, initialised from the first ground-truth box or a given one)
tracks; a recorder collects ``~/detections``. The node runs in this process (one executor for the
whole graph), or with ``node_process=True`` in its own process, as deployed next to a camera driver.
Two pacing modes:

* ``realtime``: messages go out at the bag's stamps (× ``rate_scale``): the node drops what it
  cannot keep up with, as on a robot; the report counts processed vs dropped pairs;
* ``lockstep``: the next pair goes out once the previous one's detections arrived, or once the
  node's ``/diagnostics`` count it as failed (a malformed pair is answered by nothing else): every
  frame is processed, so the boxes equal an offline run of the same tracker on the same frames.

Scoring (LasHeR rules): a frame answered without a box (target lost) takes the previous box, as
the toolkit does with an empty result row; a frame the node never answered (dropped by the
one-slot mailbox, malformed, failed) is a miss. A replay in which the node answered nothing, or
never started tracking (init rejected), has nothing to score and raises ``ReplayError``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ckd_ros.benchmark import Timing
from ckd_ros.errors import CKDError, ConfigError, InputError
from ckd_ros.eval.metrics import SequenceScore, score_lasher_sequence, summarise
from ckd_ros.ros.bags import DEFAULT_TOPICS, BagFrames, Topics, pairs_by_stamp, read_bag
from ckd_ros.ros.bbox import bbox_box
from ckd_ros.tracker.tracker import check_box

# /diagnostics counters of pairs the node took but answered with nothing (no Detection2DArray):
# malformed images, frames of another size, worker errors (incl. a CUDA fallback).
UNANSWERED_COUNTERS = ("malformed", "size_mismatch", "errors")
ANSWER_TIMEOUT = 60.0  # lockstep: seconds one pair may take before the node counts as stuck
DIAGNOSTICS_PERIOD = 0.1  # the replayed node's /diagnostics period: how soon a failed pair is seen
# Best-effort input: the player's writer matches the node's reader first and may publish ~0.1 s before
# the reader has matched it back; those frames are lost to discovery, not to the transport.
BEST_EFFORT_SETTLE = 1.0


class ReplayError(CKDError, RuntimeError):
    """The replay cannot produce a measurement (nothing answered, the node stuck or gone)."""


@dataclass
class ReplayReport:
    frames: int
    processed: int  # pairs answered with a Detection2DArray (with or without a box)
    dropped: int  # pairs the node's one-slot mailbox replaced by a newer one
    boxes: np.ndarray
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    metrics: dict | None = None
    score: SequenceScore | None = None
    failed: int = 0  # pairs the node took and rejected (malformed, wrong size, errors)
    failure: str = ""  # the node's last failure, as /diagnostics put it
    note: str = ""  # how the replay deviated from "every pair of the bag, init from its first GT box"

    @property
    def unanswered(self) -> int:
        return self.frames - self.processed

    def text(self) -> str:
        t = Timing(tuple(self.latencies_ms or [float("nan")]))
        lines = [self.note] if self.note else []
        failed = f", failed {self.failed} ({self.failure})" if self.failed else ""
        lines += [
            f"frames {self.frames}, processed {self.processed}, dropped {self.dropped}{failed} "
            f"({self.processed / max(self.seconds, 1e-9):.1f} processed/s over {self.seconds:.1f} s)",
            f"latency publish → detection: p50 {t.pct(50):.1f} ms, p95 {t.pct(95):.1f} ms, p99 {t.pct(99):.1f} ms",
        ]
        if self.metrics is not None:
            m = self.metrics
            misses = f"; {self.unanswered} frames without an answer scored as misses" if self.unanswered else ""
            lines.append(
                f"accuracy vs ground truth (LasHeR protocol{misses}): PR@20 {100 * m['PR']:.1f}, "
                f"NPR {100 * m['NPR']:.1f}, SR {100 * m['SR']:.1f}"
            )
        else:
            lines.append("no ground-truth topic: latency and rate only")
        return "\n".join(lines)


def _start_from_ground_truth(
    bag: str | Path, frames: BagFrames, pairs: list, topics: Topics
) -> tuple[int, tuple[float, float, float, float], str]:
    """(index of the first pair with a valid GT box, that box, a note when it is not the first pair).

    A NaN, empty or off-image first box (an annotator's "target absent") cannot start a tracker;
    the replay starts at the first usable box and says so, rather than tracking from nothing.
    """
    first_problem = ""
    for k, (stamp, _, _) in enumerate(pairs):
        box = frames.gt.get(stamp)
        if box is None:
            first_problem = first_problem or "no ground-truth box at the first frame"
            continue
        size = frames.rgb_sizes.get(stamp)
        if size is None:
            first_problem = first_problem or "the first RGB frame is not a readable image"
            continue
        try:
            check_box(box, size)
        except InputError as exc:
            first_problem = first_problem or f"the first frame's ground-truth {exc}"
            continue
        note = f"note: {first_problem}; replaying from frame {k} of {len(pairs)}, the first with a valid box" if k else ""
        return k, box, note
    what = "no valid ground-truth box" if frames.gt else "no ground truth"
    raise InputError(f"{bag}: {what} on {topics.gt} ({first_problem}); give an init box")


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
    """Play a bag through the node (see the module doc). The init box defaults to the first valid GT
    box (the replay then starts at its frame); a given one is checked against the first frame's
    size before anything starts."""
    frames = read_bag(bag, topics)
    transports = frames.transports
    bases = []
    for topic, transport in zip(frames.topics, transports):
        if transport == "compressed" and not topic.endswith("/compressed"):
            raise InputError(f"{bag}: compressed frames on {topic}; the node reads them from a topic named <base>/compressed")
        bases.append(topic.removesuffix("/compressed") if transport == "compressed" else topic)
    topics = replace(topics, rgb=bases[0], thermal=bases[1])
    pairs = list(pairs_by_stamp(frames, int(slop * 1e9)))
    if not pairs:
        raise InputError(f"{bag}: no RGB/thermal pairs within {slop} s on {topics.rgb} and {topics.thermal}")
    note = ""
    if init_box is None:
        start, init_box, note = _start_from_ground_truth(bag, frames, pairs, topics)
        pairs = pairs[start:]
    else:
        start = next((k for k, (stamp, _, _) in enumerate(pairs) if frames.rgb_sizes.get(stamp)), None)
        if start is None:
            raise InputError(f"{bag}: no RGB frame on {topics.rgb} is a readable image")
        if start:
            note = f"note: the first {start} RGB frame(s) are not readable images; replaying from frame {start} of {len(pairs)}"
        try:
            init_box = check_box(init_box, frames.rgb_sizes[pairs[start][0]])
        except InputError as exc:
            raise InputError(f"{bag}: init {exc}") from None
        pairs = pairs[start:]
    report = play_through_node(
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
        transports,
    )
    report.note = note
    return report


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
    transports: tuple[str, str] = ("raw", "raw"),
) -> ReplayReport:
    """Publish (stamp_ns, rgb, thermal) pairs — Image messages or their raw CDR bytes — into a graph
    with the ckd_tracker node and collect its detections (see the module doc). Image messages are
    stamped with the pair's stamp as they go out, so one message object may serve several pairs.
    ``transports``: per stream, raw ``Image`` on the topic, or ``CompressedImage`` on
    ``<topic>/compressed`` (the node is told to subscribe there).
    Processed counts the pairs answered; dropped and failed come from the node's /diagnostics, in
    this process or in its own alike."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from tqdm import tqdm
    from vision_msgs.msg import Detection2DArray

    from ckd_ros.ros.node import CKDTrackerNode
    from ckd_ros.ros.spinning import BackgroundSpinner

    if mode not in ("realtime", "lockstep"):
        raise ConfigError(f"mode {mode!r} is not realtime or lockstep")
    if not rate_scale > 0:
        raise ConfigError(f"rate_scale must be positive, got {rate_scale}")
    first = pairs[0][0]
    reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=100)
    overrides = {
        "init_box": [float(v) for v in init_box],
        "qos_reliability": "reliable",
        "qos_depth": 100,
        "debug_image": False,
        "slop": slop,
        "diagnostics_period": DIAGNOSTICS_PERIOD,
        "rgb_transport": transports[0],
        "thermal_transport": transports[1],
        **(params or {}),
    }
    if checkpoint:
        overrides["checkpoint"] = str(checkpoint)
    own_context = not rclpy.ok()
    if own_context:
        rclpy.init()
    proc = node = spinner = None
    results: dict[int, tuple[tuple[float, float, float, float] | None, float]] = {}
    diag = _NodeCounters()
    cond = threading.Condition()
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
        # the player publishes with the node's input QoS, as a camera driver would (params may ask for
        # best effort, the camera default, to measure what the transport loses)
        best_effort = overrides["qos_reliability"] != "reliable"
        input_qos = QoSProfile(
            reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
            history=HistoryPolicy.KEEP_LAST,
            depth=int(overrides["qos_depth"]),
        )
        pub_rgb, pub_tir = (
            player.create_publisher(CompressedImage, topic + "/compressed", input_qos)
            if transport == "compressed"
            else player.create_publisher(Image, topic, input_qos)
            for topic, transport in zip((topics.rgb, topics.thermal), transports)
        )

        def on_det(msg: Detection2DArray) -> None:
            s = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            box = bbox_box(msg.detections[0].bbox) if msg.detections else None
            with cond:
                results[s] = (box, time.monotonic())
                cond.notify_all()

        def on_diag(msg: DiagnosticArray) -> None:
            with cond:
                if diag.update(msg):
                    cond.notify_all()

        player.create_subscription(Detection2DArray, det_topic, on_det, reliable)
        player.create_subscription(DiagnosticArray, "/diagnostics", on_diag, reliable)
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
        if best_effort:
            time.sleep(BEST_EFFORT_SETTLE)
        sent: dict[int, float] = {}
        t_start = time.monotonic()
        for k, (stamp, rgb, tir) in enumerate(tqdm(pairs, desc=name, unit="frame", disable=not progress)):
            if mode == "realtime":
                due = t_start + (stamp - first) / 1e9 / rate_scale
                while (wait := due - time.monotonic()) > 0:
                    time.sleep(min(wait, 0.002))
            for msg in (rgb, tir):
                if isinstance(msg, (Image, CompressedImage)):
                    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            with cond:
                failed_before = diag.failed
            sent[stamp] = time.monotonic()
            pub_rgb.publish(rgb)
            pub_tir.publish(tir)
            if mode == "lockstep":
                _await(
                    cond,
                    lambda s=stamp, f=failed_before: s in results or diag.failed > f,
                    ANSWER_TIMEOUT,
                    proc,
                    f"{name}: the ckd_tracker node neither answered nor rejected pair {k} (stamp {stamp}) "
                    f"within {ANSWER_TIMEOUT:.0f} s",
                )
        with cond:  # until every pair is answered, dropped or failed (or 5 s: a pair lost in transit)
            cond.wait_for(lambda: sum(s in results for s, _, _ in pairs) + diag.failed + diag.dropped >= len(pairs), timeout=5)
        time.sleep(0.1)
        seconds = time.monotonic() - t_start
        time.sleep(2 * DIAGNOSTICS_PERIOD)  # a /diagnostics message with the last pairs' counters
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
    return _report(pairs, gt, results, sent, diag, seconds, name)


def _await(cond: threading.Condition, done, timeout: float, proc: _NodeProcess | None, message: str) -> None:
    """Wait on ``cond`` until ``done()``; a node process that exits, or ``timeout``, is a ReplayError."""
    deadline = time.monotonic() + timeout
    with cond:
        while not cond.wait_for(done, timeout=min(0.5, max(0.0, deadline - time.monotonic()))):
            if proc is not None:
                proc.check_alive()
            if time.monotonic() >= deadline:
                raise ReplayError(message)


class _NodeCounters:
    """The node's cumulative /diagnostics counters, as last published."""

    def __init__(self) -> None:
        self.failed = self.dropped = 0
        self.seen = False
        self.failure = ""

    def update(self, msg) -> bool:
        """Take the ckd_tracker status of ``msg``; True if a counter moved."""
        for status in msg.status:
            if not status.name.startswith("ckd_tracker"):
                continue
            values = {kv.key: kv.value for kv in status.values}
            failed = sum(int(values.get(k, "0") or 0) for k in UNANSWERED_COUNTERS)
            dropped = int(values.get("dropped_pairs", "0") or 0)
            moved = (failed, dropped) != (self.failed, self.dropped)
            self.failed, self.dropped, self.seen = failed, dropped, True
            self.failure = values.get("last_failure", "") or self.failure
            return moved
        return False


def _report(
    pairs: list, gt: dict | None, results: dict, sent: dict, diag: _NodeCounters, seconds: float, name: str
) -> ReplayReport:
    """The measurement, or a ReplayError when there is nothing to measure: no pair answered, or no
    box ever published (the node never started tracking; its first answer is the init box)."""
    answered = [s for s, _, _ in pairs if s in results]
    if not answered:
        reason = f" ({diag.failure})" if diag.failure else ""
        raise ReplayError(
            f"{name}: the ckd_tracker node answered none of the {len(pairs)} pairs: {diag.failed} failed{reason}, "
            f"{diag.dropped} dropped; nothing to score"
        )
    if all(results[s][0] is None for s in answered):
        reason = diag.failure or "no init box reached it"
        raise ReplayError(
            f"{name}: the ckd_tracker node published no box in {len(answered)} answers, it never started "
            f"tracking ({reason}); nothing to score"
        )
    boxes = np.array([results[s][0] if s in results and results[s][0] is not None else (0.0, 0.0, 0.0, 0.0) for s, _, _ in pairs])
    latencies = [(results[s][1] - sent[s]) * 1000 for s in answered]
    processed = len(answered)
    dropped = diag.dropped if diag.seen else len(pairs) - processed
    report = ReplayReport(len(pairs), processed, dropped, boxes, latencies, seconds, failed=diag.failed, failure=diag.failure)
    if gt:  # frames without a GT message count as invalid-GT frames (LasHeR rules)
        gt_arr = np.array([gt.get(s, (0.0, 0.0, 0.0, 0.0)) for s, _, _ in pairs])
        missing = np.array([s not in results for s, _, _ in pairs])
        report.score = score_lasher_sequence(name, boxes, gt_arr, missing)
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
            raise ReplayError(f"the ckd_tracker node process exited with {self.proc.returncode}: {tail}")

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
