"""The CPU int8 path: each converted layer against its fp32 original, and the converted network.

Quantization noise is bounded per layer (relative to the output's scale); the tracking tolerance of
the whole path is tested on the shipped model in test_shipped_model.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_inputs, sharpen
from torch import nn

from ckd_ros.errors import ConfigError
from ckd_ros.model.head import FusedCenterHead
from ckd_ros.model.int8 import Int8Conv3x3, Int8Linear, int8_available, quantize_linears
from ckd_ros.tracker import CKDTracker

pytestmark = pytest.mark.skipif(not int8_available(), reason="no int8 kernels on this CPU / PyTorch build")


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("shape", [(5, 64), (2, 37, 64), (1, 3, 7, 64)])
def test_int8_linear_matches_fp32_within_quantization_noise(shape):
    torch.manual_seed(0)
    lin = nn.Linear(64, 48)
    x = torch.randn(*shape)
    q = Int8Linear(lin)
    with torch.inference_mode():
        ref, out = lin(x), q(x)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert relative_error(out, ref) < 0.03
    assert not torch.equal(out, ref)  # it really ran the int8 kernel


@pytest.mark.parametrize("size", [(9, 7), (16, 16)])
def test_int8_conv3x3_matches_the_convolution(size):
    torch.manual_seed(1)
    conv = nn.Conv2d(24, 10, 3, 1, 1)
    x = torch.randn(2, 24, *size)
    with torch.inference_mode():
        ref, out = conv(x), Int8Conv3x3(conv.weight, conv.bias)(x)
    assert out.shape == ref.shape and out.is_contiguous()
    assert relative_error(out, ref) < 0.03


def test_int8_conv3x3_refuses_other_kernels():
    with pytest.raises(ValueError, match=r"\(out, in, 3, 3\)"):
        Int8Conv3x3(torch.zeros(4, 4, 1, 1), torch.zeros(4))


def test_quantize_int8_converts_the_heavy_layers_only(tiny_model):
    cfg = tiny_model.cfg
    tiny_model.set_elimination(ce_loc=())  # no top-k decisions: outputs move only by the noise
    inputs = random_inputs(cfg, seed=3)
    with torch.inference_mode():
        ref = tiny_model(*inputs)
    tiny_model.quantize_int8()
    linears = [m for m in tiny_model.modules() if isinstance(m, Int8Linear)]
    assert len(linears) == 2 * cfg.depth * 4  # qkv, proj, fc1, fc2 per block and branch
    assert not any(isinstance(m, nn.Linear) for m in tiny_model.modules())
    assert isinstance(tiny_model.fused_head, FusedCenterHead) and isinstance(tiny_model.fused_head.first, Int8Conv3x3)
    assert isinstance(tiny_model.rgb_branch.patch_embed.proj, nn.Conv2d)  # stays fp32
    with torch.inference_mode():
        out = tiny_model(*inputs)
    for key in ("score_map", "size_map"):
        assert (out[key] - ref[key]).abs().max() < 0.05, key
    tiny_model.quantize_int8()  # a second call changes nothing
    assert len([m for m in tiny_model.modules() if isinstance(m, Int8Linear)]) == len(linears)


def test_int8_refuses_stacked_branches(tiny_model):
    tiny_model.quantize_int8()
    with pytest.raises(ConfigError, match="float weights"):
        tiny_model.stack_branches()
    tiny_model.stack_branches(False)  # nothing to undo: the int8 head stays
    assert isinstance(tiny_model.fused_head.first, Int8Conv3x3)
    with pytest.raises(ConfigError, match="stack_branches"):
        CKDTracker(tiny_model, precision="int8", stack_branches=True)


def test_quantize_linears_counts_what_it_replaced():
    mlp = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Sequential(nn.Linear(8, 4)))
    assert quantize_linears(mlp) == 2 and quantize_linears(mlp) == 0


def test_int8_tracker_tracks_with_the_converted_model(tiny_model):
    sharpen(tiny_model, seed=4)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    trk = CKDTracker(tiny_model, precision="int8", fused_attention=True)
    assert tiny_model.int8
    trk.initialize(rgb, rgb, (60, 40, 20, 16))
    res = trk.track(rgb, rgb)
    assert 0.0 <= res.score <= 1.0 and res.box[2] > 0
