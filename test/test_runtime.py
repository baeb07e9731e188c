"""Device, precision and thread choices: the rules the node applies when its parameters say auto."""

from __future__ import annotations

import pytest
import torch

from ckd_ros import runtime
from ckd_ros.errors import ConfigError
from ckd_ros.model import int8, load_variant
from ckd_ros.model.int8 import int8_available, int8_support
from ckd_ros.runtime import Probe

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_precision_follows_the_measured_speeds(monkeypatch):
    vitb, small = load_variant("ckd_vitb_mce"), load_variant("ckd_small")
    assert runtime.auto_precision(CUDA, small) == "fp16"
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(runtime, "cpu_bf16_probe", lambda: Probe(2.0, 0.004))
    monkeypatch.setattr(runtime, "cpu_int8_probe", lambda: Probe(3.0, 0.014))
    assert runtime.auto_precision(CPU, vitb) == "bf16"  # bf16 first where it pays: no surgery, less rounding
    monkeypatch.setattr(runtime, "cpu_bf16_probe", lambda: Probe(3.0, 0.004))
    monkeypatch.setattr(runtime, "cpu_int8_probe", lambda: Probe(5.3, 0.014))  # an AMD EPYC (VNNI, BF16, no AMX)
    lines = []
    assert runtime.auto_precision(CPU, vitb, on_refused=lines.append) == "int8"  # int8 clearly faster there
    assert lines == [
        "precision auto: bf16 passed over: int8 is faster on this CPU (5.3x fp32's speed on the probe product "
        "against bf16's 3.0x)"
    ]
    monkeypatch.setattr(runtime, "cpu_int8_probe", lambda: Probe(5.3, 0.089))  # ... unless int8 is wrong there
    assert runtime.auto_precision(CPU, vitb) == "bf16"
    monkeypatch.setattr(runtime, "cpu_int8_probe", lambda: Probe(3.0, 0.014))
    assert runtime.auto_precision(CPU, small) == "fp32"  # small models: fp32 whatever the CPU
    monkeypatch.setattr(runtime, "cpu_bf16_probe", lambda: Probe(0.7, 0.004))  # the flag alone is not enough
    assert runtime.auto_precision(CPU, vitb) == "int8"
    monkeypatch.setattr(runtime, "cpu_int8_probe", lambda: Probe(1.1, 0.014))
    assert runtime.auto_precision(CPU, vitb) == "fp32"
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(runtime, "cpu_bf16_probe", lambda: pytest.fail("no probe without bf16 support"))
    monkeypatch.setattr(runtime, "cpu_int8_probe", lambda: Probe(unavailable="no int8 kernels"))
    assert runtime.auto_precision(CPU, vitb) == "fp32"


def test_auto_precision_refuses_fast_but_wrong_outputs_and_says_why(monkeypatch):
    vitb = load_variant("ckd_vitb_mce")
    lines = []

    def auto() -> str:
        lines.clear()
        return runtime.auto_precision(CPU, vitb, on_refused=lines.append)

    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(runtime, "cpu_bf16_probe", lambda: Probe(17.0, 0.2))
    monkeypatch.setattr(runtime, "cpu_int8_probe", lambda: Probe(3.5, 0.014))
    assert auto() == "int8"
    assert lines == [
        "precision auto: bf16 refused: its outputs differ from fp32 by 0.200 relative (tolerance 0.03) on this CPU's "
        "probe product, though 17.0x as fast"
    ]
    monkeypatch.setattr(runtime, "cpu_int8_probe", lambda: Probe(3.5, 0.089))  # int8 saturating without VNNI
    assert auto() == "fp32" and len(lines) == 2 and lines[1].startswith("precision auto: int8 refused: its outputs differ")
    monkeypatch.setattr(runtime, "cpu_int8_probe", lambda: Probe(3.5, float("nan")))
    assert auto() == "fp32" and "differ from fp32 by nan" in lines[1]
    monkeypatch.setattr(runtime, "cpu_bf16_probe", lambda: Probe(1.2, 0.004))
    monkeypatch.setattr(runtime, "cpu_int8_probe", lambda: Probe(unavailable="not x86_64: this CPU is aarch64"))
    assert auto() == "fp32"
    assert lines == [
        "precision auto: bf16 refused: 1.20x fp32's speed on this CPU (needs 1.3x)",
        "precision auto: int8 refused: not x86_64: this CPU is aarch64",
    ]
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(runtime, "cpu_int8_probe", lambda: Probe(3.5, 0.021))  # 7-bit activations: accurate
    assert auto() == "int8" and lines == ["precision auto: bf16 refused: no AVX-512 BF16 or AMX instructions on this CPU"]
    assert runtime.auto_precision(CUDA, vitb, on_refused=pytest.fail) == "fp16"  # nothing probed, nothing refused


@pytest.fixture
def fresh_probes():
    """The probes run again in this test and again after it, so what a test patched does not stay cached."""
    caches = (int8.int8_support, runtime.cpu_int8_probe, runtime.cpu_bf16_probe)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


@pytest.mark.parametrize("probe", ["cpu_bf16_probe", "cpu_int8_probe"])
def test_probes_measure_speed_and_accuracy_once(probe, fresh_probes):
    fn = getattr(runtime, probe)
    result = fn()
    if probe == "cpu_int8_probe" and not int8_available():
        assert result.speedup == 0.0 and result.unavailable == int8_support().reason != ""
        return
    assert not result.unavailable and 0.0 < result.speedup < 100.0
    # Rounding is visible but within tolerance: bf16 measured 0.0035, int8 0.014 (0.021 with 7-bit activations).
    assert 0.0 < result.error < runtime.AUTO_TOLERANCE, result
    assert fn() is result  # measured once, then cached


@pytest.mark.skipif(not int8_available(), reason=f"int8 unavailable here: {int8_support().reason}")
def test_auto_refuses_int8_whose_kernel_is_wrong_however_it_is_run(monkeypatch, fresh_probes):
    """A kernel that is fast but off by 20 % with 8-bit and 7-bit activations alike: the probes find
    it, auto falls back to fp32 and says why. Off only with 8-bit activations (a CPU without VNNI),
    int8 stays usable with 7-bit ones."""
    vitb, kernel = load_variant("ckd_vitb_mce"), torch.ops.quantized.linear_dynamic

    def wrong(only_8bit: bool):
        def linear_dynamic(x, packed, reduce_range):
            y = kernel(x, packed, reduce_range)
            return y if reduce_range and only_8bit else y + 0.2 * y.abs().amax()

        return linear_dynamic

    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(torch.ops.quantized, "linear_dynamic", wrong(only_8bit=False))
    lines = []
    assert runtime.auto_precision(CPU, vitb, on_refused=lines.append) == "fp32"
    assert lines[-1].startswith("precision auto: int8 refused: int8 kernels not within 0.03 of fp32 on this CPU:"), lines
    assert "with 7-bit" in lines[-1] and not int8_available()
    for cache in (int8.int8_support, runtime.cpu_int8_probe):
        cache.cache_clear()
    monkeypatch.setattr(torch.ops.quantized, "linear_dynamic", wrong(only_8bit=True))
    support, probe = int8_support(), runtime.cpu_int8_probe()
    assert support.available and support.reduce_range and not probe.unavailable
    assert probe.error < runtime.AUTO_TOLERANCE, probe


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
