"""Device and numeric-precision choices shared by the model, tracker, benchmarks and node."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ckd_ros.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "bf16")
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
    """fp32: nothing; fp16/bf16: torch.autocast on the model's device (weights stay fp32)."""
    check_precision(precision)
    if precision == "fp32":
        yield
        return
    if device.type == "cpu" and precision == "fp16":
        raise ConfigError("fp16 is only supported on CUDA; use bf16 on CPU")
    with torch.autocast(device_type=device.type, dtype=PRECISION_DTYPES[precision]):
        yield


def auto_precision(device: torch.device, cfg: object) -> str:
    """The fast path where it pays: fp16 on CUDA (tensor cores on every NVIDIA GPU, Jetson included);
    bf16 on CPUs with native bf16 for ViT-B-sized models; fp32 otherwise (small models on CPU run
    no faster in bf16, measured by bench/bench_model.py)."""
    if device.type == "cuda":
        return "fp16"
    if cpu_supports_bf16() and getattr(cfg, "embed_dim", 0) >= 384:
        return "bf16"
    return "fp32"


def auto_stack_branches(device: torch.device) -> bool:
    """Stack the two branches where kernel launches dominate a batch-1 forward (CUDA); on a CPU the
    batched and per-branch paths run at the same speed (bench/bench_model.py), so keep the simpler one."""
    return device.type == "cuda"
