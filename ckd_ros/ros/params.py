"""The node's parameters, declared up front with descriptors (ranges, read-only, allowed values).

Read-only parameters shape the node at start (model, device, topics' QoS, pairing); the others
can be changed at run time with ``ros2 param set`` and are validated with a reason on rejection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ckd_ros.precisions import PRECISIONS


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    lo: float | None = None
    hi: float | None = None
    read_only: bool = False
    lengths: tuple[int, ...] = ()

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.lengths:
            d.additional_constraints = f"{' or '.join(map(str, self.lengths))} numbers"
        if self.lo is not None and isinstance(self.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(self.lo), to_value=float(self.hi), step=0.0)]
        elif self.lo is not None and isinstance(self.default, int) and not isinstance(self.default, bool):
            d.integer_range = [IntegerRange(from_value=int(self.lo), to_value=int(self.hi), step=1)]
        return d

    def check(self, value: Any) -> str | None:
        """None when valid, else the reason."""
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
        if self.lengths and len(value) not in self.lengths:
            return f"{self.name} needs {' or '.join(map(str, self.lengths))} numbers, got {len(value)}"
        if self.lo is not None and not self.lengths and not (self.lo <= value <= self.hi):
            return f"{self.name}={value} is outside [{self.lo}, {self.hi}]"
        return None


PARAMS: tuple[Param, ...] = (
    Param("checkpoint", "", "model file; empty = the shipped small model in models/", read_only=True),
    Param("model_variant", "", "variant for a bare state_dict (e.g. ckd_vitb_mce); empty = inferred", read_only=True),
    Param("device", "auto", "auto (CUDA if present), cpu or cuda", ("auto", "cpu", "cuda"), read_only=True),
    Param(
        "cpu_threads",
        0,
        "torch CPU threads for inference; 0 = one less than the cores (the executor keeps a core)",
        lo=0,
        hi=256,
        read_only=True,
    ),
    Param(
        "precision",
        "auto",
        "auto = fp16 on CUDA; for ViT-B on a CPU bf16 or int8 where measured faster; else fp32 (int8: CPU only)",
        ("auto", *PRECISIONS),
        read_only=True,
    ),
    Param(
        "ce_mode",
        "",
        "token elimination override: mce, ce, none; empty = the checkpoint's",
        ("", "mce", "ce", "none"),
        read_only=True,
    ),
    Param(
        "fused_attention",
        True,
        "fused SDPA attention where no elimination happens (faster; equal up to rounding)",
        read_only=True,
    ),
    Param(
        "stack_branches",
        "auto",
        "run both branches as one batched computation: auto (CUDA, and small models on CPU), on, off",
        ("auto", "on", "off"),
        read_only=True,
    ),
    Param("allow_cpu_fallback", True, "move to CPU if CUDA fails or runs out of memory", read_only=True),
    Param("slop", 0.05, "max stamp difference (s) of a synchronized RGB/thermal pair", lo=0.0005, hi=2.0, read_only=True),
    Param("queue_size", 10, "messages per stream kept while waiting for a partner", lo=1, hi=1000, read_only=True),
    Param(
        "qos_reliability",
        "best_effort",
        "input QoS: best_effort (sensor data) or reliable",
        ("best_effort", "reliable"),
        read_only=True,
    ),
    Param("qos_depth", 5, "input QoS history depth", lo=1, hi=1000, read_only=True),
    Param(
        "thermal_agc",
        "percentile",
        "16-bit thermal AGC: percentile, minmax, fixed, none",
        ("percentile", "minmax", "fixed", "none"),
    ),
    Param("agc_low_percentile", 1.0, "percentile AGC: low limit", lo=0.0, hi=100.0),
    Param("agc_high_percentile", 99.0, "percentile AGC: high limit", lo=0.0, hi=100.0),
    Param("agc_ema", 0.2, "percentile AGC: weight of the newest frame's limits (1 = no smoothing)", lo=0.001, hi=1.0),
    Param("agc_fixed_min", 0.0, "fixed AGC: raw value mapped to black", lo=0.0, hi=65535.0),
    Param("agc_fixed_max", 65535.0, "fixed AGC: raw value mapped to white", lo=0.0, hi=65535.0),
    Param(
        "alignment",
        "none",
        "thermal→RGB registration: none (sizes must match), resize, homography",
        ("none", "resize", "homography"),
    ),
    Param("homography", [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "3x3 TIR→RGB pixel homography, row-major", lengths=(9,)),
    Param("score_threshold", 0.25, "score below which a frame counts as low-confidence", lo=0.0, hi=1.0),
    Param("lost_frames", 10, "consecutive low-confidence frames before the target is reported lost", lo=1, hi=100000),
    Param("class_id", "target", "results[0].hypothesis.class_id of the detections"),
    Param("init_box", [0.0, 0.0, 0.0, 0.0], "x, y, w, h (RGB px) to track from the next pair; w = 0: none", lengths=(4,)),
    Param("init_point_box_size", [64.0, 64.0], "w, h of the box centred on a clicked point (~/init_point)", lengths=(2,)),
    Param(
        "init_max_wait",
        2.0,
        "an ~/init or ~/init_point stamped more than this (s) ahead of or behind the camera stamps "
        "(clocks differ, e.g. wall vs sim time) is applied to the next pair, with a warning",
        lo=0.0,
        hi=3600.0,
    ),
    Param("debug_image", True, "publish ~/debug_image when someone subscribes"),
    Param("debug_rate", 10.0, "max debug image rate (Hz)", lo=0.1, hi=1000.0),
    Param("debug_layout", "side_by_side", "side_by_side (RGB | thermal) or blend", ("side_by_side", "blend")),
    Param("no_pair_warn_seconds", 1.0, "WARN in /diagnostics when no synchronized pair arrived for this long", lo=0.1, hi=3600.0),
    Param("diagnostics_period", 0.5, "seconds between /diagnostics messages", lo=0.05, hi=60.0, read_only=True),
)

BY_NAME = {p.name: p for p in PARAMS}


def declare_all(node) -> dict[str, Any]:
    for p in PARAMS:
        node.declare_parameter(p.name, p.default, p.descriptor())
    return {p.name: node.get_parameter(p.name).value for p in PARAMS}


def yaml_value(value: Any) -> str:
    """A parameter value as one line of YAML: the parameter file, and ``-p name:=value``."""
    import yaml

    return '""' if value == "" else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def yaml_text() -> str:
    """config/ckd_tracker.yaml, generated from PARAMS (regenerate after changing them:
    ``python -c "from ckd_ros.ros.params import yaml_text; print(yaml_text(), end='')" > config/ckd_tracker.yaml``)."""
    lines = [
        "# ckd_tracker parameters (ros2 launch ckd_ros ckd_tracker.launch.py, or ckd-ros launch).",
        "# Every parameter is also a launch argument of the same name. Descriptions: ros2 param describe.",
        "ckd_tracker:",
        "  ros__parameters:",
    ]
    for p in PARAMS:
        value = yaml_value(p.default)
        choices = f" ({', '.join(c or '<empty>' for c in p.choices)})" if p.choices else ""
        lines.append(f"    # {p.description}{choices}{' [read-only]' if p.read_only else ''}")
        lines.append(f"    {p.name}: {value}")
    return "\n".join(lines) + "\n"
