"""Online RGB-T tracking with a CKD network (the official ``lib/test/tracker/ckd.py``, docs/tracker.md).

Per frame: crop both modalities around the previous box (factor 4, one geometry from the RGB
image), normalise, run the network, decode the box through the network's head with a Hann window
(the CENTER head weights its score map with it), map back to the image and clip. The template is
the first frame's and is never updated, as in the official tracker. Additions of ours: a
confidence (``score``), a ``lost`` flag, per-stage timings and a preprocessing path that stays on
the GPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ckd_ros.errors import ConfigError, InputError
from ckd_ros.model import TrackedModel
from ckd_ros.model.cuda_graphs import GraphedForward
from ckd_ros.runtime import autocast, check_precision, convert_weights, resolve_device
from ckd_ros.tracker.geometry import Box, clip_box, crop_numpy, crop_torch, crop_window, hann_window, map_back

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESS_MODES = ("auto", "cpu", "torch")


@dataclass
class TrackerConfig:
    """Tracker settings; the defaults are the official ones (plus our confidence/lost rule).

    ``precision`` fp16/bf16 with ``cast_weights`` (default) stores the weights in that type once,
    which on CPUs with native bf16 is much faster than autocast (autocast re-casts every weight on
    every call); ``cast_weights=False`` uses autocast and leaves the model untouched. ``int8``
    (CPU only) converts the model's heavy layers to int8 GEMMs once (``CKDNet.quantize_int8``).
    ``fused_attention`` uses the SDPA kernel in blocks without elimination (equal up to rounding).
    ``stack_branches`` runs the RGB and TIR branches as one batched computation (bit-exact on CPU
    in fp32; halves the kernel launches, which is what bounds a batch-1 forward on a GPU).

    ``score_threshold`` / ``lost_frames``: the target is reported lost after that many consecutive
    frames whose raw score-map peak is below the threshold, and found again on the first frame
    above it. ``preprocess``: ``cpu`` crops with OpenCV exactly as the official code; ``torch``
    crops with tensor ops on the model's device (one upload per frame, no CPU resize); ``auto``
    picks ``torch`` on CUDA and ``cpu`` otherwise.

    ``cuda_graphs`` replays the forward as a CUDA graph captured on the first tracked frame
    (``model/cuda_graphs.py``: one launch instead of hundreds, which bound a batch-1 forward on a
    GPU; the same kernels, so the same outputs). Where it cannot (a CPU device, autocast, a failed
    capture) the forward runs eagerly and ``CKDTracker.cuda_graphs_status`` says why; it never
    raises. Off by default like the other fast paths, so a bare tracker keeps the official eager
    path; the node's ``cuda_graphs`` parameter turns it on for CUDA (``resolve_cuda_graphs``).
    """

    template_factor: float = 2.0
    search_factor: float = 4.0
    clip_margin: float = 10.0
    score_threshold: float = 0.25
    lost_frames: int = 10
    precision: str = "fp32"
    preprocess: str = "auto"
    cast_weights: bool = True
    fused_attention: bool = False
    stack_branches: bool = False
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if not isinstance(self.cuda_graphs, bool):
            raise ConfigError(f"cuda_graphs must be True or False, got {self.cuda_graphs!r} (resolve auto/on/off first)")
        if self.preprocess not in PREPROCESS_MODES:
            raise ConfigError(f"preprocess {self.preprocess!r} is not one of {PREPROCESS_MODES}")
        if self.template_factor <= 0 or self.search_factor <= 0:
            raise ConfigError("template_factor and search_factor must be positive")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"score_threshold {self.score_threshold} is not in [0, 1]")
        if self.lost_frames < 1:
            raise ConfigError(f"lost_frames {self.lost_frames} must be at least 1")
        if self.precision == "int8" and self.stack_branches:
            raise ConfigError("stack_branches needs float weights; int8 runs the branches one by one")


@dataclass(frozen=True)
class TrackResult:
    """One frame's answer. ``box``: (x, y, w, h) in image pixels. ``score``: the head's raw
    (un-windowed) confidence in [0, 1] that the target is in the search crop (``BoxHead.score``:
    the CENTER head's score-map peak)."""

    box: Box
    score: float
    lost: bool
    frame: int
    timing_ms: dict[str, float] = field(default_factory=dict)
    valid: bool = True
    """False when the network's output was not finite (NaN/inf weights or inputs): the frame is a
    failure, ``box`` is the last good box, ``lost`` is True and the score NaN."""


def check_pair(rgb: np.ndarray, tir: np.ndarray) -> tuple[int, int]:
    """Both images HxWx3 uint8 of one size (the model needs pixel-aligned pairs); returns (H, W)."""
    for name, img in (("rgb", rgb), ("tir", tir)):
        if not isinstance(img, np.ndarray):
            raise InputError(f"{name} image must be a numpy array, got {type(img).__name__}")
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise InputError(f"{name} image must be HxWx3 uint8 (RGB order), got shape {img.shape} dtype {img.dtype}")
        if img.shape[0] == 0 or img.shape[1] == 0:
            raise InputError(f"{name} image is empty ({img.shape})")
    if rgb.shape != tir.shape:
        raise InputError(
            f"rgb {rgb.shape[:2]} and thermal {tir.shape[:2]} images differ in size; register them first "
            "(ckd_ros.preprocess.Aligner: resize or homography)"
        )
    return rgb.shape[0], rgb.shape[1]


def check_box(box: object, image_hw: tuple[int, int]) -> Box:
    """A finite (x, y, w, h) with w, h > 0 that overlaps the image and is no larger than it.

    The size bound matters: the crops are a fixed multiple of the box, so one init box of
    30000 px on a 640x480 frame would ask for a crop of tens of GiB on every later frame."""
    try:
        values = tuple(float(v) for v in box)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InputError(f"box must be four numbers (x, y, w, h), got {box!r}") from None
    if len(values) != 4:
        raise InputError(f"box must be four numbers (x, y, w, h), got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"box {values} has a NaN or infinite value")
    x, y, w, h = values
    if w <= 0 or h <= 0:
        raise InputError(f"box {values} has zero or negative size")
    height, width = image_hw
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise InputError(f"box {values} lies outside the {width}x{height} image")
    if w > width or h > height:
        raise InputError(f"box {values} is larger than the {width}x{height} image")
    return values


class CKDTracker:
    """``initialize(rgb, tir, box)`` then ``track(rgb, tir)`` per frame; images HxWx3 uint8 RGB.

    The tracker takes the model over, through ``TrackedModel``'s members only: it moves it to
    ``device``, puts it in eval mode, converts its weights in place for ``precision`` (int8 through
    ``quantize_int8``, for good), and sets ``fused_attention`` and ``stack_branches``. Converting a
    copy would double the memory of a ViT-B model on a robot, so these fast paths change the caller's
    object instead; a caller that needs the model as it was passes ``copy.deepcopy(model)``.
    """

    def __init__(
        self,
        model: TrackedModel,
        device: str | torch.device | None = None,
        config: TrackerConfig | None = None,
        **overrides: object,
    ) -> None:
        self.config = config or TrackerConfig()
        if overrides:
            self.config = TrackerConfig(**{**self.config.__dict__, **overrides})
        self.device = resolve_device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        if self.config.precision == "int8" or self.config.cast_weights:
            if self.device.type == "cpu" and self.config.precision == "fp16":
                raise ConfigError("fp16 is only supported on CUDA; use bf16 on CPU")
            convert_weights(self.model, self.config.precision)  # in place: the fast path owns the model
        self.model.fused_attention = self.config.fused_attention
        self.model.stack_branches(self.config.stack_branches)  # after the cast: it copies the weights
        self.dtype = next(self.model.parameters()).dtype
        self.graphed = GraphedForward(self.model, enabled=self.config.cuda_graphs)
        cfg = model.cfg
        self.template_size, self.search_size, self.feat = cfg.template_size, cfg.search_size, cfg.search_feat
        self.head = model.box_head  # decodes the box and reads the confidence (model/head.py)
        self.window = hann_window(self.feat).to(self.device)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        mode = self.config.preprocess
        self.use_torch_crop = mode == "torch" or (mode == "auto" and self.device.type == "cuda")
        self.state: Box | None = None
        self.image_hw: tuple[int, int] | None = None
        self.templates: tuple[torch.Tensor, torch.Tensor] | None = None
        self.frame = 0
        self.low_count = 0

    @property
    def initialized(self) -> bool:
        return self.state is not None

    @property
    def cuda_graphs_status(self) -> str:
        """One line for logs: ``cuda graph: …`` while frames replay a graph, else ``eager: <why>``."""
        return self.graphed.status

    def reset(self) -> None:
        """Forget the target; ``track`` raises until the next ``initialize``."""
        self.state, self.templates, self.frame, self.low_count, self.image_hw = None, None, 0, 0, None

    def _normalise(self, patch: torch.Tensor) -> torch.Tensor:
        return ((patch / 255.0 - self.mean) / self.std).to(self.dtype)

    def _crops(self, rgb: np.ndarray, tir: np.ndarray, box: Box, factor: float, out: int) -> tuple[torch.Tensor, ...]:
        """Both modalities cropped with the RGB window, normalised, (1, 3, out, out) each; and rf."""
        win = crop_window(box, factor, rgb.shape[:2])
        crops = []
        for img in (rgb, tir):
            if self.use_torch_crop:
                frame = torch.from_numpy(img).to(self.device, non_blocking=True).permute(2, 0, 1)
                patch = crop_torch(frame, win, out)
            else:
                patch = torch.from_numpy(crop_numpy(img, win, out)).to(self.device).float().permute(2, 0, 1).unsqueeze(0)
            crops.append(self._normalise(patch))
        return crops[0], crops[1], out / win.size

    def initialize(self, rgb: np.ndarray, tir: np.ndarray, box: Box) -> TrackResult:
        """Store the first-frame templates (nothing runs through the network at init)."""
        hw = check_pair(rgb, tir)
        box = check_box(box, hw)
        z_rgb, z_tir, _ = self._crops(rgb, tir, box, self.config.template_factor, self.template_size)
        self.templates = (z_rgb, z_tir)
        self.state, self.frame, self.low_count, self.image_hw = box, 0, 0, hw
        return TrackResult(box=box, score=1.0, lost=False, frame=0)

    def track(self, rgb: np.ndarray, tir: np.ndarray) -> TrackResult:
        if self.state is None or self.templates is None:
            raise InputError("track() called before initialize(): no target")
        height, width = check_pair(rgb, tir)
        if (height, width) != self.image_hw:
            ih, iw = self.image_hw or (0, 0)
            raise InputError(
                f"frame is {width}x{height} but the target was initialised on {iw}x{ih} frames; "
                "the box cannot be carried across sizes (re-initialise)"
            )
        t0 = time.perf_counter()
        x_rgb, x_tir, rf = self._crops(rgb, tir, self.state, self.config.search_factor, self.search_size)
        t1 = time.perf_counter()
        converted = self.dtype != torch.float32 or self.config.precision == "int8"
        with torch.inference_mode(), autocast(self.device, "fp32" if converted else self.config.precision):
            out = self.graphed(self.templates[0], self.templates[1], x_rgb, x_tir)
        t2 = time.perf_counter()
        with torch.inference_mode():
            maps = {key: value.float() for key, value in out.items()}
            pred = self.head.decode(maps, self.window)
            box_crop = (pred.view(-1, 4).mean(dim=0) * self.search_size / rf).tolist()
            score = float(self.head.score(maps).max())
        if not (math.isfinite(score) and all(math.isfinite(v) for v in box_crop)):
            return self._failed_frame(self.state, t0, t1, t2)
        box = clip_box(map_back(box_crop, self.state, self.search_size, rf), height, width, self.config.clip_margin)
        self.state = box
        self.frame += 1
        self.low_count = self.low_count + 1 if score < self.config.score_threshold else 0
        t3 = time.perf_counter()
        timing = {"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        return TrackResult(
            box=box, score=score, lost=self.low_count >= self.config.lost_frames, frame=self.frame, timing_ms=timing
        )

    def _failed_frame(self, box: Box, t0: float, t1: float, t2: float) -> TrackResult:
        """A non-finite network output: no box can be trusted, so the target is lost at once (NaN
        compares false with every threshold, so the low-score rule alone would never say so) and
        the state stays at the last good box for when the outputs recover."""
        self.frame += 1
        self.low_count = max(self.low_count, self.config.lost_frames)
        timing = {"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3, "postprocess": 0.0}
        return TrackResult(box=box, score=float("nan"), lost=True, frame=self.frame, timing_ms=timing, valid=False)
