#!/usr/bin/env python3
"""End-to-end node latency: image publish → Detection2DArray receive, through a real rclpy graph.

A player publishes synchronized 640x480 rgb8 + mono8 pairs at each input rate; the ckd_tracker node
(shipped model by default) tracks; a recorder takes the detections. Prints p50/p95/p99 latency
(stamp = publish time), output rate, and how many pairs were processed vs dropped by the one-slot
mailbox. One process, SingleThreadedExecutor + the node's worker thread (as deployed).
Usage: python bench/bench_node.py [--rates 10 30 100] [--seconds 8] [--checkpoint F] [--size 640x480]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from ckd_ros.benchmark import Timing
from ckd_ros.data.synthetic import SynthConfig, SyntheticSequence
from ckd_ros.ros.conversions import image_msg
from ckd_ros.ros.node import CKDTrackerNode


def run_rate(args: argparse.Namespace, rate: float, frames: list) -> str:
    overrides = [Parameter("init_box", value=[float(v) for v in frames[0][2]]), Parameter("debug_image", value=False)]
    if args.checkpoint:
        overrides.append(Parameter("checkpoint", value=args.checkpoint))
    if args.device:
        overrides.append(Parameter("device", value=args.device))
    node = CKDTrackerNode(parameter_overrides=overrides)
    peer = rclpy.create_node("bench_player")
    pub_rgb = peer.create_publisher(Image, "rgb/image", qos_profile_sensor_data)
    pub_tir = peer.create_publisher(Image, "thermal/image", qos_profile_sensor_data)
    latencies: list[float] = []
    received = []

    def on_det(msg: Detection2DArray) -> None:
        now = time.time()
        latencies.append((now - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)) * 1000)
        received.append(now)

    peer.create_subscription(
        Detection2DArray, "/ckd_tracker/detections", on_det, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    )
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    ex.add_node(peer)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    while pub_rgb.get_subscription_count() < 2:
        time.sleep(0.01)
    msgs = [(image_msg(r, "rgb8"), image_msg(t[:, :, 0], "mono8")) for r, t, _ in frames]
    period = 1.0 / rate
    n = int(args.seconds * rate)
    start = time.perf_counter()
    for i in range(n):
        target = start + i * period
        while time.perf_counter() < target:
            time.sleep(min(0.0005, max(0.0, target - time.perf_counter())))
        a, b = msgs[i % len(msgs)]
        now = time.time()
        sec, nsec = int(now), int((now % 1) * 1e9)
        for m in (a, b):
            m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
        pub_rgb.publish(a)
        pub_tir.publish(b)
    time.sleep(1.0)
    sent_time = time.perf_counter() - start
    processed, dropped = node.frames, node.mailbox.dropped
    ex.shutdown()
    node.destroy_node()
    peer.destroy_node()
    t = Timing(tuple(latencies[3:] or [float("nan")]))
    out_rate = len(received) / max(sent_time - 1.0, 1e-6)
    return (
        f"{rate:7.0f} {n:6d} {processed:9d} {dropped:7d} {out_rate:9.1f} {t.pct(50):8.2f} {t.pct(95):8.2f} "
        f"{t.pct(99):8.2f}   {node.tracker.model.cfg.name} {node.tracker.device} {node.tracker.config.precision}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", nargs="+", type=float, default=[10, 30, 100])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--checkpoint", help="model file (default: the shipped model)")
    ap.add_argument("--device", help="auto, cpu, cuda")
    ap.add_argument("--size", default="640x480", help="input WxH")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    seq = SyntheticSequence(10_050, SynthConfig(height=h, width=w, length=60))
    frames = [(*seq.frame(i), seq.boxes[i]) for i in range(60)]
    rclpy.init()
    try:
        print(f"== node end to end: publish → Detection2DArray, {w}x{h} rgb8 + mono8 pairs, one process")
        print(f"{'in Hz':>7} {'sent':>6} {'processed':>9} {'dropped':>7} {'out Hz':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
        for rate in args.rates:
            print(run_rate(args, rate, frames), flush=True)
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
