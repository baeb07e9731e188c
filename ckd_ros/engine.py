"""The tracking engine: model + tracker + the runtime choices + the CUDA fallback, built one way.

The node, ``ckd-ros track``, ``eval run``, the demo (through the node) and the benchmarks all build
their tracker here, from the same names (the node's parameter names; the CLI's flags map onto
them), so a choice — which device, which precision ``auto`` picks, whether to stack the branches,
CUDA graphs, how many threads, what to do when CUDA fails — is made in one place. The node then
only adapts messages, threads and parameters to it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ckd_ros.errors import CKDError
from ckd_ros.model import load_model
from ckd_ros.model.cuda_graphs import resolve_cuda_graphs
from ckd_ros.resources import shipped_model
from ckd_ros.runtime import auto_precision, auto_stack_branches, inference_threads, resolve_device
from ckd_ros.tracker import CKDTracker, TrackResult
from ckd_ros.tracker.geometry import Box

# What a CUDA failure says (OutOfMemoryError aside): driver, cuDNN/cuBLAS, kernel and assert errors.
CUDA_FAILURE = re.compile(r"CUDA|cuda|cuDNN|CUDNN|cuBLAS|CUBLAS|NVRTC|device-side assert|out of memory")
Log = Callable[[str], None]


def is_cuda_failure(exc: BaseException, device: torch.device) -> bool:
    """Whether ``exc`` is the GPU failing (out of memory, a driver or kernel error) rather than a bug
    or bad input, which moving to the CPU would not cure. torch < 2.8 has no AcceleratorError and
    raises a plain RuntimeError naming CUDA."""
    if device.type != "cuda" or isinstance(exc, CKDError):
        return False
    typed = (torch.cuda.OutOfMemoryError, *([torch.AcceleratorError] if hasattr(torch, "AcceleratorError") else []))
    return isinstance(exc, typed) or (isinstance(exc, RuntimeError) and bool(CUDA_FAILURE.search(str(exc))))


@dataclass
class EngineConfig:
    """The runtime choices, under the node's parameter names (``config/ckd_tracker.yaml`` documents
    each; ``ros/params.py`` declares them with ranges and allowed values)."""

    checkpoint: str = ""  # empty: the shipped model
    model_variant: str = ""  # for a bare state_dict; empty: inferred
    ce_mode: str = ""  # mce, ce, none; empty: the checkpoint's
    device: str = "auto"
    precision: str = "auto"  # auto, fp32, fp16, bf16, int8
    stack_branches: str = "auto"  # auto, on, off
    fused_attention: bool = True
    cuda_graphs: str = "auto"  # auto, on, off
    cpu_threads: int = 0  # 0: one less than the cores (a ROS executor keeps one)
    allow_cpu_fallback: bool = True
    trust_pickle: bool = False
    score_threshold: float = 0.25
    lost_frames: int = 10
    preprocess: str = "auto"  # crops: auto (on the GPU with CUDA), cpu (OpenCV, the official arithmetic), torch

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EngineConfig:
        """The fields of ``values`` this config knows (the node's parameter dict has many more)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


class TrackingEngine:
    """``initialize`` / ``track`` like a ``CKDTracker``, plus the runtime choices and the CUDA
    fallback. ``log`` receives one line per decision worth telling (auto's refusals, the CUDA
    graph status after the first frame, a fallback); ``warn`` the ones that mean something is
    wrong; ``on_fallback(reason)`` lets a caller count a fallback (the node's health)."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        model: torch.nn.Module | None = None,
        log: Log = print,
        warn: Log | None = None,
        on_fallback: Log | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.log, self.warn = log, warn or log
        self.on_fallback = on_fallback
        self.fallback_reason: str | None = None
        self._graphs_reported = False
        cfg = self.config
        try:
            device = resolve_device(cfg.device)
        except CKDError as exc:
            if not cfg.allow_cpu_fallback:
                raise
            self.warn(f"{exc}; falling back to CPU")
            device = torch.device("cpu")
        if device.type == "cpu":
            torch.set_num_threads(inference_threads(cfg.cpu_threads))
        model = self._load_model(device) if model is None else model.to(device)
        self.precision = auto_precision(device, model.cfg, self._refused) if cfg.precision == "auto" else cfg.precision
        stack = cfg.stack_branches == "on"
        if cfg.stack_branches == "auto":
            stack = auto_stack_branches(device, model.cfg, self.precision)
        self.tracker = CKDTracker(
            model,
            device=device,
            precision=self.precision,
            score_threshold=cfg.score_threshold,
            lost_frames=cfg.lost_frames,
            fused_attention=cfg.fused_attention,
            stack_branches=stack,
            cuda_graphs=resolve_cuda_graphs(cfg.cuda_graphs, device),
            preprocess=cfg.preprocess,
        )

    def _load_model(self, device: torch.device) -> torch.nn.Module:
        c = self.config
        return load_model(
            c.checkpoint or shipped_model(),
            device=device,
            variant=c.model_variant or None,
            ce_mode=c.ce_mode or None,
            trust_pickle=c.trust_pickle,
        )

    def _refused(self, line: str) -> None:
        """auto passed over a reduced precision: too slow here is news, wrong here is a warning."""
        (self.warn if "differ from fp32" in line else self.log)(line)

    # -- what callers read ---------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.tracker.device

    @property
    def initialized(self) -> bool:
        return self.tracker.initialized

    def describe(self) -> str:
        """One line: model, device, precision (and whether auto chose it), stacking, threads."""
        cfg = self.tracker.config
        extras = [cfg.precision + (" (auto)" if self.config.precision == "auto" else "")]
        extras += ["stacked branches"] if cfg.stack_branches else []
        if self.device.type == "cpu":
            n = torch.get_num_threads()
            extras.append(f"{n} thread{'s' if n > 1 else ''}")
        return f"model {self.tracker.model.cfg.name} on {self.device} ({', '.join(extras)})"

    # -- tracking ------------------------------------------------------------------------------
    def initialize(self, rgb: np.ndarray, tir: np.ndarray, box: Box) -> TrackResult:
        """Set the target. A CUDA failure here (the template forward is the first real GPU work,
        where an out-of-memory shows first) moves to the CPU as in ``track``, with this box."""
        try:
            return self.tracker.initialize(rgb, tir, box)
        except Exception as exc:
            if not self._can_fall_back(exc):
                raise
            self._move_to_cpu(exc)
            return self.tracker.initialize(rgb, tir, box)

    def reset(self) -> None:
        self.tracker.reset()

    def track(self, rgb: np.ndarray, tir: np.ndarray) -> TrackResult:
        """One frame. On a CUDA failure (with ``allow_cpu_fallback``) the model moves to the CPU and
        the target is re-initialised on this frame at its last box, which is this frame's answer."""
        try:
            result = self.tracker.track(rgb, tir)
        except Exception as exc:
            if not self._can_fall_back(exc):
                raise
            return self.fallback_to_cpu(exc, rgb, tir)
        if not self._graphs_reported and self.tracker.config.cuda_graphs:  # the first frame captured, or could not
            self._graphs_reported = True
            status = self.tracker.cuda_graphs_status
            (self.warn if status.startswith("eager") and self.config.cuda_graphs == "on" else self.log)(f"cuda_graphs: {status}")
        return result

    def _can_fall_back(self, exc: BaseException) -> bool:
        return self.config.allow_cpu_fallback and is_cuda_failure(exc, self.tracker.device)

    def fallback_to_cpu(self, exc: BaseException, rgb: np.ndarray, tir: np.ndarray) -> TrackResult:
        """The model in fp32 on the CPU, the target re-initialised on this frame at its current box."""
        box = self.tracker.state
        reason = self._move_to_cpu(exc)
        if box is None:
            raise CKDError(f"CUDA failed ({reason}) before a target was set; the model now runs on the CPU")
        return self.tracker.initialize(rgb, tir, box)

    def _move_to_cpu(self, exc: BaseException) -> str:
        """A fresh fp32 CPU tracker; returns the reason. A CUDA context that is broken for good (a
        device-side assert) cannot even copy the weights out: then the model is read again from its
        file."""
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        self.fallback_reason = reason
        self.warn(f"CUDA failed ({reason}); moving the model to the CPU (fp32)")
        old = self.tracker
        torch.set_num_threads(inference_threads(self.config.cpu_threads))
        try:
            model = old.model.to("cpu", torch.float32)
        except Exception as move_exc:  # a broken context fails every copy off the device
            self.warn(f"the weights could not be copied off the GPU ({type(move_exc).__name__}); reloading the model file")
            model = self._load_model(torch.device("cpu"))
        stack = auto_stack_branches(torch.device("cpu"), model.cfg)
        config = replace(old.config, precision="fp32", preprocess="cpu", stack_branches=stack, cuda_graphs=False)
        self.tracker = CKDTracker(model, device="cpu", config=config)
        self.precision = "fp32"
        if self.on_fallback is not None:
            self.on_fallback(reason)
        return reason


def all_cores() -> int:
    """Threads for a process that runs no ROS executor beside inference (the CLI, benchmarks)."""
    return os.cpu_count() or 1
