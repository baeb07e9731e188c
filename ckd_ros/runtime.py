"""Device and numeric-precision choices shared by the model, tracker, benchmarks and node."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ckd_ros.errors import ConfigError
from ckd_ros.precisions import PRECISIONS

PRECISION_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU. An explicit CUDA request without CUDA is an error."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {device!r} is not one of auto, cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported; use auto, cpu or cuda")
    return dev


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {PRECISIONS}")
    return precision


def convert_weights(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """``model`` converted in place, for good, to run in ``precision``: int8 through the model's
    own ``quantize_int8``, fp16/bf16 by casting the weights once (on CPUs with native bf16 much
    faster than autocast, which re-casts every weight on every call); fp32 as is."""
    check_precision(precision)
    if precision == "int8":
        model.quantize_int8()
    elif precision in PRECISION_DTYPES:
        model.to(PRECISION_DTYPES[precision])
    return model


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 matrix instructions (AVX-512 BF16 / AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """fp32: nothing; fp16/bf16: torch.autocast on the model's device (weights stay fp32). int8 is
    not an autocast type: the model is converted once (``CKDNet.quantize_int8``)."""
    check_precision(precision)
    if precision == "int8":
        raise ConfigError("int8 is a model conversion (CKDNet.quantize_int8), not an autocast precision")
    if precision == "fp32":
        yield
        return
    if device.type == "cpu" and precision == "fp16":
        raise ConfigError("fp16 is only supported on CUDA; use bf16 on CPU")
    with torch.autocast(device_type=device.type, dtype=PRECISION_DTYPES[precision]):
        yield


def inference_threads(requested: int = 0) -> int:
    """CPU threads for inference in a process that also runs a ROS executor: ``requested``, or one
    less than the cores. On the 2-core machine, 1 inference thread roughly doubled the node's rate
    at 100 Hz input over 2 (42-48 vs 22 Hz over runs, bench/bench_node.py): OpenMP workers spinning
    on both cores starve the executor thread that takes the images in."""
    return requested if requested > 0 else max(1, (os.cpu_count() or 1) - 1)


def _best_time(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(8):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times[2:])


def _probe_operands() -> tuple[torch.Tensor, torch.Tensor]:
    """A ViT-B MLP product: 320 tokens x 768 → 3072."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(320, 768, generator=g), torch.randn(3072, 768, generator=g) * 0.02


@dataclass(frozen=True)
class Probe:
    """A reduced precision's run of the probe product against fp32 on this CPU. Speed alone is not
    enough: a kernel can be fast because it is wrong (int8 without VNNI saturates)."""

    speedup: float = 0.0  # fp32 time / its time
    error: float = math.inf  # max |its output - fp32| / max |fp32|
    unavailable: str = ""  # why it cannot run here; then speedup and error are not measured


def _compare(fp32: Callable[[], torch.Tensor], fast: Callable[[], torch.Tensor]) -> Probe:
    """Both ways of computing one product: how far apart their outputs are and how fast each is."""
    with torch.inference_mode():
        ref = fp32()
        error = float((fast().float() - ref).abs().max() / ref.abs().max())
        return Probe(_best_time(fp32) / _best_time(fast), error)


@functools.cache
def cpu_bf16_probe() -> Probe:
    """bf16 matmuls against fp32 on this CPU (about 0.2 s, once per process).

    The instruction flags do not tell the speed: without AMX, one ``vdpbf16ps`` per cycle does the
    work of two fp32 FMAs, so a CPU with AVX-512 BF16 but no AMX runs bf16 slower than fp32, while
    AMX runs it several times faster (README "Speed" has the measurements). So it is measured, best
    of several runs of each type.
    """
    x, w = _probe_operands()
    xb, wb = x.bfloat16(), w.bfloat16()
    return _compare(lambda: x @ w.t(), lambda: xb @ wb.t())


@functools.cache
def cpu_int8_probe() -> Probe:
    """The same product through the int8 kernels (``model/int8.py``) against fp32; ``unavailable``
    where they cannot run or are inaccurate here (``int8_support``); its speed-up on VNNI and AMX
    CPUs is in README "Speed", its error against fp32 next to ``AUTO_TOLERANCE``."""
    from ckd_ros.model.int8 import Int8Linear, int8_support

    support = int8_support()
    if not support.available:
        return Probe(unavailable=support.reason)
    x, w = _probe_operands()
    lin = torch.nn.utils.skip_init(torch.nn.Linear, 768, 3072, bias=False)  # no draw from the global RNG
    with torch.no_grad():
        lin.weight.copy_(w)
    q = Int8Linear(lin)
    return _compare(lambda: lin(x), lambda: q(x))


