"""The CKD forward replayed as a CUDA graph, with an eager fallback that always says why.

A batch-1 forward of ViT-B CKD is a few hundred small kernels; on a big GPU the host cannot launch
them as fast as the GPU runs them, so the forward is bound by launch overhead, not arithmetic.
Its shapes are static at a fixed batch (MCE keeps 180 → 126 → 89 search tokens whatever the
image) and it reads nothing back to the host (``elimination.py`` ranks and gathers on the
device), so the whole forward can be captured once as a CUDA graph and replayed per frame as a
single launch. Replay runs the same kernels on the same addresses, so it computes what eager
computes; a check at capture time holds it to that.

``GraphedForward`` owns static input buffers. The templates are fixed per target, so they are
copied only when the caller hands over different template tensors (a new target); the search
crops are copied every call. The outputs are the graph's own tensors, overwritten by the next
replay: use or copy them before calling again (the tracker turns them into Python numbers within
the frame).

It runs eagerly instead, keeping a one-line reason (``status``) for logs and diagnostics, when:
switched off; the inputs are not on a CUDA device; autocast or autograd is on (autocast's weight
cache and gradients do not survive replay); a capture or its check failed (eager from then on:
retrying would pay a failed capture every frame); or a call's input shapes, dtypes or devices
differ from the captured ones (eager for that call, the graph kept for calls that match again).
A model switched to another path after capture (elimination mode, fused attention, stacked
branches, weights cast or moved) is captured again at its next call: the old graph would replay
the old kernels on the old weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ckd_ros.errors import ConfigError
from ckd_ros.precisions import CUDA_GRAPH_SETTINGS

# A replay may differ from the eager warm-up call only by float rounding (it is expected to be
# bit-exact: same kernels, same launch parameters); more means the capture baked in something it
# should not have, and the runner stays eager.
REPLAY_RTOL = 1e-3
REPLAY_ATOL = 1e-4

Outputs = dict[str, Tensor]


def resolve_cuda_graphs(setting: str, device: torch.device) -> bool:
    """A ``cuda_graphs`` setting (node parameter, CLI flag) → the tracker's switch. ``auto``: on for
    a CUDA device; ``on``: on everywhere, so that where it cannot run (a CPU device, a failed
    capture) the tracker's ``cuda_graphs_status`` reports the refusal the user should hear about;
    ``off``: never."""
    if setting not in CUDA_GRAPH_SETTINGS:
        raise ConfigError(f"cuda_graphs {setting!r} is not one of {CUDA_GRAPH_SETTINGS}")
    return setting == "on" or (setting == "auto" and device.type == "cuda")


class GraphBackend(Protocol):
    """Capture and replay, behind a seam so the runner's rules can be tested without a GPU."""

    def unavailable(self, device: torch.device) -> str: ...

    def capture(self, fn: Callable[[], Outputs], warmup: int, device: torch.device) -> tuple[Any, Outputs, Outputs]: ...

    def replay(self, handle: Any) -> None: ...


@contextlib.contextmanager
def _syncs_are_errors() -> Iterator[None]:
    """Make any host synchronisation raise (``torch.cuda.set_sync_debug_mode``). A sync inside
    a capture invalidates it and can leave the CUDA context unusable; caught in the eager warm-up
    it is a clean refusal instead."""
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


