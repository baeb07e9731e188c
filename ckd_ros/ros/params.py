"""The node's parameters, declared up front with descriptors (ranges, read-only, allowed values).

Read-only parameters shape the node at start (model, device, topics' QoS, pairing); the others
can be changed at run time with ``ros2 param set``. Every value, from any source (``-p``, a
parameter file, ``parameter_overrides=``, a launch argument, ``ros2 param set``), goes through
``Param.coerce``: integers are accepted where doubles are declared (people type ``slop:=1`` and
``homography:=[1,0,0,0,1,0,0,0,1]``), and a wrong type, length, range or choice is refused with one
line naming the parameter, the value and what is allowed. This module imports no ROS package and
no torch at import time, so the launch-argument conversion (``launch_args``) can use it anywhere;
the allowed values come from the modules that implement them (``precisions``, ``preprocess``,
``viz``: NumPy and OpenCV, which the node needs anyway), so a mode is named in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ckd_ros.errors import ConfigError
from ckd_ros.precisions import CE_MODES, CUDA_GRAPH_SETTINGS, DEVICES, PRECISIONS, STACK_SETTINGS
from ckd_ros.preprocess.align import ALIGN_MODES
from ckd_ros.preprocess.thermal import AGC_MODES
from ckd_ros.viz import LAYOUTS


class _Refused(Exception):
    """Internal: a value cannot be converted to the declared type; ``Param.coerce`` words the error."""


def _number(value: Any) -> float:
    # bool is an int in Python, but `slop:=true` is a mistake, not 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Refused("is not a number")
    return float(value)


def _as_float(value: Any) -> float:
    number = _number(value)
    if not math.isfinite(number):
        raise _Refused("is not a finite number")
    return number


def _as_int(value: Any) -> int:
    number = _number(value)
    if not number.is_integer():
        raise _Refused("is not a whole number")
    return int(number)


def _as_bool(value: Any) -> bool:
    # 1 and 0 are the other words launch's IfCondition takes for true and false, so -p debug_image:=1
    # (an integer to rcl) means what the same word means as a launch argument
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _Refused("is not true or false")


def _as_str(value: Any, choices: tuple[str, ...]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        # rcl reads `-p stack_branches:=on` (and off, yes, no) as a YAML 1.1 boolean
        if "on" in choices and "off" in choices:
            return "on" if value else "off"
        raise _Refused("is a boolean, not text (quote it: '...')")
    if isinstance(value, (int, float)):
        return str(value)  # `class_id:=7` reaches the node as the integer 7
    raise _Refused("is not text")


def _as_floats(value: Any) -> list[float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):  # array.array (rclpy's arrays) is a Sequence
        raise _Refused("is not a list of numbers")
    try:
        return [_as_float(v) for v in value]
    except _Refused:
        raise _Refused("is not a list of finite numbers") from None


def _shown(value: Any) -> str:
    """A value as the one-line error shows it: text quoted, arrays (rclpy gives array.array) as lists."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)


