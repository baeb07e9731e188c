"""Timing helpers for bench/ scripts: warm-up, device sync, percentiles (never used in tests)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ckd_ros.model.int8 import int8_available
from ckd_ros.runtime import PRECISION_DTYPES, autocast, convert_weights, cpu_supports_bf16
from ckd_ros.stats import percentile


@dataclass(frozen=True)
class Timing:
    """Latencies of repeated calls, in milliseconds."""

    samples_ms: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples_ms)

    def pct(self, q: float) -> float:
        return percentile(self.samples_ms, q)

    @property
    def fps(self) -> float:
        return 1000.0 / self.mean

    def row(self) -> str:
        return f"{self.mean:9.2f} {self.pct(50):9.2f} {self.pct(99):9.2f} {self.fps:9.1f}"


HEADER = f"{'mean ms':>9} {'p50 ms':>9} {'p99 ms':>9} {'FPS':>9}"


def time_calls(fn: Callable[[], object], warmup: int, iters: int, device: torch.device) -> Timing:
    """Time ``fn`` per call; on CUDA each call is bracketed by synchronisation (as profile_model.py)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return Timing(tuple(samples))


# The x86 features that decide which CPU kernels run (and how fast): every CPU figure names them.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")


def cpu_flags() -> str:
    """The speed-relevant CPU flags of this machine, e.g. ``avx2 avx512f avx512_vnni``; the machine
    name where /proc/cpuinfo has no x86 flags (ARM)."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((ln for ln in f if ln.startswith(("flags", "Features"))), "").split(":", 1)[-1].split())
    except OSError:
        flags = set()
    found = [f for f in SPEED_FLAGS if f in flags]
    return " ".join(found) if found else f"{platform.machine()} (none of {', '.join(SPEED_FLAGS)})"


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    import platform

    return (
        f"CPU {platform.processor() or platform.machine()} [{cpu_flags()}], {torch.get_num_threads()} threads "
        f"(torch {torch.__version__})"
    )


def forward_fn(model: torch.nn.Module, inputs: list[torch.Tensor], device: torch.device, precision: str) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode(), autocast(device, precision):
            model(*inputs)

    return step


def model_modes(device: torch.device) -> list[tuple[str, bool, str, bool, bool]]:
    """(label, fused attention, precision, weights cast, branches stacked) rows: eager fp32 first,
    the reference for ratios."""
    out = [
        ("eager fp32", False, "fp32", False, False),
        ("fused-attn fp32", True, "fp32", False, False),
        ("stacked fp32", True, "fp32", False, True),
    ]
    low = ["fp16", "bf16"] if device.type == "cuda" else (["bf16"] if cpu_supports_bf16() else [])
    for p in low:
        out += [(f"autocast {p}", True, p, False, False), (f"{p} weights", True, p, True, False)]
        out += [(f"stacked {p}", True, p, True, True)]
    if device.type == "cpu" and int8_available():
        out += [("int8", True, "int8", True, False)]
    return out


def run_model_benchmark(variants: list[str], devices: list[str], iters: int = 0, out=print) -> None:
    """Model-only forward latency at batch 1 per variant and mode, with the ratio to eager fp32."""
    import copy

    from ckd_ros.model import build_model, load_variant

    for dev_name in devices:
        device = torch.device(dev_name)
        out(f"\n== model-only forward, batch 1, {describe_device(device)}")
        out(f"{'variant':<14} {'mode':<17} {HEADER} {'vs eager':>9}")
        for variant in variants:
            cfg = load_variant(variant)
            model = build_model(cfg, device=device)
            g = torch.Generator().manual_seed(0)
            t, s = cfg.template_size, cfg.search_size
            inputs = [torch.randn(1, 3, n, n, generator=g).to(device) for n in (t, t, s, s)]
            big = cfg.embed_dim >= 768 and device.type == "cpu"
            base = None
            for label, fused, precision, cast, stacked in model_modes(device):
                m = convert_weights(copy.deepcopy(model), precision) if cast else model
                x = [i.to(PRECISION_DTYPES[precision]) for i in inputs] if cast and precision in PRECISION_DTYPES else inputs
                m.fused_attention = fused
                m.stack_branches(stacked)
                step = forward_fn(m, x, device, "fp32" if cast else precision)
                timing = time_calls(step, warmup=3 if big else 20, iters=iters or (20 if big else 200), device=device)
                base = base or timing.mean
                out(f"{variant:<14} {label:<17} {timing.row()} {base / timing.mean:8.2f}x")
                del m
            del model  # free a ViT-B before building the next variant
