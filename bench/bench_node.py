#!/usr/bin/env python3
"""End-to-end node latency: image publish → Detection2DArray receive, through a real rclpy graph.

A player publishes synchronized 640x480 rgb8 + mono8 pairs at each input rate; the ckd_tracker node
(shipped model by default, its default fast path) tracks; a recorder takes the detections. Prints
p50/p95/p99 publish → detection latency, the processed rate, and processed vs dropped pairs (the
one-slot mailbox drops what inference cannot keep up with). Two layouts, side by side: ``process``
— the node in its own process (``ckd-ros launch``), the player and recorder in this one, as on a
robot where the camera driver is another process; ``shared`` — all three in one process and one
executor (the node competes with the player for the interpreter and the cores).
Usage: python bench/bench_node.py [--rates 30 60 100] [--seconds 8] [--layouts process shared] [--checkpoint F]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

import rclpy

from ckd_ros.benchmark import Timing
from ckd_ros.data.synthetic import SynthConfig, SyntheticSequence
from ckd_ros.ros.conversions import image_msg
from ckd_ros.ros.replay import play_through_node


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", nargs="+", type=float, default=[30, 60, 100])
    ap.add_argument("--layouts", nargs="+", choices=["process", "shared"], default=["process", "shared"])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--checkpoint", help="model file (default: the shipped model)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--size", default="640x480", help="input WxH")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    seq = SyntheticSequence(10_050, SynthConfig(height=h, width=w, length=60))
    msgs = [(image_msg(r, "rgb8"), image_msg(t[:, :, 0], "mono8")) for r, t in (seq.frame(i) for i in range(60))]
    rclpy.init()
    try:
        print(f"== node end to end: publish → Detection2DArray, {w}x{h} rgb8 + mono8 pairs")
        print(
            f"{'layout':<8} {'in Hz':>7} {'sent':>6} {'processed':>9} {'dropped':>7} {'out Hz':>9} "
            f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
        )
        for layout, rate in ((layout, rate) for layout in args.layouts for rate in args.rates):
            n = int(args.seconds * rate)
            pairs = [(1_700_000_000_000_000_000 + round(i * 1e9 / rate), *msgs[i % len(msgs)]) for i in range(n)]
            report = play_through_node(
                pairs,
                None,
                tuple(seq.boxes[0]),
                args.checkpoint,
                mode="realtime",
                progress=False,
                params={"device": args.device, "precision": args.precision},
                name=f"{rate:g}Hz",
                node_process=layout == "process",
            )
            t = Timing(tuple(report.latencies_ms[3:] or [float("nan")]))
            print(
                f"{layout:<8} {rate:7.0f} {n:6d} {report.processed:9d} {report.dropped:7d} "
                f"{report.processed / report.seconds:9.1f} "
                f"{t.pct(50):8.2f} {t.pct(95):8.2f} {t.pct(99):8.2f}",
                flush=True,
            )
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