def _init_box_rule(box: list[float]) -> str | None:
    """x and y may be negative (a target entering the frame); a box needs both sides, w = 0 means none."""
    _, _, w, h = box
    if w < 0 or h < 0 or (w > 0 and h == 0):
        return "needs w >= 0 and h >= 0, and h > 0 when w > 0 (x, y, w, h; w = 0: no box)"
    return None


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    lo: float | None = None  # for a list: the range of each number
    hi: float | None = None
    read_only: bool = False
    lengths: tuple[int, ...] = ()
    rule: Callable[[Any], str | None] | None = None  # a constraint ranges cannot express; None or the reason

    def descriptor(self):
        """The rcl ParameterDescriptor. Run-time parameters are dynamically typed so that rclpy lets
        ``ros2 param set NAME 1`` reach the node's callback, which converts and validates it with
        ``coerce`` (rclpy's static typing would refuse an integer for a double before any callback);
        read-only ones cannot be set after start-up, so they keep the type of their value."""
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

        d = ParameterDescriptor(description=self.description, read_only=self.read_only, dynamic_typing=not self.read_only)
        if self.choices:
            d.additional_constraints = "one of: " + self._choices_text()
        if self.lengths:
            d.additional_constraints = f"{' or '.join(map(str, self.lengths))} numbers" + (
                f", each in [{self.lo}, {self.hi}]" if self.lo is not None else ""
            )
        if self.lo is not None and not self.lengths and isinstance(self.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(self.lo), to_value=float(self.hi), step=0.0)]
        elif self.lo is not None and not self.lengths and isinstance(self.default, int) and not isinstance(self.default, bool):
            d.integer_range = [IntegerRange(from_value=int(self.lo), to_value=int(self.hi), step=1)]
        return d

    def help_text(self) -> str:
        """The description with the allowed values appended, so that the parameter file and the launch
        arguments list the choices from the tuple the code validates against, never a retyped copy."""
        return self.description + (f" ({', '.join(c or '<empty>' for c in self.choices)})" if self.choices else "")

    def _choices_text(self) -> str:
        return ", ".join(c or "''" for c in self.choices)

    def coerce(self, value: Any) -> Any:
        """``value`` converted to the declared type (int → float, int list → float list, on/off read
        as booleans by rcl → text), or ConfigError with one line ``name=value <what is allowed>``."""
        try:
            if isinstance(self.default, bool):
                converted: Any = _as_bool(value)
            elif isinstance(self.default, int):
                converted = _as_int(value)
            elif isinstance(self.default, float):
                converted = _as_float(value)
            elif isinstance(self.default, str):
                converted = _as_str(value, self.choices)
            else:
                converted = _as_floats(value)
        except _Refused as exc:
            raise ConfigError(f"{self.name}={_shown(value)} {exc}{self._expected()}") from None
        reason = self._violation(converted)
        if reason:
            raise ConfigError(f"{self.name}={_shown(value)} {reason}")
        return converted

    def _expected(self) -> str:
        if self.lengths:
            return f" (needs {' or '.join(map(str, self.lengths))} numbers)"
        if self.choices:
            return f" (one of: {self._choices_text()})"
        return ""

    def _violation(self, value: Any) -> str | None:
        if self.choices and value not in self.choices:
            return f"is not one of: {self._choices_text()}"
        if self.lengths and len(value) not in self.lengths:
            return f"needs {' or '.join(map(str, self.lengths))} numbers, got {len(value)}"
        if self.lo is not None and self.lengths and not all(self.lo <= v <= self.hi for v in value):
            return f"needs every number in [{self.lo}, {self.hi}]"
        if self.lo is not None and not self.lengths and not (self.lo <= value <= self.hi):
            return f"is outside [{self.lo}, {self.hi}]"
        return self.rule(value) if self.rule else None


# How an image stream arrives (image_transport's names): raw sensor_msgs/Image, or
# sensor_msgs/CompressedImage on "<topic>/compressed".
IMAGE_TRANSPORTS = ("raw", "compressed")