class CudaGraphBackend:
    """``torch.cuda.CUDAGraph``: warm-up on a side stream, capture, replay on the current stream."""

    def unavailable(self, device: torch.device) -> str:
        if device.type != "cuda":
            return f"{device.type} device: CUDA graphs need a CUDA device"
        return ""

    def capture(self, fn: Callable[[], Outputs], warmup: int, device: torch.device) -> tuple[Any, Outputs, Outputs]:
        """Returns (handle, the graph's static outputs, the last warm-up call's outputs).

        The warm-up calls do the one-time work a capture must not contain (cuBLAS handles and
        workspaces, kernel selection) on a side stream, as the PyTorch recipe asks, with host
        syncs turned into errors. ``thread_local`` capture: another thread's CUDA calls (a ROS
        callback, a second tracker) neither break this capture nor are broken by it. Everything
        runs with the inputs' device current, so a model on ``cuda:1`` is captured and replayed
        on the streams that its inputs were written on."""
        with torch.cuda.device(device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            reference: Outputs = {}
            with torch.cuda.stream(side), _syncs_are_errors():
                for _ in range(max(1, warmup)):
                    reference = fn()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                outputs = fn()
        return (graph, device), outputs, reference

    def replay(self, handle: Any) -> None:
        graph, device = handle
        with torch.cuda.device(device):
            graph.replay()


def _autocast_on(device_type: str) -> bool:
    """``torch.is_autocast_enabled(device_type)`` (torch ≥ 2.4) with the older per-device calls."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def _signature(inputs: tuple[Tensor, ...]) -> tuple[tuple[tuple[int, ...], torch.dtype, torch.device], ...]:
    return tuple((tuple(x.shape), x.dtype, x.device) for x in inputs)


def _model_key(model: nn.Module) -> tuple:
    """What the captured kernels depend on besides the inputs: the config (elimination), the
    fast-path switches, and where and in what type the weights live (a cast or a move re-allocates
    them; a graph would go on reading the old addresses). Modules are compared by identity, and
    holding them here keeps a replaced one from lending its id to the next."""
    first = next(model.parameters(), None)
    weights = (first.data_ptr(), first.dtype, first.device) if first is not None else None
    switches = tuple(getattr(model, name, None) for name in ("cfg", "fused_attention", "stacked", "fused_head", "int8"))
    return (*switches, weights)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


class GraphedForward:
    """``model(template_rgb, template_tir, search_rgb, search_tir)`` through a CUDA graph where
    it can, eagerly where it cannot (module doc). Call it like the model; ``status`` says which."""

    def __init__(self, model: nn.Module, enabled: bool = True, warmup: int = 3, backend: GraphBackend | None = None) -> None:
        self.model = model
        self.enabled = enabled
        self.warmup = warmup
        self.backend: GraphBackend = backend or CudaGraphBackend()
        self.reason = "" if enabled else "cuda_graphs off"
        self.captures = 0
        self.replays = 0
        self.replay_error = 0.0  # max |replay - eager| found by the capture-time check
        self._failure = ""
        self._handle: Any = None
        self._static: list[Tensor] = []
        self._outputs: Outputs = {}
        self._signature: tuple = ()
        self._key: tuple = ()
        self._templates: tuple[Tensor | None, Tensor | None] = (None, None)

    @property
    def active(self) -> bool:
        """True when the last call was a replay (or the capture that replayed it)."""
        return self._handle is not None and not self.reason

    @property
    def status(self) -> str:
        if self.active:
            return f"cuda graph: captured {self.captures}x, {self.replays} replays"
        return f"eager: {self.reason or 'not called yet'}"

    def reset(self) -> None:
        """Drop the graph and its memory pool, and forget a failed capture: the next call captures
        again (after the caller fixed what made it fail)."""
        self._handle, self._static, self._outputs, self._signature, self._key = None, [], {}, (), ()
        self._templates = (None, None)
        self._failure = ""

    def _refusal(self, inputs: tuple[Tensor, ...]) -> str:
        if not self.enabled:
            return "cuda_graphs off"
        if self._failure:
            return self._failure
        device = inputs[0].device
        if why := self.backend.unavailable(device):
            return why
        if _autocast_on(device.type):
            return "autocast is on (cast_weights=False): graphs replay cast weights only"
        if torch.is_grad_enabled():
            return "autograd is on: graphs are captured for inference (inference_mode or no_grad)"
        if self._handle is not None and _signature(inputs) != self._signature:
            shapes = ", ".join("x".join(map(str, s)) for s, _, _ in _signature(inputs))
            return f"inputs ({shapes}) differ from the captured ones: eager for these, the graph kept"
        return ""

    def __call__(self, template_rgb: Tensor, template_tir: Tensor, search_rgb: Tensor, search_tir: Tensor) -> Outputs:
        inputs = (template_rgb, template_tir, search_rgb, search_tir)
        self.reason = self._refusal(inputs)
        if not self.reason and (self._handle is None or _model_key(self.model) != self._key):
            self.reason = self._capture(inputs)
            if not self.reason:
                return dict(self._outputs)  # the capture's check replayed exactly these inputs
        if self.reason:
            return self.model(*inputs)
        with torch.inference_mode():
            for i in (0, 1):  # the templates: once per target (the caller hands over new tensors)
                if inputs[i] is not self._templates[i]:
                    self._static[i].copy_(inputs[i])
            self._templates = (template_rgb, template_tir)
            self._static[2].copy_(search_rgb)
            self._static[3].copy_(search_tir)
            self.backend.replay(self._handle)
        self.replays += 1
        return dict(self._outputs)

    def _capture(self, inputs: tuple[Tensor, ...]) -> str:
        """Capture with ``inputs`` as the first static contents; "" on success, else the reason
        (kept: later calls run eagerly without trying again)."""
        self.reset()
        try:
            with torch.inference_mode():
                self._static = [x.detach().clone() for x in inputs]
                self._handle, self._outputs, reference = self.backend.capture(
                    lambda: self.model(*self._static), self.warmup, inputs[0].device
                )
                self.backend.replay(self._handle)
                self.replay_error, agrees = _agreement(self._outputs, reference)
        except Exception as exc:  # any failure to capture leaves the eager path, which has its own errors
            self.reset()
            self._failure = f"capture failed ({_first_line(exc)})"
            return self._failure
        if not agrees:
            self.reset()
            self._failure = f"replay differs from eager by {self.replay_error:.3g} at capture"
            return self._failure
        self._signature = _signature(inputs)
        self._key = _model_key(self.model)
        self._templates = (inputs[0], inputs[1])
        self.captures += 1
        return ""


def _agreement(replayed: Outputs, eager: Outputs) -> tuple[float, bool]:
    """Largest |replayed - eager| over all outputs, and whether they agree within the replay
    tolerance (NaN where eager has NaN counts as agreeing: a model can output NaN)."""
    if replayed.keys() != eager.keys():
        return float("inf"), False
    worst, agrees = 0.0, True
    for key, ref in eager.items():
        got = replayed[key]
        if got.shape != ref.shape:
            return float("inf"), False
        diff = torch.nan_to_num((got.float() - ref.float()).abs(), nan=0.0, posinf=0.0)
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
        agrees = agrees and torch.allclose(got.float(), ref.float(), rtol=REPLAY_RTOL, atol=REPLAY_ATOL, equal_nan=True)
    return worst, agrees
