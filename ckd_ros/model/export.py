"""ONNX export of the CKD network with static shapes, checked against PyTorch with onnxruntime.

At batch 1 the lockstep forward has fixed token counts (official MCE: 256 → 180 → 126 → 89 search
tokens), so the graph is static: crops in, the box head's maps (``BoxHead.OUTPUTS``; for CENTER the
score, size and offset maps) and the raw-peak box out. The tracker's crop, Hann window and map-back
stay in the host code. For TensorRT (e.g. Jetson Orin):
``trtexec --onnx=ckd.onnx --fp16 --saveEngine=ckd_fp16.engine``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ckd_ros.model.ckd import CKDNet
from ckd_ros.model.head import HEAD

INPUTS = ("template_rgb", "template_tir", "search_rgb", "search_tir")
OUTPUTS = (*HEAD.OUTPUTS, "pred_boxes")
"""The graph's outputs for the network's head (``output_names`` for a given model)."""


def output_names(model: CKDNet) -> tuple[str, ...]:
    """The model's box head's maps, then the raw-peak box."""
    return (*model.box_head.OUTPUTS, "pred_boxes")


class _Outputs(nn.Module):
    """The dict-returning network as a tuple, in ``output_names`` order."""

    def __init__(self, model: CKDNet) -> None:
        super().__init__()
        self.model = model
        self.names = output_names(model)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(*inputs)
        return tuple(out[k] for k in self.names)


def example_inputs(model: CKDNet, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    t, s = model.cfg.template_size, model.cfg.search_size
    return tuple(torch.randn(1, 3, n, n, generator=g) for n in (t, t, s, s))


def export_onnx(model: CKDNet, path: str | Path, opset: int = 17) -> Path:
    """Trace the fp32 eager network (the bit-exact attention form) to ONNX at batch 1."""
    model = model.float().eval().cpu()
    fused, model.fused_attention = model.fused_attention, False
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # Shape-derived Python booleans are constants at a fixed batch (intended), and the TorchScript
            # exporter is chosen on purpose: the graph is static and it needs no onnxscript package.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                _Outputs(model),
                example_inputs(model),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=list(INPUTS),
                output_names=list(output_names(model)),
            )
    finally:
        model.fused_attention = fused
    return path


def verify_onnx(model: CKDNet, path: str | Path, seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, float]:
    """Largest |onnxruntime − PyTorch| per output over a few random inputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = model.float().eval().cpu()
    names = output_names(model)
    worst = dict.fromkeys(names, 0.0)
    for seed in seeds:
        inputs = example_inputs(model, seed)
        got = sess.run(list(names), {n: x.numpy() for n, x in zip(INPUTS, inputs)})
        with torch.inference_mode():
            ref = _Outputs(model)(*inputs)
        for name, a, b in zip(names, got, ref):
            worst[name] = max(worst[name], float(np.abs(a - b.numpy()).max()))
    return worst
