#!/usr/bin/env python3
"""End-to-end node latency and delivery: image publish → Detection2DArray receive, through a real
rclpy graph, per input QoS and Fast DDS transport, side by side.

A player publishes synchronized WxH rgb8 + mono8 pairs at each input rate; the ckd_tracker node
(shipped model by default, its default fast path) tracks; a recorder takes the detections. Each
row is one setting:

* transport (``--profile``): ``none`` (Fast DDS defaults), ``LARGE_DATA``
  (FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA), a shipped profile name (``large_images``) or a profile
  path. The player and the node process both load it, as a camera driver and the node must.
* QoS (``--qos``): ``best_effort`` — what a camera driver publishes (sensor data: best effort,
  depth 5) and the node's default input QoS — or ``reliable`` (depth 5 on both ends).
* layout (``--layouts``): ``process`` — the node in its own process (``ckd-ros launch``), the
  player and recorder in another, as on a robot where the camera driver is another process;
  ``shared`` — all in one process and executor (Fast DDS delivers in-process: no transport at all).

Columns: pairs sent; pairs that reached the node's pairing (processed + dropped + failed); lost —
sent pairs that never reached it (a frame lost in transit or in the node's input queue, or its
partner lost); processed (answered with a Detection2DArray); dropped (replaced in the one-slot
mailbox because inference was busy); the processed rate per second of input and the publish →
detection latency percentiles. With best-effort input the player waits a second after matching the
node (``replay.BEST_EFFORT_SETTLE``), so that no frame is lost to discovery and ``lost`` is the
stream's loss.

``--raw`` measures the transport alone: one rgb8 image stream from this side to a subscriber in
another process, no node: received of sent, per transport and QoS; ``--loaded-by publisher`` or
``subscriber`` gives the setting to one side only (the other runs Fast DDS defaults), to show
which end of a shared-memory link needs the profile.

Every row runs in a fresh process (and the node in its own), because Fast DDS reads its profile
once per process, when the first participant is created: that is the only way each setting gets
exactly its own transports on both ends.

Usage: python bench/bench_node.py [--rates 30] [--qos best_effort reliable] [--profile none large_images]
       [--layouts process] [--size 640x480] [--seconds 8] [--raw [--loaded-by both publisher subscriber]]
       [--checkpoint F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

from ckd_ros.benchmark import Timing, cpu_flags
from ckd_ros.ros.transport import PROFILE_VARIABLES, describe_environment, transport_environment

START_NS = 1_700_000_000_000_000_000
BUILTIN = ("LARGE_DATA", "LARGE_DATAv6", "DEFAULT", "DEFAULTv6", "SHM", "UDPv4", "UDPv6")


def setting_environment(profile: str) -> dict[str, str]:
    """This process's environment with exactly the transport setting ``profile`` (and no other
    profile or builtin-transport choice inherited from the shell)."""
    env = {k: v for k, v in os.environ.items() if k not in (*PROFILE_VARIABLES, "FASTDDS_BUILTIN_TRANSPORTS")}
    if profile in BUILTIN:
        env["FASTDDS_BUILTIN_TRANSPORTS"] = profile
    else:
        env.update(transport_environment(profile, env))
    return env


def qos_profile(qos: str):
    """What a camera driver publishes: sensor data (best effort, keep last 5), or the same reliable."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliability = ReliabilityPolicy.RELIABLE if qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(reliability=reliability, history=HistoryPolicy.KEEP_LAST, depth=5)


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


# -- one setting, in its own process ----------------------------------------------------------------


def child_node(job: dict) -> dict:
    """Pairs through the node at one rate, QoS and layout; this process's environment is the setting's."""
    import rclpy

    from ckd_ros.data.synthetic import SynthConfig, SyntheticSequence
    from ckd_ros.ros.conversions import image_msg
    from ckd_ros.ros.replay import play_through_node

    w, h = _size(job["size"])
    frames = 60 if w * h <= 640 * 512 else 12  # distinct frames, cycled: 12 at 1920x1080 are 100 MB of messages
    seq = SyntheticSequence(10_050, SynthConfig(height=h, width=w, length=frames))
    msgs = [(image_msg(r, "rgb8"), image_msg(t[:, :, 0], "mono8")) for r, t in (seq.frame(i) for i in range(frames))]
    rate = job["rate"]
    n = int(job["seconds"] * rate)
    pairs = [(START_NS + round(i * 1e9 / rate), *msgs[i % frames]) for i in range(n)]
    params = {"device": job["device"], "precision": job["precision"], "qos_reliability": job["qos"], "qos_depth": 5}
    rclpy.init()  # after the environment is final: the participant takes its transports now
    try:
        report = play_through_node(
            pairs,
            None,
            tuple(seq.boxes[0]),
            job["checkpoint"],
            mode="realtime",
            progress=False,
            params=params,
            name=f"{rate:g}Hz",
            node_process=job["layout"] == "process",
        )
    finally:
        rclpy.try_shutdown()
    t = Timing(tuple(report.latencies_ms[3:] or [float("nan")]))
    return {
        "sent": n,
        "paired": report.processed + report.dropped + report.failed,
        "processed": report.processed,
        "dropped": report.dropped,
        "failed": report.failed,
        "out_hz": report.processed / job["seconds"],  # per second of input (report.seconds adds the wait for lost pairs)
        "p50": t.pct(50),
        "p99": t.pct(99),
    }


