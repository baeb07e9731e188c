#!/usr/bin/env python3
"""Model-only latency of the CKD network at batch 1 (the paper's figure measures the same thing: docs/README.md).

One table per device: each variant in eager fp32 (the reference), with fused attention, with
stacked branches, under bf16 (CPU with AVX-512 BF16, CUDA) / fp16 (CUDA), autocast and cast
weights, and in int8 (x86 CPU), with the ratio to eager fp32 of the same variant in the same run.
Usage: python bench/bench_model.py [--variants ckd_vitb_mce ckd_small]
"""

from __future__ import annotations

import argparse
import sys

import torch

from ckd_ros.benchmark import run_model_benchmark
from ckd_ros.model.int8 import int8_available, int8_support


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["ckd_vitb_mce", "ckd_vitb", "ckd_small", "ckd_tiny"])
    ap.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    ap.add_argument("--iters", type=int, default=0, help="timed calls (default: 20 for ViT-B on CPU, else 200)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if "cpu" in args.devices and not int8_available():
        print(f"no int8 column: {int8_support().reason}")
    run_model_benchmark(args.variants, args.devices, args.iters, out=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
