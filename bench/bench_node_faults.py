#!/usr/bin/env python3
"""The node under faults, in figures: a seeded fuzz of malformed images among valid ones, an
overload at 200 Hz, and a thermal dropout, through a real rclpy graph (one process).

Prints: messages sent and how the node counted them (malformed, size mismatch, errors), whether
the node and its worker survived and answer valid pairs afterwards; RSS before and after the
overload; how long after the last thermal frame /diagnostics went WARN and how long after frames
returned it cleared. Figures, not assertions (test/test_node_failures.py asserts the behaviour).
Usage: python bench/bench_node_faults.py [--fuzz 2000] [--flood-seconds 10] [--checkpoint F]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

import numpy as np
import psutil
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from ckd_ros.benchmark import cpu_flags
from ckd_ros.data.synthetic import SynthConfig, SyntheticSequence
from ckd_ros.ros.conversions import image_msg
from ckd_ros.ros.fuzz import broken_image
from ckd_ros.ros.node import CKDTrackerNode
from ckd_ros.ros.spinning import BackgroundSpinner

RELIABLE = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=50)


class Rig:
    def __init__(self, checkpoint: str | None, box: tuple[float, ...]) -> None:
        params = [Parameter("init_box", value=list(box)), Parameter("qos_reliability", value="reliable")]
        params += [Parameter("qos_depth", value=50), Parameter("no_pair_warn_seconds", value=1.0)]
        params += [Parameter("checkpoint", value=checkpoint)] if checkpoint else []
        self.node = CKDTrackerNode(parameter_overrides=params)
        self.peer = rclpy.create_node("fault_bench_peer")
        self.rgb = self.peer.create_publisher(Image, "rgb/image", RELIABLE)
        self.tir = self.peer.create_publisher(Image, "thermal/image", RELIABLE)
        self.arrays: list[Detection2DArray] = []
        self.diags: list[tuple[float, DiagnosticArray]] = []
        self.peer.create_subscription(Detection2DArray, "/ckd_tracker/detections", self.arrays.append, RELIABLE)
        self.peer.create_subscription(
            DiagnosticArray, "/diagnostics", lambda m: self.diags.append((time.monotonic(), m)), RELIABLE
        )
        self.executor = SingleThreadedExecutor()
        for n in (self.node, self.peer):
            self.executor.add_node(n)
        self.spinner = BackgroundSpinner(self.executor).start()
        self.stamp = 1_000
        while self.rgb.get_subscription_count() < 1 or self.tir.get_subscription_count() < 1:
            time.sleep(0.05)

    def send(self, rgb: Image | None, tir: Image | None, frame: np.ndarray) -> None:
        self.stamp += 1
        rgb = rgb or image_msg(frame, "rgb8")
        tir = tir or image_msg(np.ascontiguousarray(frame[:, :, 0]), "mono8")
        for m in (rgb, tir):
            m.header.stamp.sec = self.stamp
        self.rgb.publish(rgb)
        self.tir.publish(tir)

    def diag(self) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.diags[-1][1].status[0].values} if self.diags else {}

    def level(self) -> bytes:
        return self.diags[-1][1].status[0].level if self.diags else b"\xff"

    def wait(self, cond, timeout: float) -> float | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if cond():
                return time.monotonic() - t0
            time.sleep(0.01)
        return None

    def close(self) -> None:
        self.spinner.stop()
        self.node.destroy_node()
        self.peer.destroy_node()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fuzz", type=int, default=2000, help="malformed messages to send")
    ap.add_argument("--flood-seconds", type=float, default=10.0)
    ap.add_argument("--checkpoint", help="model file (default: the shipped model)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    seq = SyntheticSequence(10_050, SynthConfig(height=480, width=640, length=40))
    frames = [seq.frame(i)[0] for i in range(40)]
    rclpy.init()
    rig = Rig(args.checkpoint, tuple(seq.boxes[0]))
    try:
        print(f"== ckd_tracker under faults; CPU flags: {cpu_flags()}; {os.cpu_count()} cores")
        rng = np.random.default_rng(args.seed)
        sent_bad = 0
        t0 = time.monotonic()
        while sent_bad < args.fuzz:
            frame = frames[rig.stamp % len(frames)]
            if rng.random() < 0.8:
                bad = broken_image(rng, frame)
                rig.send(*((bad, None) if rng.random() < 0.5 else (None, bad)), frame)
                sent_bad += 1
            else:
                rig.send(None, None, frame)
            time.sleep(0.005)
        before = len(rig.arrays)
        for _ in range(5):
            rig.send(None, None, frames[0])
            time.sleep(0.1)
        answered = rig.wait(lambda: len(rig.arrays) >= before + 5, 10.0) is not None
        time.sleep(0.6)
        d = rig.diag()
        print(
            f"fuzz: {sent_bad} malformed messages in {time.monotonic() - t0:.1f} s; counted malformed {d.get('malformed')}, "
            f"size mismatch {d.get('size_mismatch')}, errors {d.get('errors')} "
            f"(the rest: dropped as stale {d.get('dropped_pairs')}, "
            f"unpaired {d.get('unpaired_dropped')}); worker alive {rig.node.worker.is_alive()}; "
            f"valid pairs answered afterwards: {answered}"
        )

        proc = psutil.Process()
        rss0 = proc.memory_info().rss
        processed0, dropped0 = int(d["processed_total"]), int(d["dropped_pairs"])
        n = int(args.flood_seconds * 200)
        t0 = time.monotonic()
        for i in range(n):
            rig.send(None, None, frames[i % len(frames)])
            time.sleep(max(0.0, t0 + (i + 1) / 200 - time.monotonic()))
        time.sleep(1.0)
        rss1 = proc.memory_info().rss
        d = rig.diag()
        print(
            f"overload: {n} pairs at 200 Hz; processed {int(d['processed_total']) - processed0}, "
            f"dropped {int(d['dropped_pairs']) - dropped0}; "
            f"RSS {rss0 / 2**20:.0f} → {rss1 / 2**20:.0f} MiB ({(rss1 - rss0) / 2**20:+.1f} MiB)"
        )

        rig.wait(lambda: rig.level() == DiagnosticStatus.OK, 8.0)
        for i in range(10):
            rig.send(None, None, frames[i])
            time.sleep(0.033)
        last = time.monotonic()
        while True:  # RGB goes on, thermal has stopped
            rig.stamp += 1
            m = image_msg(frames[rig.stamp % len(frames)], "rgb8")
            m.header.stamp.sec = rig.stamp
            rig.rgb.publish(m)
            time.sleep(0.033)
            if rig.level() == DiagnosticStatus.WARN or time.monotonic() - last > 5:
                break
        warned = time.monotonic() - last
        back = time.monotonic()
        cleared = None
        for i in range(60):
            rig.send(None, None, frames[i % len(frames)])
            time.sleep(0.033)
            if rig.level() == DiagnosticStatus.OK:
                cleared = time.monotonic() - back
                break
        cleared_text = f"{cleared:.2f} s" if cleared is not None else "not within 2 s"
        print(
            f"dropout: WARN {warned:.2f} s after the last thermal frame (no_pair_warn_seconds 1.0, diagnostics every 0.5 s); "
            f"cleared {cleared_text} after frames returned"
        )
    finally:
        rig.close()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
