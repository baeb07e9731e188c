"""CPU int8 inference: the heavy matrix products as int8 × int8 GEMMs (VNNI), outputs in fp32.

On x86 CPUs without AMX, bf16 matmuls run no faster than fp32 (one ``vdpbf16ps`` per cycle does
the work of two fp32 FMAs), but VNNI's int8 dot products do four times the work per instruction
(README "Speed" has the per-layer and whole-network measurements). What is quantized:

- every linear layer of both branches (qkv, proj, fc1, fc2: most of a ViT-B forward's arithmetic);
- the first convolution of the head's three trunks, which all read the same fused feature map,
  as one GEMM over an im2col of that map (3×3 conv over 1536 channels: ~2.7 GMAC per frame); the
  rest of the head runs fused in fp32 (``head.FusedCenterHead``).

Weights: symmetric int8, one scale per output channel, taken once. Activations: asymmetric uint8,
one scale per call from the tensor's own range (dynamic quantization), so no calibration data is
needed. Everything else (patch embedding, attention, norms, the rest of the head) stays fp32.
Results differ from fp32 by quantization noise; the tolerance is measured and documented
(test_int8.py, README "Speed").

The kernels are PyTorch's ``quantized::linear_dynamic`` (oneDNN / FBGEMM). Their weights are
built through quantized tensors, which PyTorch has deprecated; the deprecation warning is
silenced only around that one call.

Whether they are accurate depends on the CPU, and no flag says so: without VNNI (AVX2-only x86,
AVX-512 without VNNI) both oneDNN and FBGEMM multiply uint8 × int8 pairs into 16-bit sums that
saturate, so full-range 8-bit activations come out wrong (a ViT-B MLP product: relative error
0.089 instead of 0.014, the unit tests' small layers 0.28). 7-bit activations (``reduce_range``)
cannot saturate, at about 1.5x the noise (0.021). So ``int8_support`` measures, once per process,
a product that saturates where it can and keeps 8-bit activations only where they come out
within ``TOLERANCE`` of fp32, else 7-bit; where neither does, or no x86 engine exists, int8 is
unavailable and the reason says why.
"""

from __future__ import annotations

import functools
import math
import platform
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The engine each packed weight is made for, in order of preference: oneDNN measured the fastest
# (README "Speed"), FBGEMM is the fallback on older builds. The first one accurate on this CPU is used.
_ENGINES = ("onednn", "x86", "fbgemm")
_X86 = ("x86_64", "amd64", "i686", "x86")

# Largest relative error (max |int8 - fp32| / max |fp32|) the probe product may show: the bound
# test_int8.py holds every int8 layer to. Measured on the probe: 0.005 with 8-bit and 0.008 with
# 7-bit activations where the kernels are exact (VNNI), 0.21 with 8-bit where they saturate.
TOLERANCE = 0.03


@dataclass(frozen=True)
class Int8Support:
    """What the probe found on this machine: the engine and activation range to use, or why not."""

    engine: str | None = None
    reduce_range: bool = True
    error: float = math.inf  # the probe product's relative error with the chosen settings
    reason: str = ""  # why int8 cannot run here; empty where it can

    @property
    def available(self) -> bool:
        return self.engine is not None


@contextmanager
def _quiet_quantized_tensors() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*quantize_per_channel.*deprecated", category=UserWarning)
        yield


def _pack(weight: Tensor, bias: Tensor | None) -> object:
    """(out, in) fp32 weight → the engine's packed int8 weight, one symmetric scale per row."""
    w = weight.detach().float().contiguous()
    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
    zero = torch.zeros(w.shape[0], dtype=torch.long)
    with _quiet_quantized_tensors():
        qw = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
    b = None if bias is None else bias.detach().float().contiguous()
    return torch.ops.quantized.linear_prepack(qw, b)


def _relative_error(out: Tensor, ref: Tensor) -> float:
    """max |out - ref| / max |ref|: quantization noise relative to the output's scale."""
    return float((out.float() - ref).abs().max() / ref.abs().max())