def child_raw_subscriber(job: dict) -> None:
    """Count the stamps received on ``raw/image``; print ``ready`` once the publisher is matched on
    this side (so nothing is lost to discovery), then the count when the stream ends."""
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_raw_subscriber")
    stamps: set[int] = set()

    def on_image(msg: Image) -> None:
        stamps.add(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)

    node.create_subscription(Image, "raw/image", on_image, qos_profile(job["qos"]))
    try:
        deadline = time.monotonic() + 60
        while node.count_publishers("raw/image") < 1 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        print("ready", flush=True)
        last = time.monotonic()
        while time.monotonic() - last < 3.0 and node.count_publishers("raw/image") > 0:
            before = len(stamps)
            rclpy.spin_once(node, timeout_sec=0.1)
            if len(stamps) != before:
                last = time.monotonic()
        print(json.dumps({"received": len(stamps)}), flush=True)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def child_raw(job: dict) -> dict:
    """One rgb8 stream at ``rate`` from this process to a subscriber process, which loads the transport
    setting ``job["sub_profile"]`` (this process has its own from the parent)."""
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    from ckd_ros.ros.conversions import image_msg

    w, h = _size(job["size"])
    n = int(job["seconds"] * job["rate"])
    sub = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps({**job, "kind": "raw-sub"})],
        stdout=subprocess.PIPE,
        text=True,
        env=setting_environment(job["sub_profile"]),
    )
    rclpy.init()
    node = rclpy.create_node("bench_raw_publisher")
    try:
        pub = node.create_publisher(Image, "raw/image", qos_profile(job["qos"]))
        msg = image_msg(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8), "rgb8")
        if sub.stdout.readline().strip() != "ready":
            raise RuntimeError("the raw subscriber did not start")
        deadline = time.monotonic() + 30
        while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        for i in range(n):
            while (wait := t0 + i / job["rate"] - time.monotonic()) > 0:
                time.sleep(min(wait, 0.002))
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(START_NS + i, 10**9)
            pub.publish(msg)
        result = json.loads(sub.stdout.readline())
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        sub.wait(timeout=30)
    return {"sent": n, "received": result["received"]}


def run_child(job: dict, env: dict[str, str]) -> dict:
    """One setting in a fresh process with environment ``env``; its result, or the error's last line."""
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], env=env, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {proc.returncode}: {tail}"}


# -- the table ----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", nargs="+", type=float, default=[30.0])
    ap.add_argument("--qos", nargs="+", choices=["best_effort", "reliable"], default=["best_effort", "reliable"])
    ap.add_argument(
        "--profile",
        nargs="+",
        default=["none", "large_images"],
        help="transport settings: none, LARGE_DATA (FASTDDS_BUILTIN_TRANSPORTS), large_images (shipped), or a profile path",
    )
    ap.add_argument("--layouts", nargs="+", choices=["process", "shared"], default=["process"])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--raw", action="store_true", help="transport alone: one rgb8 stream to a subscriber process, no node")
    ap.add_argument(
        "--loaded-by",
        nargs="+",
        choices=["both", "publisher", "subscriber"],
        default=["both"],
        help="with --raw: which side loads the transport setting (the other runs Fast DDS defaults)",
    )
    ap.add_argument("--checkpoint", help="model file (default: the shipped model)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--size", default="640x480", help="input WxH")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        job = json.loads(args.child)
        if job["kind"] == "raw-sub":
            child_raw_subscriber(job)
            return 0
        print(json.dumps(child_raw(job) if job["kind"] == "raw" else child_node(job)), flush=True)
        return 0
    envs = {profile: setting_environment(profile) for profile in args.profile}  # a bad profile stops here
    w, h = _size(args.size)
    print(f"== {'transport alone: rgb8 stream' if args.raw else 'node end to end: rgb8 + mono8 pairs'}, {w}x{h}")
    print(
        f"CPU flags: {cpu_flags()}; ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}, "
        f"RMW {os.environ.get('RMW_IMPLEMENTATION') or 'rmw_fastrtps_cpp (default)'}"
    )
    for profile, env in envs.items():
        print(f"  {profile}: {describe_environment(env)}")
    if args.raw:
        print(f"{'transport':<14} {'QoS':<12} {'loaded by':<10} {'Hz':>5} {'sent':>6} {'received':>9}")
    else:
        print(
            f"{'transport':<14} {'QoS':<12} {'layout':<8} {'Hz':>5} {'sent':>6} {'paired':>7} {'lost':>6} "
            f"{'processed':>9} {'dropped':>7} {'out Hz':>7} {'p50 ms':>7} {'p99 ms':>7}"
        )
    layouts = args.loaded_by if args.raw else args.layouts  # with --raw, the "layout" is which side loads the setting
    for profile in args.profile:
        for qos in args.qos:
            for layout in layouts:
                for rate in args.rates:
                    job = {
                        "kind": "raw" if args.raw else "node",
                        "size": args.size,
                        "rate": rate,
                        "seconds": args.seconds,
                        "qos": qos,
                        "layout": layout,
                        "checkpoint": args.checkpoint,
                        "device": args.device,
                        "precision": args.precision,
                        "sub_profile": profile if layout in ("both", "subscriber") else "none",
                    }
                    env = envs[profile] if layout != "subscriber" else setting_environment("none")
                    r = run_child(job, env)
                    head = f"{profile:<14} {qos:<12} {layout:<{10 if args.raw else 8}} {rate:5.0f}"
                    if "error" in r:
                        print(f"{head}  failed: {r['error']}", flush=True)
                    elif args.raw:
                        print(f"{head} {r['sent']:6d} {r['received']:9d}", flush=True)
                    else:
                        print(
                            f"{head} {r['sent']:6d} {r['paired']:7d} {r['sent'] - r['paired']:6d} {r['processed']:9d} "
                            f"{r['dropped']:7d} {r['out_hz']:7.1f} {r['p50']:7.2f} {r['p99']:7.2f}",
                            flush=True,
                        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
