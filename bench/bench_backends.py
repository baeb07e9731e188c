#!/usr/bin/env python3
"""Other CPU backends for the ViT-B network, measured against the paths the tracker uses.

The question (README "Speed"): does anything beyond the tracker's own fast paths (fp32 fused /
stacked, bf16 weights, int8) make the batch-1 ViT-B forward faster on a CPU? Candidates:
TorchScript freezing (``torch.jit.trace`` + ``torch.jit.freeze``) with and without oneDNN Graph
fusion, and ONNX Runtime (the fp32 export of ``ckd_ros.model.export``, and the same graph with
dynamically quantised int8 weights). Calls are interleaved round by round, so every row of one
run sees the same machine load; ratios are to eager fp32 in that run. Speed only: the weights
are seeded random ones, whose MCE token ranking is too flat for output comparisons to mean
anything (two eager calls can keep different tokens); the tracker's own precisions are held to
fp32 on the shipped model in test/test_shipped_model.py.

Usage: python bench/bench_backends.py [--variant ckd_vitb_mce] [--rounds 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ckd_ros.benchmark import describe_device
from ckd_ros.model import build_model, load_variant
from ckd_ros.model.export import INPUTS, OUTPUTS, example_inputs, export_onnx
from ckd_ros.model.int8 import int8_available
from ckd_ros.runtime import convert_weights, cpu_supports_bf16

Forward = Callable[[], object]


class _Boxes(torch.nn.Module):
    """The network's pred_boxes alone, so TorchScript sees one tensor out."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *x: torch.Tensor) -> torch.Tensor:
        return self.model(*x)["pred_boxes"]


def _torch(model: torch.nn.Module, x: tuple[torch.Tensor, ...]) -> Forward:
    return lambda: model(*x)["pred_boxes"].float().numpy()


def _frozen(model: torch.nn.Module, x: tuple[torch.Tensor, ...], onednn: bool) -> Forward | None:
    """The traced, frozen network, or None (with the reason printed) where TorchScript fails on it."""
    torch.jit.enable_onednn_fusion(onednn)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frozen = torch.jit.freeze(torch.jit.trace(_Boxes(model).eval(), x, check_trace=False))
            for _ in range(3):  # the profiling executor specialises (and fuses) over the first calls
                frozen(*x)
    except RuntimeError as exc:
        reason = [line for line in str(exc).splitlines() if line.strip()][-1]
        print(f"no {'oneDNN graph' if onednn else 'jit-frozen'} row for this model: {reason}")
        return None
    finally:
        torch.jit.enable_onednn_fusion(False)
    return lambda: frozen(*x).float().numpy()


def _onnx_runtime(path: Path, x: tuple[torch.Tensor, ...], threads: int) -> Forward:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {name: t.numpy() for name, t in zip(INPUTS, x)}
    index = OUTPUTS.index("pred_boxes")
    return lambda: sess.run(None, feed)[index]


def candidates(variant: str, threads: int, workdir: Path) -> dict[str, Forward]:
    """Every path that builds on this machine, eager fp32 first."""
    model = build_model(load_variant(variant)).eval()
    x = example_inputs(model)
    rows: dict[str, Forward | None] = {"eager fp32": _torch(model, x)}
    fused = copy.deepcopy(model)
    fused.fused_attention = True
    rows["fused-attn fp32"] = _torch(fused, x)
    rows["fp32 jit-frozen"] = _frozen(fused, x, onednn=False)
    rows["fp32 jit + oneDNN graph"] = _frozen(fused, x, onednn=True)
    rows["eager-attn fp32 jit + oneDNN graph"] = _frozen(model, x, onednn=True)
    if cpu_supports_bf16():
        bf16 = convert_weights(copy.deepcopy(model), "bf16")
        bf16.fused_attention = True
        xb = tuple(t.bfloat16() for t in x)
        rows["bf16 weights"] = _torch(bf16, xb)
        rows["bf16 jit + oneDNN graph"] = _frozen(bf16, xb, onednn=True)
    rows = {name: fn for name, fn in rows.items() if fn is not None}
    if int8_available():
        rows["int8 (tracker)"] = _torch(convert_weights(copy.deepcopy(model), "int8"), x)
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        print("no ONNX Runtime rows: onnxruntime is not installed (pip install onnxruntime)")
        return rows
    fp32_path = export_onnx(model, workdir / "ckd.onnx")
    rows["onnxruntime fp32"] = _onnx_runtime(fp32_path, x, threads)
    int8_path = workdir / "ckd_int8.onnx"
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    rows["onnxruntime int8 (dynamic)"] = _onnx_runtime(int8_path, x, threads)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="ckd_vitb_mce")
    ap.add_argument("--rounds", type=int, default=10, help="timed calls per row, interleaved")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        rows = candidates(args.variant, threads, Path(tmp))
        for fn in rows.values():
            fn()
        samples: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, fn in rows.items():
                t0 = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - t0) * 1000.0)
    device = describe_device(torch.device("cpu"))
    print(f"\n== {args.variant} forward, batch 1, {device}; median of {args.rounds} interleaved calls")
    print(f"{'path':<28} {'p50 ms':>9} {'vs eager':>9}")
    base = float(np.median(samples["eager fp32"]))
    for name, times in samples.items():
        p50 = float(np.median(times))
        print(f"{name:<28} {p50:9.1f} {base / p50:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