def _probe_errors(engine: str) -> tuple[float, float]:
    """Relative errors on ``engine`` of a ViT-B attention-projection product (320 tokens, 768 → 768)
    with 8-bit and with 7-bit activations. Uniform activations and weights fill the whole uint8 and
    int8 ranges, so the pairs that overflow a 16-bit sum are many: where the kernel saturates the
    8-bit error is tens of times the noise, not a matter of which random draw came up."""
    torch.backends.quantized.engine = engine
    g = torch.Generator().manual_seed(0)
    x = torch.rand(320, 768, generator=g) * 2 - 1
    w = torch.rand(768, 768, generator=g) * 2 - 1
    with torch.inference_mode():
        ref = x @ w.t()
        packed = _pack(w, None)
        off, on = (_relative_error(torch.ops.quantized.linear_dynamic(x, packed, rr), ref) for rr in (False, True))
    return off, on


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _measure_support(machine: str, engines: Sequence[str]) -> Int8Support:
    """The decision, from the machine name and the build's quantized engines; every engine tried is
    measured, and the process-wide engine is left as it was."""
    if machine.lower() not in _X86:
        return Int8Support(reason=f"not x86_64: this CPU is {machine or 'unknown'}; the int8 path uses oneDNN/FBGEMM's x86 GEMMs")
    candidates = [e for e in _ENGINES if e in engines]
    if not candidates:
        return Int8Support(reason=f"no int8 engine in this PyTorch build (engines: {', '.join(engines) or 'none'})")
    previous = torch.backends.quantized.engine
    failures = []
    try:
        for engine in candidates:
            try:
                off, on = _probe_errors(engine)
            except (RuntimeError, AttributeError, NotImplementedError) as exc:
                failures.append(f"{engine} failed ({_first_line(exc)})")
                continue
            if off <= TOLERANCE:
                return Int8Support(engine, reduce_range=False, error=off)
            if on <= TOLERANCE:
                return Int8Support(engine, reduce_range=True, error=on)
            failures.append(f"{engine} relative error {off:.3f} with 8-bit activations, {on:.3f} with 7-bit")
    finally:
        torch.backends.quantized.engine = previous
    return Int8Support(reason=f"int8 kernels not within {TOLERANCE} of fp32 on this CPU: " + "; ".join(failures))


@functools.cache
def int8_support() -> Int8Support:
    """This machine's int8 settings, measured once per process (0.02-0.15 s); selects the engine
    process-wide (``torch.backends.quantized.engine``) where one is accurate."""
    support = _measure_support(platform.machine(), list(torch.backends.quantized.supported_engines))
    if support.available:
        torch.backends.quantized.engine = support.engine
    return support


def int8_available() -> bool:
    """True where an int8 engine exists on this CPU and its products are accurate (``int8_support``)."""
    return int8_support().available


class Int8Linear(nn.Module):
    """Drop-in for an inference ``nn.Linear``: any leading shape, fp32 in and out."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = _pack(linear.weight, linear.bias)
        self.reduce_range = int8_support().reduce_range

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.quantized.linear_dynamic(x.float().contiguous(), self.packed, self.reduce_range)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int8Conv3x3(nn.Module):
    """A 3×3, stride-1, pad-1 convolution (weight (out, in, 3, 3), bias) as one int8 GEMM.

    im2col by nine shifted slices of a channels-last copy (F.unfold measured slower, README "Speed"); the
    weight is reordered to the (ky, kx, c) layout those slices produce. NCHW in and out.
    """

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        if weight.ndim != 4 or weight.shape[-2:] != (3, 3):
            raise ValueError(f"Int8Conv3x3 needs a (out, in, 3, 3) weight, got {tuple(weight.shape)}")
        self.out_channels = weight.shape[0]
        self.packed = _pack(weight.detach().permute(0, 2, 3, 1).reshape(weight.shape[0], -1), bias)
        self.reduce_range = int8_support().reduce_range

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        xp = F.pad(x.float(), (1, 1, 1, 1)).permute(0, 2, 3, 1)
        cols = torch.cat([xp[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], dim=-1)
        y = torch.ops.quantized.linear_dynamic(cols.reshape(b * h * w, -1), self.packed, self.reduce_range)
        return y.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


def quantize_linears(module: nn.Module) -> int:
    """Replace every ``nn.Linear`` under ``module`` by an ``Int8Linear``, in place; returns how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child))
            count += 1
        else:
            count += quantize_linears(child)
    return count
