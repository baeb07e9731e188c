"""The tracking engine the node, the CLI and the benchmarks share: the same choices from the same
names, and the CUDA fallback (simulated on the CPU)."""

from __future__ import annotations

import pytest
import torch
from reference_tracker import synthetic_frames

from ckd_ros.engine import EngineConfig, TrackingEngine, is_cuda_failure
from ckd_ros.errors import ConfigError
from ckd_ros.model import build_model


def test_config_takes_the_node_parameter_names_it_knows():
    cfg = EngineConfig.from_mapping({"precision": "fp32", "stack_branches": "off", "slop": 0.05, "cpu_threads": 1})
    assert (cfg.precision, cfg.stack_branches, cfg.cpu_threads, cfg.device) == ("fp32", "off", 1, "auto")


def test_auto_builds_the_fast_path_and_says_so(tiny_model):
    lines = []
    engine = TrackingEngine(EngineConfig(device="cpu", cpu_threads=1), model=tiny_model, log=lines.append)
    assert engine.tracker.config.stack_branches and engine.tracker.config.fused_attention  # a small model on a CPU
    assert engine.precision == "fp32" and torch.get_num_threads() == 1
    assert engine.describe() == "model ckd_tiny on cpu (fp32 (auto), stacked branches, 1 thread)"
    off = TrackingEngine(
        EngineConfig(device="cpu", precision="fp32", stack_branches="off", cpu_threads=1), model=build_model("ckd_tiny")
    )
    assert not off.tracker.config.stack_branches and off.describe().endswith("(fp32, 1 thread)")


def test_cuda_requested_without_cuda(tiny_model):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    warned = []
    engine = TrackingEngine(EngineConfig(device="cuda", cpu_threads=1), model=tiny_model, warn=warned.append)
    assert engine.device.type == "cpu" and "falling back to CPU" in warned[0]
    with pytest.raises(ConfigError, match="CUDA is not available"):
        TrackingEngine(EngineConfig(device="cuda", allow_cpu_fallback=False), model=tiny_model)


class FailsLikeCuda:
    """Wraps a CPU tracker, says it is on CUDA, and fails like CUDA once."""

    def __init__(self, real, error: BaseException) -> None:
        self.real, self.error = real, error
        self.device, self.model, self.config = torch.device("cuda"), real.model, real.config

    state = property(lambda self: self.real.state)

    def track(self, *_a):
        raise self.error

    initialize = track


@pytest.mark.parametrize(
    "error",
    [torch.cuda.OutOfMemoryError("CUDA out of memory"), RuntimeError("CUDA error: an illegal memory access was encountered")],
)
def test_a_cuda_failure_moves_to_the_cpu_and_the_target_goes_on(tiny_model, error):
    (rgb, tir), (rgb2, tir2), (rgb3, tir3) = synthetic_frames(3)
    reasons = []
    engine = TrackingEngine(
        EngineConfig(device="cpu", cpu_threads=1), model=tiny_model, on_fallback=reasons.append, warn=lambda _: None
    )
    engine.initialize(rgb, tir, (40, 30, 20, 16))
    box = engine.track(rgb2, tir2).box
    engine.tracker = FailsLikeCuda(engine.tracker, error)
    answer = engine.track(rgb3, tir3)  # re-initialised at the last box on this frame
    assert answer.box == box and engine.device.type == "cpu" and engine.precision == "fp32"
    assert len(reasons) == 1 and type(error).__name__ in reasons[0]
    assert engine.track(rgb3, tir3).valid and not engine.tracker.config.cuda_graphs


def test_a_cuda_failure_while_setting_the_target_moves_to_the_cpu_with_that_box(tiny_model):
    (rgb, tir), (rgb2, tir2) = synthetic_frames(2)
    reasons = []
    engine = TrackingEngine(
        EngineConfig(device="cpu", cpu_threads=1), model=tiny_model, on_fallback=reasons.append, warn=lambda _: None
    )
    engine.tracker = FailsLikeCuda(engine.tracker, torch.cuda.OutOfMemoryError("CUDA out of memory"))
    first = engine.initialize(rgb, tir, (40, 30, 20, 16))
    assert first.box == (40, 30, 20, 16) and engine.initialized and engine.device.type == "cpu"
    assert len(reasons) == 1 and "OutOfMemoryError" in reasons[0]
    assert engine.track(rgb2, tir2).valid
    strict = TrackingEngine(EngineConfig(device="cpu", allow_cpu_fallback=False, cpu_threads=1), model=tiny_model)
    strict.tracker = FailsLikeCuda(strict.tracker, RuntimeError("CUDA error: launch failure"))
    with pytest.raises(RuntimeError, match="launch failure"):
        strict.initialize(rgb, tir, (40, 30, 20, 16))


def test_other_failures_are_not_hidden_by_a_fallback(tiny_model):
    (rgb, tir), (rgb2, tir2) = synthetic_frames(2)
    engine = TrackingEngine(EngineConfig(device="cpu", cpu_threads=1), model=tiny_model)
    engine.initialize(rgb, tir, (40, 30, 20, 16))
    engine.tracker = FailsLikeCuda(engine.tracker, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        engine.track(rgb2, tir2)
    no_fallback = TrackingEngine(
        EngineConfig(device="cpu", allow_cpu_fallback=False, cpu_threads=1), model=build_model("ckd_tiny")
    )
    no_fallback.initialize(rgb, tir, (40, 30, 20, 16))
    no_fallback.tracker = FailsLikeCuda(no_fallback.tracker, RuntimeError("CUDA error: launch failure"))
    with pytest.raises(RuntimeError, match="launch failure"):
        no_fallback.track(rgb2, tir2)


def test_cuda_failure_is_told_apart_from_bugs():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert is_cuda_failure(RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"), cuda)
    assert not is_cuda_failure(RuntimeError("shape mismatch"), cuda)
    assert not is_cuda_failure(torch.cuda.OutOfMemoryError("CUDA out of memory"), cpu)  # a CPU engine has nowhere to go
