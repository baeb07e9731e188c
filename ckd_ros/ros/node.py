"""``ckd_tracker``: synchronized RGB + thermal images in, vision_msgs detections and a debug image out.

Topics (relative names, remappable):

* in: ``rgb/image``, ``thermal/image`` (sensor_msgs/Image, QoS from parameters, sensor data by
  default); ``~/init`` (vision_msgs/Detection2D: its bbox, applied to the first pair whose RGB
  stamp is at or after its header stamp); ``~/init_point`` (geometry_msgs/PointStamped, e.g. a
  click in rqt_image_view on the RGB or debug image: a box of ``init_point_box_size`` around it);
* out: ``~/detections`` (Detection2DArray: one detection while tracking, **empty while idle or
  lost**), ``~/detection`` (Detection2D, only while tracking), ``~/debug_image``, ``/diagnostics``;
  detections and diagnostics are RELIABLE so default-QoS subscribers receive them;
* service: ``~/reset`` (std_srvs/Trigger) stops tracking.

Threads: the executor thread only pairs messages and drops the newest pair into a one-slot
mailbox; a worker thread owns the model, preprocesses, tracks and publishes.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import time
from typing import Any, NamedTuple

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2D, Detection2DArray

from ckd_ros.engine import EngineConfig, TrackingEngine
from ckd_ros.errors import CKDError, InputError
from ckd_ros.preprocess import AGCConfig, FramePreprocessor, PreprocessConfig
from ckd_ros.ros.bbox import centered_box
from ckd_ros.ros.conversions import bbox_to_box, detection, detection_array, image_msg, raw_image, stamp_seconds
from ckd_ros.ros.health import ERROR, OK, WARN, Health
from ckd_ros.ros.loss import StreamLoss
from ckd_ros.ros.params import BY_NAME, declare_all
from ckd_ros.ros.sync import PairSync
from ckd_ros.ros.transport import check_transport_environment
from ckd_ros.ros.worker import LatencyStats, Mailbox, RateMeter, Worker
from ckd_ros.tracker import CKDTracker, TrackResult
from ckd_ros.viz import annotate_pair

RELIABLE = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
RUNTIME_TRACKER = ("score_threshold", "lost_frames")
STREAMS = ("rgb", "thermal")


class InitRequest(NamedTuple):
    box: tuple[float, ...]
    stamp: float | None  # apply to the first pair stamped at or after this (None: the next pair)
    source: str


RUNTIME_PREPROCESS = (
    "thermal_agc",
    "agc_low_percentile",
    "agc_high_percentile",
    "agc_ema",
    "agc_fixed_min",
    "agc_fixed_max",
    "alignment",
    "homography",
)


def preprocess_config(p: dict[str, Any]) -> PreprocessConfig:
    agc = AGCConfig(
        mode=p["thermal_agc"],
        low_percentile=p["agc_low_percentile"],
        high_percentile=p["agc_high_percentile"],
        ema=p["agc_ema"],
        fixed_min=p["agc_fixed_min"],
        fixed_max=p["agc_fixed_max"],
    )
    return PreprocessConfig(agc=agc, align=p["alignment"], homography=list(p["homography"]))


class TrackerNodeMixin:
    """The ckd_tracker behaviour, shared by the plain node and the lifecycle node.

    ``_declare`` declares the parameters (construction); ``_setup`` loads the model and creates the
    topics, service, timer and worker (construction, or lifecycle *configure*); ``_teardown``
    undoes it (destruction, or *cleanup*). Pairs are processed only while ``active``.

    Each ``_setup`` starts a new *session* (a number the worker is given); ``_teardown`` ends it.
    A worker that outlives its session (its join timed out while an inference was blocked) drops
    whatever it finishes: it never publishes into, or takes the init of, a later session.
    """

    worker_join_timeout = 5.0  # seconds teardown waits for the worker's frame in flight

    def _declare(self) -> None:
        """Declare and validate every parameter. A bad start-up value (wrong type, length, range,
        choice, or AGC limits / homography that do not fit together) raises ConfigError here, so
        both the plain and the lifecycle node refuse it at construction, before any model loads,
        and ``main`` prints it as one line."""
        self.p = declare_all(self)
        FramePreprocessor(preprocess_config(self.p))  # the cross-parameter rules, checked now rather than at configure
        self.log = self.get_logger()
        self.active = False
        self.configured = False
        self._session = 0  # bumped by every _setup and _teardown
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _setup(self) -> None:
        self.preprocess = FramePreprocessor(preprocess_config(self.p))
        health = self.health = Health()  # the engine reports to this session's health, never a later one's
        self.engine = TrackingEngine(
            EngineConfig.from_mapping(self.p),
            log=self.log.info,
            warn=self.log.warning,
            on_fallback=lambda reason: health.record("cuda_fallback", reason),
        )
        self.state = "idle"
        self.track_id = 0
        self.frames = 0
        # Held only to swap the requests below, never across a frame: init, reset and parameter
        # changes never wait for inference. A reset bumps the generation; the worker resets the
        # tracker before its next frame and discards the answer of a frame that ran across it.
        self._ctl = threading.Lock()
        self._pending_init: InitRequest | None = None
        self._generation = 0
        self._tracker_generation = 0
        self._last_size: tuple[int, int] | None = None
        self._last_debug = 0.0
        self.rates = {k: RateMeter() for k in ("rgb", "thermal", "pair", "processed")}
        self.latency = LatencyStats()
        self._outputs: list = []
        self.det_array_pub = self._output_publisher(Detection2DArray, "~/detections", RELIABLE)
        self.det_pub = self._output_publisher(Detection2D, "~/detection", RELIABLE)
        self.debug_pub = self._output_publisher(Image, "~/debug_image", QoSProfile(depth=2))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)  # in every state
        reliability = ReliabilityPolicy.RELIABLE if self.p["qos_reliability"] == "reliable" else ReliabilityPolicy.BEST_EFFORT
        self.input_qos = QoSProfile(reliability=reliability, history=HistoryPolicy.KEEP_LAST, depth=self.p["qos_depth"])
        self.loss = {k: StreamLoss(pause=self.p["no_pair_warn_seconds"]) for k in STREAMS}
        topics, types = self._input_topics()
        self.sync = PairSync(
            self,
            *topics,
            self.input_qos,
            self.p["slop"],
            self.p["queue_size"],
            self._on_pair,
            on_message=self._on_message,
            msg_types=types,
        )
        self._entities = [
            self.create_subscription(Detection2D, "~/init", self._on_init_detection, RELIABLE),
            self.create_subscription(PointStamped, "~/init_point", self._on_init_point, RELIABLE),
            self.create_service(Trigger, "~/reset", self._on_reset),
            self.create_timer(self.p["diagnostics_period"], self._publish_diagnostics),
        ]
        self.mailbox = Mailbox()
        self._session += 1
        session = self._session
        self.worker = Worker(
            self.mailbox,
            functools.partial(self._process, session=session),
            functools.partial(self._on_worker_error, session=session),
        )
        self.worker.start()
        self.started = time.monotonic()
        if self.p["init_box"][2] > 0:
            self._request_init(tuple(self.p["init_box"]), None, "parameter")
        self.topics_text = f"{topics[0]} + {topics[1]} (QoS {self.p['qos_reliability']}, depth {self.p['qos_depth']})"
        self.configured = True
        cfg = self.tracker.config
        self.log.info(
            f"ckd_tracker configured: {self.engine.describe()}; "
            f"inputs {self.topics_text}; pairing by stamp (slop {self.p['slop']} s, {self.sync.backend})"
        )
        if self.p["precision"] == "auto" and cfg.precision != "fp32":
            self.log.info(
                f"precision {cfg.precision} chosen as the fastest here; boxes follow fp32 within the documented "
                "tolerance (README, Speed); precision:=fp32 gives the reference outputs"
            )

    def _teardown(self) -> None:
        if not self.configured:
            return
        self.active = self.configured = False
        with self._ctl:  # from here the worker's frame in flight, if any, is stale: it publishes nothing
            self._session += 1
        self.worker.stop(self.worker_join_timeout)
        if self.worker.is_alive():
            self.log.warning(
                f"the worker did not stop within {self.worker_join_timeout:.1f} s (a frame still in inference); "
                "it is left to finish on its own, and what it finishes is dropped, never published; its model "
                "stays in memory (GPU memory included) until then"
            )
        self.sync.destroy(self)
        for entity in self._entities:
            destroy = {Trigger: self.destroy_service}.get(getattr(entity, "srv_type", None))
            if destroy is not None:
                destroy(entity)
            elif hasattr(entity, "timer_period_ns"):
                self.destroy_timer(entity)
            else:
                self.destroy_subscription(entity)
        destroy = self.destroy_lifecycle_publisher if isinstance(self, LifecycleNode) else self.destroy_publisher
        for pub in self._outputs:
            destroy(pub)
        self.destroy_publisher(self.diag_pub)
        del self.engine  # frees the model (and GPU memory) until the next configure

    def _output_publisher(self, msg_type: type, topic: str, qos: QoSProfile):
        """A publisher of an output topic (detections, debug image). On the lifecycle node it is a
        lifecycle publisher, enabled and disabled with the node (rclpy's LifecycleNode passes
        activate / deactivate to it), so nothing goes out while inactive, not even a frame that
        was in inference at deactivate; on the plain node a plain one. Diagnostics are not an
        output: they flow in every state. ``_teardown`` destroys every publisher made here."""
        create = self.create_lifecycle_publisher if isinstance(self, LifecycleNode) else self.create_publisher
        pub = create(msg_type, topic, qos)
        self._outputs.append(pub)
        return pub

    # -- model ---------------------------------------------------------------------------------
    @property
    def tracker(self) -> CKDTracker:
        """The engine's current tracker (a CUDA fallback replaces it)."""
        return self.engine.tracker

    @tracker.setter
    def tracker(self, tracker: CKDTracker) -> None:
        self.engine.tracker = tracker

    # -- inputs --------------------------------------------------------------------------------
    def _input_topics(self) -> tuple[tuple[str, str], tuple[type, type]]:
        """The two subscriptions: ``rgb/image`` and ``thermal/image`` after remapping, with
        ``/compressed`` appended for a compressed stream, as image_transport resolves a base topic
        and then adds the transport's suffix (so a remap of the base topic covers both)."""
        topics, types = [], []
        for stream in STREAMS:
            base = self.resolve_topic_name(f"{stream}/image")
            compressed = self.p[f"{stream}_transport"] == "compressed"
            topics.append(base + "/compressed" if compressed else base)
            types.append(CompressedImage if compressed else Image)
        return (topics[0], topics[1]), (types[0], types[1])

    def _on_message(self, stream: int, msg: Image | CompressedImage) -> None:
        """Every arriving message (executor thread): its rate, and the source frames that never
        arrived, from the gaps in its header stamps. Nothing here touches the image data."""
        name = STREAMS[stream]
        self.rates[name].tick()
        self.loss[name].add(stamp_seconds(msg.header.stamp))

    def _on_pair(self, rgb: Image, thermal: Image) -> None:
        self.rates["pair"].tick()  # an inactive lifecycle node still sees its inputs (no silence WARN)
        if not self.active:
            return
        self.mailbox.put((rgb, thermal, time.monotonic()))

    def _request_init(self, box: tuple[float, ...], stamp: float | None, source: str) -> None:
        with self._ctl:
            self._pending_init = InitRequest(tuple(float(v) for v in box), stamp, source)
        self.log.info(f"target init requested from {source}: {tuple(round(float(v), 1) for v in box)}")

    def _on_init_detection(self, msg: Detection2D) -> None:
        stamp = stamp_seconds(msg.header.stamp)
        self._request_init(bbox_to_box(msg.bbox), stamp if stamp > 0 else None, "~/init")

    def _on_init_point(self, msg: PointStamped) -> None:
        x, y = msg.point.x, msg.point.y
        if self._last_size is not None and self.p["debug_layout"] == "side_by_side" and x >= self._last_size[1]:
            x -= self._last_size[1]  # a click on the thermal half of the debug image
        w, h = self.p["init_point_box_size"]
        stamp = stamp_seconds(msg.header.stamp)
        self._request_init(centered_box(x, y, w, h), stamp if stamp > 0 else None, "~/init_point")

    def _on_reset(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        with self._ctl:
            self._pending_init = None
            self._generation += 1
            self.state = "idle"
        resp.success, resp.message = True, "tracking stopped; waiting for ~/init, ~/init_point or init_box"
        self.log.info("reset: tracking stopped")
        return resp

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        new = dict(self.p)
        for prm in params:
            spec = BY_NAME.get(prm.name)
            if spec is None:
                continue
            try:  # the same conversion as at start-up: `ros2 param set /ckd_tracker score_threshold 1` is 1.0
                new[prm.name] = spec.coerce(prm.value)
            except CKDError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        try:
            pre = FramePreprocessor(preprocess_config(new))
        except CKDError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if not self.configured:  # a lifecycle node before configure: values are used at configure
            self.p = new
            return SetParametersResult(successful=True)
        if new["init_box"][2] > 0 and any(prm.name == "init_box" for prm in params):  # the same box again re-acquires
            box = new["init_box"]
            if box[3] <= 0:
                return SetParametersResult(successful=False, reason=f"init_box {box} has zero or negative height")
            self._request_init(tuple(box), None, "parameter")
        if any(new[k] != self.p[k] for k in RUNTIME_PREPROCESS):
            self.preprocess = pre
        for k in RUNTIME_TRACKER:
            setattr(self.tracker.config, k, new[k])
        self.p = new
        return SetParametersResult(successful=True)

    # -- worker --------------------------------------------------------------------------------
    def _on_worker_error(self, exc: BaseException, session: int) -> None:
        if session != self._session:
            self.log.info(f"a frame of an ended session failed after its cleanup ({type(exc).__name__}: {exc}); ignored")
            return
        self.health.record("error", f"{type(exc).__name__}: {exc}")
        self.log.error(f"frame failed ({type(exc).__name__}: {exc})", throttle_duration_sec=5.0)

    def _fail(self, outcome: str, message: str, session: int) -> None:
        if session != self._session:  # an ended session's frame: not this session's health
            return
        self.health.record(outcome, message)
        self.log.warning(message, throttle_duration_sec=5.0)

    def _take_init(self, stamp: float) -> InitRequest | None:
        """The pending init if this pair (stamped ``stamp``) should take it. An init waits for the
        first pair stamped at or after its own stamp, unless its stamp is more than
        ``init_max_wait`` ahead of the cameras': then the clocks differ (wall time vs sim time, a
        skewed host) and waiting would leave it pending forever. Stamp time, not wall time, so a
        slowed-down bag replay still inits on the frame the click named. Called under ``_ctl``."""
        req = self._pending_init
        if req is None:
            return None
        max_wait, slop = self.p["init_max_wait"], self.p["slop"]
        if req.stamp is not None and stamp < req.stamp - slop:
            ahead = req.stamp - stamp
            if ahead <= max_wait:
                return None  # the frame it names has not arrived yet
            self.log.warning(
                f"init from {req.source} is stamped {req.stamp:.3f} s, {ahead:.3f} s ahead of the camera stamp {stamp:.3f} s "
                "(clocks differ? use_sim_time); applied to this pair"
            )
        elif req.stamp is not None and stamp - req.stamp > max_wait:
            self.log.warning(
                f"init from {req.source} is stamped {req.stamp:.3f} s, {stamp - req.stamp:.3f} s before the camera stamp "
                f"{stamp:.3f} s (clocks differ? use_sim_time); applied to this pair, the newest"
            )
        self._pending_init = None
        return req

    def _initialize(self, engine: TrackingEngine, rgb, tir, req: InitRequest, session: int) -> TrackResult | None:
        try:
            result = engine.initialize(rgb, tir, req.box)  # published: the first output is the init box
        except CKDError as exc:
            self._fail("init_rejected", f"init from {req.source} rejected: {exc}", session)
            return None
        with self._ctl:
            if self._stale(session):  # cleaned up while the init ran: the new session's target ids stay
                return None
            self.track_id += 1
            track_id = self.track_id
        self.log.info(f"tracking target #{track_id} from {req.source}")
        return result

    def _track(self, engine: TrackingEngine, rgb, tir, session: int) -> TrackResult | None:
        """One tracked frame; None when the frame was skipped (frames of another size)."""
        try:
            result = engine.track(rgb, tir)  # a CUDA failure moves the engine to the CPU inside
        except InputError as exc:  # frames no longer of the size the target was initialised on
            self._fail("size_mismatch", f"pair skipped: {exc}", session)
            return None
        if not result.valid:
            msg = f"the network's output is not finite (score {result.score}); target reported lost"
            self._fail("nonfinite", msg, session)
        return result

    def _stale(self, session: int) -> bool:
        """Whether the worker's ``session`` has ended (called under ``_ctl``): its frame is dropped."""
        if session == self._session:
            return False
        self.log.info(f"dropped a frame finished after its session ended (session {session}, now {self._session})")
        return True

    def _process(self, item: tuple[Image, Image, float], session: int) -> None:
        rgb_msg, thermal_msg, arrived = item
        if session != self._session:
            return
        self.health.started()
        try:
            rgb, tir = self.preprocess(raw_image(rgb_msg), raw_image(thermal_msg))
        except CKDError as exc:
            self._fail("malformed", f"malformed image pair skipped: {exc}", session)
            return
        self._last_size = rgb.shape[:2]
        with self._ctl:
            if self._stale(session):  # never take a later session's init
                return
            engine = self.engine  # this session's, even if a cleanup and configure happen during the frame
            generation = self._generation
            init = self._take_init(stamp_seconds(rgb_msg.header.stamp))
        if generation != self._tracker_generation:  # a reset since the last frame
            engine.reset()
            self._tracker_generation = generation
        result = self._initialize(engine, rgb, tir, init, session) if init is not None else None
        if result is None and engine.initialized:  # no init, or a rejected one: the old target goes on
            result = self._track(engine, rgb, tir, session)
            if result is None:
                return
        with self._ctl:
            if self._stale(session):  # cleaned up while this frame ran (a join that timed out)
                return
            if generation != self._generation:
                self.health.record("ok")
                return  # reset while this frame ran: its answer is stale
            if result is not None:
                self.state = "lost" if result.lost else "tracking"
            header = rgb_msg.header
            dets = []
            if result is not None and not result.lost:
                det = detection(header, result.box, result.score, self.p["class_id"], str(self.track_id))
                dets.append(det)
                self.det_pub.publish(det)
            self.det_array_pub.publish(detection_array(header, dets))
        self.frames += 1
        self.rates["processed"].tick()
        if result is None or result.valid:
            self.health.record("ok")
        self.latency.add((time.monotonic() - arrived) * 1000.0)
        self._maybe_debug(rgb_msg, rgb, tir, result, session)

    def _maybe_debug(self, rgb_msg: Image, rgb, tir, result, session: int) -> None:
        if not self.p["debug_image"] or self.debug_pub.get_subscription_count() == 0:
            return
        now = time.monotonic()
        if now - self._last_debug < 1.0 / self.p["debug_rate"]:
            return
        self._last_debug = now
        box = result.box if result is not None else None
        caption = f"{self.state}  score {result.score:.2f}" if result is not None else self.state
        caption += f"  {self.rates['processed'].rate():.1f} FPS"
        img = annotate_pair(rgb, tir, box, caption, lost=self.state == "lost", layout=self.p["debug_layout"])
        msg = image_msg(img, "rgb8", rgb_msg.header)
        with self._ctl:  # drawn outside the lock; published only if the session has not ended meanwhile
            if not self._stale(session):
                self.debug_pub.publish(msg)

    # -- diagnostics ---------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        """The worst of: input silence (WARN), the health of the frames (WARN/ERROR), a lost target
        (WARN); OK only when pairs arrive and are answered."""
        now = time.monotonic()
        last_pair = self.rates["pair"].last
        silent = now - (last_pair if last_pair is not None else self.started)
        problems: list[tuple[int, str]] = []
        if silent > self.p["no_pair_warn_seconds"]:
            text = f"no synchronized RGB/thermal pair for {silent:.1f} s on {self.topics_text}"
            problems.append((WARN, text))
            self.log.warning(
                text + f"; rgb {self.rates['rgb'].rate():.1f} Hz, thermal {self.rates['thermal'].rate():.1f} Hz",
                throttle_duration_sec=10.0,
            )
        for name, loss in self.loss.items():
            fraction = loss.recent_loss()
            if fraction > self.p["input_loss_warn"]:
                problems.append(
                    (
                        WARN,
                        f"{fraction:.0%} of the {name} camera's frames never arrived (gaps in their stamps): "
                        "see README 'Large images over DDS'",
                    )
                )
        health = self.health.status(last_pair, now)
        if health.level != OK:
            problems.append((health.level, health.message))
            if health.level == ERROR:
                self.log.error(health.message, throttle_duration_sec=10.0)
        if self.active and self.state == "lost":
            problems.append((WARN, "target lost"))
        status = DiagnosticStatus(name="ckd_tracker: tracker", hardware_id=str(self.tracker.device))
        if problems:
            status.level = bytes([max(level for level, _ in problems)])
            status.message = "; ".join(text for _, text in sorted(problems, key=lambda p: -p[0]))
        else:
            status.level, status.message = DiagnosticStatus.OK, self.state if self.active else "inactive (lifecycle)"
        totals = self.health.totals
        values = {
            "state": self.state,
            "device": str(self.tracker.device),
            "precision": self.tracker.config.precision,
            "model": self.tracker.model.cfg.name,
            "sync_backend": self.sync.backend,
            "cuda_graphs": self.tracker.cuda_graphs_status,
            "rgb_hz": f"{self.rates['rgb'].rate(now):.2f}",
            "thermal_hz": f"{self.rates['thermal'].rate(now):.2f}",
            "pair_hz": f"{self.rates['pair'].rate(now):.2f}",
            "processed_hz": f"{self.rates['processed'].rate(now):.2f}",
            "pairs_total": str(self.sync.pairs),
            "processed_total": str(self.frames),
            "dropped_pairs": str(self.mailbox.dropped),
            "unpaired_dropped": str(self.sync.unpaired_dropped),
            "malformed": str(totals["malformed"]),
            "size_mismatch": str(totals["size_mismatch"]),
            "init_rejected": str(totals["init_rejected"]),
            "nonfinite_outputs": str(totals["nonfinite"]),
            "errors": str(totals["error"] + totals["cuda_fallback"]),
            "failed_total": str(self.health.failures()),
            "last_failure": self.health.last_failure,
            "latency_p50_ms": f"{self.latency.pct(50):.2f}",
            "latency_p95_ms": f"{self.latency.pct(95):.2f}",
            "seconds_since_pair": f"{silent:.2f}",
            **{f"{name}_loss": f"{loss.recent_loss():.3f}" for name, loss in self.loss.items()},
            **{f"{name}_lost_total": str(loss.lost) for name, loss in self.loss.items()},
            **{f"{name}_period_ms": f"{(loss.period or 0.0) * 1000:.1f}" for name, loss in self.loss.items()},
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)


class CKDTrackerNode(TrackerNodeMixin, Node):
    """The plain node: configured and active from construction."""

    def __init__(self, **kwargs: Any) -> None:
        Node.__init__(self, "ckd_tracker", **kwargs)
        self._declare()
        self._setup()
        self.active = True

    def destroy_node(self) -> None:
        self._teardown()
        super().destroy_node()


class CKDTrackerLifecycleNode(TrackerNodeMixin, LifecycleNode):
    """The managed node: *configure* loads the model and creates the topics, *activate* starts
    processing and publishing, *deactivate* pauses (the target is kept), *cleanup* frees the model."""

    def __init__(self, **kwargs: Any) -> None:
        LifecycleNode.__init__(self, "ckd_tracker", **kwargs)
        self._declare()
        self.log.info("ckd_tracker (lifecycle) unconfigured: configure loads the model, activate starts tracking")

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._setup()
        except CKDError as exc:
            self.log.error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # CUDA out of memory while loading, an OSError: say what, not just "failed"
            self.log.error(f"configure failed: {type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers (rclpy's managed entities)
        self.active = result == TransitionCallbackReturn.SUCCESS
        return result

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.active = False  # no new pairs; the disabled publishers drop a frame still in inference
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._teardown()
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._teardown()
        return super().on_shutdown(state)

    def destroy_node(self) -> None:
        """Ctrl-C runs no shutdown transition: stop the worker here, before the handles go."""
        self._teardown()
        super().destroy_node()


def main(args: list[str] | None = None, node_class: type = CKDTrackerNode) -> int:
    problem = check_transport_environment()  # before rclpy.init: Fast DDS reads the profile then, and ignores a bad one
    if problem:
        print(f"ckd_tracker: error: {problem}", file=sys.stderr)
        return 2
    try:
        rclpy.init(args=sys.argv if args is None else args)
    except RuntimeError as exc:  # rcl refused the --ros-args (e.g. a list mixing 50 and 39.5)
        detail = re.split(r", at /", str(exc).strip(), maxsplit=1)[0].removeprefix("failed to initialize rcl: ")
        hint = " (a list's numbers must all be written alike: [50.0, 39.5, 40.0, 30.0])" if "same type" in detail else ""
        print(f"ckd_tracker: error: the ROS arguments were refused: {detail}{hint}", file=sys.stderr)
        return 2
    node = None
    # The executor exists before the node: a Ctrl-C that lands while rclpy.spin would be building
    # one leaves a half-made executor whose __del__ prints a traceback at exit.
    executor = SingleThreadedExecutor()
    try:
        node = node_class()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except CKDError as exc:
        print(f"ckd_tracker: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return 0


def main_lifecycle(args: list[str] | None = None) -> int:
    """``ckd_tracker_lifecycle_node``: the managed variant (ros2 lifecycle set /ckd_tracker configure)."""
    return main(args, CKDTrackerLifecycleNode)


if __name__ == "__main__":
    sys.exit(main_lifecycle() if "--lifecycle" in sys.argv else main())
