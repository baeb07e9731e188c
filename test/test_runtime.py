"""Device, precision and thread choices: the rules the node applies when its parameters say auto."""

from __future__ import annotations

import pytest
import torch

from ckd_ros import runtime
from ckd_ros.errors import ConfigError
from ckd_ros.model import load_variant
from ckd_ros.model.int8 import int8_available

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_precision_follows_the_measured_speeds(monkeypatch):
    vitb, small = load_variant("ckd_vitb_mce"), load_variant("ckd_small")
    assert runtime.auto_precision(CUDA, small) == "fp16"
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(runtime, "cpu_bf16_speedup", lambda: 2.0)
    monkeypatch.setattr(runtime, "cpu_int8_speedup", lambda: 3.0)
    assert runtime.auto_precision(CPU, vitb) == "bf16"  # bf16 first where it pays: no surgery, less rounding
    assert runtime.auto_precision(CPU, small) == "fp32"  # small models: fp32 whatever the CPU
    monkeypatch.setattr(runtime, "cpu_bf16_speedup", lambda: 0.7)  # the flag alone is not enough
    assert runtime.auto_precision(CPU, vitb) == "int8"
    monkeypatch.setattr(runtime, "cpu_int8_speedup", lambda: 1.1)
    assert runtime.auto_precision(CPU, vitb) == "fp32"
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(runtime, "cpu_bf16_speedup", lambda: pytest.fail("no probe without bf16 support"))
    monkeypatch.setattr(runtime, "cpu_int8_speedup", lambda: 0.0)  # no int8 kernels
    assert runtime.auto_precision(CPU, vitb) == "fp32"


@pytest.mark.parametrize("probe", ["cpu_bf16_speedup", "cpu_int8_speedup"])
def test_speed_probes_measure_a_positive_ratio_once(probe):
    fn = getattr(runtime, probe)
    fn.cache_clear()
    ratio = fn()
    if probe == "cpu_int8_speedup" and not int8_available():
        assert ratio == 0.0
        return
    assert 0.0 < ratio < 100.0 and ratio == fn()  # measured once, then cached


def test_auto_stack_branches_and_threads(monkeypatch):
    vitb, small = load_variant("ckd_vitb_mce"), load_variant("ckd_small")
    assert runtime.auto_stack_branches(CUDA, vitb) and runtime.auto_stack_branches(CPU, small)
    assert not runtime.auto_stack_branches(CPU, vitb)
    assert not runtime.auto_stack_branches(CPU, small, "int8")  # int8 branches cannot stack
    assert runtime.inference_threads(3) == 3
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 8)
    assert runtime.inference_threads(0) == 7
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 1)
    assert runtime.inference_threads(0) == 1


def test_device_and_precision_errors_name_the_value():
    with pytest.raises(ConfigError, match="'tpu'"):
        runtime.resolve_device("tpu")
    with pytest.raises(ConfigError, match="fp8"):
        runtime.check_precision("fp8")
    with pytest.raises(ConfigError, match="model conversion"), runtime.autocast(CPU, "int8"):
        pass
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            runtime.resolve_device("cuda")
