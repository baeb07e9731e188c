"""CPU int8 inference: the heavy matrix products as int8 × int8 GEMMs (VNNI), outputs in fp32.

On x86 CPUs without AMX, bf16 matmuls run no faster than fp32 (one ``vdpbf16ps`` per cycle does
the work of two fp32 FMAs), but VNNI's int8 dot products do four times the work per instruction:
ViT-B's linear layers measured 2.5-3.9x faster than fp32 (by shape) on a 2-core AVX-512 Xeon
(bench/bench_model.py gives the whole-network figure). What is quantized:

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
built through quantized tensors, which PyTorch has deprecated; ``int8_available`` answers
whether this PyTorch still has them, and the deprecation warning is silenced only around that
one call.
"""

from __future__ import annotations

import functools
import platform
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The engine each packed weight is made for; oneDNN was the fastest here (2.4 ms vs 3.2 for
# "x86" on a 436x768x3072 product, 2-core Xeon), FBGEMM the fallback on older builds.
_ENGINES = ("onednn", "x86", "fbgemm")


def _engine() -> str | None:
    supported = torch.backends.quantized.supported_engines
    return next((e for e in _ENGINES if e in supported), None)


def _reduce_range() -> bool:
    """FBGEMM-style kernels need 7-bit activations to avoid overflow; oneDNN does not."""
    return torch.backends.quantized.engine != "onednn"


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


@functools.cache
def int8_available() -> bool:
    """True where this CPU and PyTorch build run the int8 kernels (x86 with a quantized engine).

    Selects the engine process-wide (``torch.backends.quantized.engine``), once.
    """
    engine = _engine()
    if engine is None or platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        torch.backends.quantized.engine = engine
        packed = _pack(torch.ones(8, 8), torch.zeros(8))
        torch.ops.quantized.linear_dynamic(torch.ones(2, 8), packed, _reduce_range())
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
    return True


class Int8Linear(nn.Module):
    """Drop-in for an inference ``nn.Linear``: any leading shape, fp32 in and out."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = _pack(linear.weight, linear.bias)
        self.reduce_range = _reduce_range()

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.quantized.linear_dynamic(x.float().contiguous(), self.packed, self.reduce_range)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int8Conv3x3(nn.Module):
    """A 3×3, stride-1, pad-1 convolution (weight (out, in, 3, 3), bias) as one int8 GEMM.

    im2col by nine shifted slices of a channels-last copy (F.unfold was 4x slower here); the
    weight is reordered to the (ky, kx, c) layout those slices produce. NCHW in and out.
    """

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        if weight.ndim != 4 or weight.shape[-2:] != (3, 3):
            raise ValueError(f"Int8Conv3x3 needs a (out, in, 3, 3) weight, got {tuple(weight.shape)}")
        self.out_channels = weight.shape[0]
        self.packed = _pack(weight.detach().permute(0, 2, 3, 1).reshape(weight.shape[0], -1), bias)
        self.reduce_range = _reduce_range()

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
