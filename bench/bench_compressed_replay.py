#!/usr/bin/env python3
"""What compressed camera streams change: the held-out synthetic suite replayed through the node
(lockstep, every frame) from raw bags and from compressed bags (RGB jpeg at the bag writer's
quality, thermal png), side by side: PR/SR per sequence and overall, bag sizes, and the node's
mean latency per pair (which includes decoding in the worker).
Usage: python bench/bench_compressed_replay.py [--count 10] [--length 120] [--checkpoint F]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

import numpy as np

from ckd_ros.benchmark import cpu_flags
from ckd_ros.data.datasets import read_dataset
from ckd_ros.data.synthetic import write_suite
from ckd_ros.ros.bags import JPEG_QUALITY, write_sequence_bag
from ckd_ros.ros.replay import replay


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10, help="held-out sequences")
    ap.add_argument("--length", type=int, default=120, help="frames per sequence")
    ap.add_argument("--checkpoint", help="model file (default: the shipped model)")
    args = ap.parse_args()
    print(f"== raw vs compressed bags through the node (lockstep); CPU flags: {cpu_flags()}; JPEG quality {JPEG_QUALITY}")
    heads = ("raw PR", "raw SR", "jpeg PR", "jpeg SR", "raw MiB", "jpeg MiB", "ms raw", "ms jpeg")
    print(f"{'sequence':<24} " + " ".join(f"{h:>8}" for h in heads))
    totals = {"raw": [], "compressed": []}
    with tempfile.TemporaryDirectory(prefix="ckd_compressed_") as tmp:
        root = Path(tmp)
        write_suite(root / "suite", count=args.count, length=args.length, progress=False)
        for seq in read_dataset("synthetic", root / "suite"):
            row = {}
            for kind in ("raw", "compressed"):
                bag = write_sequence_bag(seq, root / f"{seq.name}_{kind}", compressed=kind == "compressed")
                report = replay(bag, args.checkpoint, mode="lockstep", progress=False)
                row[kind] = (report.metrics["PR"], report.metrics["SR"], folder_mib(bag), float(np.mean(report.latencies_ms)))
                totals[kind].append((report.metrics["PR"], report.metrics["SR"]))
            (rp, rs, rm, rl), (cp, cs, cm, cl) = row["raw"], row["compressed"]
            print(f"{seq.name:<24} {rp:8.3f} {rs:8.3f} {cp:8.3f} {cs:8.3f} {rm:8.1f} {cm:8.1f} {rl:8.2f} {cl:8.2f}", flush=True)
    raw, comp = np.mean(totals["raw"], axis=0), np.mean(totals["compressed"], axis=0)
    print(
        f"{'mean':<24} {raw[0]:8.3f} {raw[1]:8.3f} {comp[0]:8.3f} {comp[1]:8.3f}   "
        f"(compressed - raw: PR {comp[0] - raw[0]:+.3f}, SR {comp[1] - raw[1]:+.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