BF16_MIN_SPEEDUP = 1.3
INT8_MIN_SPEEDUP = 1.5
# int8 wins over an accepted bf16 only by this factor on the probes: it also quantises activations
# on every call and keeps attention in fp32, which a matmul probe does not see. On an AMD EPYC
# (AVX-512 VNNI + BF16, no AMX) the probes measured int8 5.3x, bf16 3.0x and the ViT-B forward
# 3.1x vs 2.3x (bench/bench_backends.py, README "Speed").
INT8_OVER_BF16 = 1.5
# Largest relative error auto accepts on the probe product. Measured there: bf16 0.0035, int8
# 0.014 (VNNI) or 0.021 (7-bit activations); int8 with saturating 8-bit activations 0.089. The
# same bound as the int8 layer tests (test_int8.py).
AUTO_TOLERANCE = 0.03


def _is_small(cfg: object) -> bool:
    """Narrower than ViT-S: per-op overhead, not matmul throughput, bounds its forward on a CPU."""
    return getattr(cfg, "embed_dim", 0) < 384


def _refusal(precision: str, probe: Probe, min_speedup: float) -> str:
    """Why auto does not take ``precision`` on this CPU, in one line; empty where it does."""
    if probe.unavailable:
        return f"precision auto: {precision} refused: {probe.unavailable}"
    if not probe.error <= AUTO_TOLERANCE:  # NaN included
        return (
            f"precision auto: {precision} refused: its outputs differ from fp32 by {probe.error:.3f} relative "
            f"(tolerance {AUTO_TOLERANCE}) on this CPU's probe product, though {probe.speedup:.1f}x as fast"
        )
    if probe.speedup < min_speedup:
        return f"precision auto: {precision} refused: {probe.speedup:.2f}x fp32's speed on this CPU (needs {min_speedup}x)"
    return ""


def auto_precision(device: torch.device, cfg: object, on_refused: Callable[[str], None] | None = None) -> str:
    """The fast path where it pays: fp16 on CUDA (tensor cores on every NVIDIA GPU, Jetson included).
    On a CPU, for ViT-B-sized models: bf16 where a probe measures bf16 matmuls at least
    ``BF16_MIN_SPEEDUP`` times faster (AMX, AMD Zen 4), int8 where its probe measures at least
    ``INT8_MIN_SPEEDUP`` (VNNI); fp32 otherwise. Either is taken only if its probe output is within
    ``AUTO_TOLERANCE`` of fp32 on this machine. Where both pass, bf16 unless int8's probe is
    ``INT8_OVER_BF16`` times bf16's: bf16 needs no model surgery and rounds less. Small models stay
    fp32 on CPU: per-op overhead bounds them, not matmul throughput, so int8 and bf16 only add
    conversions there (bench/bench_model.py, README "Speed").

    ``on_refused`` gets one line per reduced precision the probes turned down on this CPU, saying
    why (no such instructions or kernels, outputs off fp32, too slow), so a user who does not get
    the fast path they expected can tell why; nothing on CUDA or for small models, where no probe
    runs."""
    if device.type == "cuda":
        return "fp16"
    if _is_small(cfg):
        return "fp32"
    refused = on_refused or (lambda _line: None)
    bf16: Probe | None = None
    if not cpu_supports_bf16():
        refused("precision auto: bf16 refused: no AVX-512 BF16 or AMX instructions on this CPU")
    elif reason := _refusal("bf16", probe := cpu_bf16_probe(), BF16_MIN_SPEEDUP):
        refused(reason)
    else:
        bf16 = probe
    int8 = cpu_int8_probe()
    if reason := _refusal("int8", int8, INT8_MIN_SPEEDUP):
        if bf16 is None:
            refused(reason)
        return "bf16" if bf16 is not None else "fp32"
    if bf16 is not None and int8.speedup <= INT8_OVER_BF16 * bf16.speedup:
        return "bf16"
    if bf16 is not None:
        refused(
            f"precision auto: bf16 passed over: int8 is faster on this CPU ({int8.speedup:.1f}x fp32's speed on the "
            f"probe product against bf16's {bf16.speedup:.1f}x)"
        )
    return "int8"


def auto_stack_branches(device: torch.device, cfg: object, precision: str = "fp32") -> bool:
    """Stack the two branches where kernel launches and per-op overhead dominate a batch-1 forward:
    always on CUDA, and for small models on a CPU (README "Speed" has the measured gain). ViT-B on a
    CPU is compute-bound (stacked = per-branch speed, bench/bench_model.py), so
    it keeps the per-branch path and saves the copy of the weights that stacking holds. An int8
    model never stacks (its branches hold packed int8 weights)."""
    if precision == "int8":
        return False
    return device.type == "cuda" or _is_small(cfg)
