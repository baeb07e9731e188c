#!/usr/bin/env python3
"""Full tracker speed (crop → model → box) on 640x480 RGB-T pairs, with the per-stage split.

Random weights: the state is held at a 60x50 box (a 220-px search window) so crops are the size a
real target gives. The ``torch`` (on-device) crop path is measured on CUDA, where ``auto`` uses it.

For each variant and device, the eager fp32 path (the reference) and the fast path the node picks
by default (``precision``/``stack_branches`` auto, fused attention), side by side: frames/s,
p50/p99 per-frame latency, the ratio to eager fp32, and mean milliseconds spent in preprocessing
(two search crops + normalisation), the model, and postprocessing (Hann, decode, map back). On
CUDA every frame is synchronised so the split is real.
Usage: python bench/bench_tracker.py [--variants ckd_vitb_mce ckd_small] [--frames 30]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from dataclasses import replace

import cv2
import numpy as np
import torch

from ckd_ros.benchmark import HEADER, Timing, describe_device
from ckd_ros.engine import EngineConfig, TrackingEngine
from ckd_ros.model import build_model


def frames(n: int, h: int = 480, w: int = 640) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    out = []
    for i in range(n):
        rgb = np.roll(base, 2 * i, axis=1)
        out.append((rgb, np.repeat(rgb[:, :, :1], 3, axis=2)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["ckd_vitb_mce", "ckd_vitb", "ckd_small", "ckd_tiny"])
    ap.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    ap.add_argument("--frames", type=int, default=0, help="timed frames (default: 15 for ViT-B on CPU, else 150)")
    args = ap.parse_args()
    for dev in args.devices:
        device = torch.device(dev)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        print(f"\n== tracker (crop → model → box), 640x480 pairs, {describe_device(device)}")
        print(f"{'variant':<14} {'path':<22} {HEADER} {'vs eager':>9} {'pre ms':>8} {'model ms':>9} {'post ms':>8}")
        for variant in args.variants:
            model = build_model(variant, device=device)
            big = model.cfg.embed_dim >= 768 and device.type == "cpu"
            n = args.frames or (15 if big else 150)
            pairs = frames(n + 3)
            threads = torch.get_num_threads()
            eager = EngineConfig(device=dev, precision="fp32", stack_branches="off", fused_attention=False, cuda_graphs="off")
            fast = EngineConfig(device=dev, cpu_threads=threads)  # the node's defaults: auto everything
            paths = [("eager fp32", "cpu", eager), ("fast", "cpu", fast)]
            if device.type == "cuda":
                paths += [("fast, crops on GPU", "torch", fast)]
            base = None
            for label, mode, config in paths:
                engine = TrackingEngine(replace(config, cpu_threads=threads, preprocess=mode), model=copy.deepcopy(model))
                trk = engine.tracker
                if label.startswith("fast"):
                    label += f" {trk.config.precision}" + (" stacked" if trk.config.stack_branches else "")
                init = (300.0, 220.0, 60.0, 50.0)
                trk.initialize(*pairs[0], init)
                for p in pairs[1:3]:  # warm-up
                    trk.track(*p)
                lat, split = [], []
                for p in pairs[3:]:
                    trk.state = init  # random weights drift the box; keep a representative 220-px crop
                    sync()
                    res = trk.track(*p)
                    sync()
                    lat.append(sum(res.timing_ms.values()))
                    split.append(res.timing_ms)
                t = Timing(tuple(lat))
                base = base or t.mean
                means = [statistics.fmean(s[k] for s in split) for k in ("preprocess", "model", "postprocess")]
                print(
                    f"{variant:<14} {label:<22} {t.row()} {base / t.mean:8.2f}x {means[0]:8.2f} {means[1]:9.2f} {means[2]:8.2f}",
                    flush=True,
                )
                del trk, engine
            del model
    return 0


if __name__ == "__main__":
    sys.exit(main())