PARAMS: tuple[Param, ...] = (
    Param("checkpoint", "", "model file; empty = the shipped small model in models/", read_only=True),
    Param("model_variant", "", "variant for a bare state_dict (e.g. ckd_vitb_mce); empty = inferred", read_only=True),
    Param("device", "auto", "auto: CUDA if present", DEVICES, read_only=True),
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
        "token elimination override; empty = the checkpoint's",
        ("", *CE_MODES),
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
        "run both branches as one batched computation; auto: on CUDA, and for small models on CPU",
        STACK_SETTINGS,
        read_only=True,
    ),
    Param(
        "cuda_graphs",
        "auto",
        "replay the batch-1 forward as a CUDA graph; auto: on for CUDA; where it cannot, eager with the reason logged",
        CUDA_GRAPH_SETTINGS,
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
        "rgb_transport",
        "raw",
        "RGB input: raw (sensor_msgs/Image on rgb/image) or compressed (sensor_msgs/CompressedImage, jpeg or png, "
        "on <rgb/image>/compressed as image_transport names it; decoded in the worker)",
        IMAGE_TRANSPORTS,
        read_only=True,
    ),
    Param(
        "thermal_transport",
        "raw",
        "thermal input: raw or compressed (as rgb_transport; 16-bit thermal needs png)",
        IMAGE_TRANSPORTS,
        read_only=True,
    ),
    Param(
        "thermal_agc",
        "percentile",
        "16-bit thermal AGC",
        AGC_MODES,
    ),
    Param("agc_low_percentile", 1.0, "percentile AGC: low limit", lo=0.0, hi=100.0),
    Param("agc_high_percentile", 99.0, "percentile AGC: high limit", lo=0.0, hi=100.0),
    Param("agc_ema", 0.2, "percentile AGC: weight of the newest frame's limits (1 = no smoothing)", lo=0.001, hi=1.0),
    Param("agc_fixed_min", 0.0, "fixed AGC: raw value mapped to black", lo=0.0, hi=65535.0),
    Param("agc_fixed_max", 65535.0, "fixed AGC: raw value mapped to white", lo=0.0, hi=65535.0),
    Param(
        "alignment",
        "none",
        "thermal→RGB registration; none: the sizes must match",
        ALIGN_MODES,
    ),
    Param("homography", [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "3x3 TIR→RGB pixel homography, row-major", lengths=(9,)),
    Param("score_threshold", 0.25, "score below which a frame counts as low-confidence", lo=0.0, hi=1.0),
    Param("lost_frames", 10, "consecutive low-confidence frames before the target is reported lost", lo=1, hi=100000),
    Param("class_id", "target", "results[0].hypothesis.class_id of the detections"),
    Param(
        "init_box",
        [0.0, 0.0, 0.0, 0.0],
        "x, y, w, h (RGB px) to track from the next pair; w = 0: none",
        lengths=(4,),
        rule=_init_box_rule,
    ),
    Param(
        "init_point_box_size",
        [64.0, 64.0],
        "w, h of the box centred on a clicked point (~/init_point)",
        lo=1.0,
        hi=10000.0,
        lengths=(2,),
    ),
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
    Param("debug_layout", "side_by_side", "debug image layout; side_by_side: RGB | thermal", LAYOUTS),
    Param("no_pair_warn_seconds", 1.0, "WARN in /diagnostics when no synchronized pair arrived for this long", lo=0.1, hi=3600.0),
    Param(
        "input_loss_warn",
        0.05,
        "WARN in /diagnostics when more than this fraction of a camera's frames never arrived (gaps in its header stamps)",
        lo=0.0,
        hi=1.0,
    ),
    Param("diagnostics_period", 0.5, "seconds between /diagnostics messages", lo=0.05, hi=60.0, read_only=True),
)

BY_NAME = {p.name: p for p in PARAMS}


def declare_all(node) -> dict[str, Any]:
    """Declare every parameter with the value the node will use, and return those values.

    rclpy types a parameter by its default, so an override of another type (``slop:=1`` from
    ``-p``, a parameter file or ``parameter_overrides=``) raises InvalidParameterTypeException
    inside ``declare_parameter``, and public rclpy (Humble included) cannot read an override
    before declaring. So each parameter is first declared dynamically typed, which takes any
    override as given; that value goes through ``Param.coerce`` (ConfigError, one line, on a bad
    one) and the parameter is declared again, with its real descriptor and the converted value
    (``ignore_override``): ``ros2 param get`` then shows what the node uses (``slop`` = 1.0).
    """
    from rcl_interfaces.msg import ParameterDescriptor

    values: dict[str, Any] = {}
    for p in PARAMS:
        given = node.declare_parameter(p.name, p.default, ParameterDescriptor(dynamic_typing=True)).value
        node.undeclare_parameter(p.name)
        values[p.name] = p.coerce(given)
        node.declare_parameter(p.name, values[p.name], p.descriptor(), ignore_override=True)
    return values


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
        "# Keyed for the node in any namespace (a plain 'ckd_tracker:' would not apply under namespace:=...).",
        "/**/ckd_tracker:",
        "  ros__parameters:",
    ]
    for p in PARAMS:
        value = yaml_value(p.default)
        lines.append(f"    # {p.help_text()}{' [read-only]' if p.read_only else ''}")
        lines.append(f"    {p.name}: {value}")
    return "\n".join(lines) + "\n"
