"""Template/search pair sampling with jitter and augmentation (docs/training.md, "Data" and "Masking"), from any reader.

A *source* is anything with ``len()``, ``boxes`` ((L, 4) x, y, w, h; w or h ≤ 0 marks an absent
target) and ``frame(i)`` → (rgb, tir) uint8 HxWx3: the synthetic world, or a dataset reader. A
source may also have ``template_ok`` ((L,) bool): templates are then drawn only from those frames,
as at tracking time, where the template is the clean first frame (the synthetic world marks its
``normal`` frames; dataset readers have no such mark and sample templates as the official code).
Sample number k is drawn from a generator seeded by (seed, k) alone, and batch ``step`` of rank r
in a world of W ranks holds samples [(step·W + r)·B, (step·W + r + 1)·B): a batch depends only on
its step number (resuming reproduces the same next batch), ranks never draw the same pair (the
split ``DistributedSampler`` makes), and a DataLoader worker can build any sample on its own.

A frame that does not decode (a truncated jpg in a 300 000-frame dataset) must not end a run hours
in: its sequence is dropped *in the process that met it*, the sample is redrawn, and the count
travels with the sample (``bad_frames``) to the training log.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ckd_ros.errors import InputError
from ckd_ros.tracker.geometry import crop_numpy, crop_window
from ckd_ros.tracker.tracker import IMAGENET_MEAN, IMAGENET_STD


class PairSource(Protocol):
    boxes: np.ndarray

    def __len__(self) -> int: ...

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class SamplerConfig:
    template_size: int = 128
    search_size: int = 256
    patch_size: int = 16
    template_factor: float = 2.0
    search_factor: float = 4.0
    max_interval: int = 200
    center_jitter: float = 3.0
    scale_jitter: float = 0.25
    grey_prob: float = 0.05
    flip_prob: float = 0.5
    brightness: float = 0.2
    mask_ratio: float = 0.25  # masked modelling: each search token dropped with this probability
    # share of samples that are masked at all (the intended meaning: docs/training.md "Masking", docs/official-quirks.md)
    mask_prob: float = 1.0


def _visible(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def _label(box: np.ndarray, centre: np.ndarray, rf: float, out: int) -> np.ndarray:
    """The GT box in normalised crop coordinates: centre (out−1)/2 + (c − c_crop)·rf (OSTrack)."""
    c = box[:2] + box[2:] / 2
    wh = box[2:] * rf
    cc = (out - 1) / 2 + (c - centre) * rf
    return np.concatenate([cc - wh / 2, wh]) / out


class PairSampler:
    def __init__(
        self,
        sources: Sequence[PairSource] | Callable[[int], PairSource],
        num_sources: int,
        config: SamplerConfig,
        seed: int = 42,
    ) -> None:
        self.get = sources if callable(sources) else sources.__getitem__
        self.num_sources, self.cfg, self.seed = num_sources, config, seed
        self.bad: set[int] = set()  # sources with a frame that did not decode, in this process
        self.mean = np.array(IMAGENET_MEAN, np.float32)
        self.std = np.array(IMAGENET_STD, np.float32)

    def _pick(self, rng: np.random.Generator) -> tuple[int, PairSource, int, int]:
        for _ in range(100):
            index = int(rng.integers(self.num_sources))
            if index in self.bad:
                continue
            src = self.get(index)
            vis = np.flatnonzero(_visible(src.boxes))
            if len(src) < 20 or len(vis) <= 4:
                continue
            ok = getattr(src, "template_ok", None)
            tvis = vis if ok is None else vis[np.asarray(ok)[vis]]
            if len(tvis) == 0:
                continue
            t = int(rng.choice(tvis))
            gap = 0
            while True:  # a visible search frame after the template, widening the window as needed
                hi = min(len(src), t + self.cfg.max_interval + gap + 1)
                cand = vis[(vis > t) & (vis < hi)]
                if len(cand):
                    return index, src, t, int(rng.choice(cand))
                if hi >= len(src):
                    break
                gap += 5
        raise RuntimeError("no sequence with enough visible frames to sample from")

    def _crop_set(
        self, rng: np.random.Generator, images: list[np.ndarray], box: np.ndarray, factor: float, out: int, jitter: bool
    ) -> tuple[list[np.ndarray], np.ndarray] | None:
        """Crop both modalities around a (jittered) box; None if the target falls outside the crop."""
        c = box[:2] + box[2:] / 2
        wh = box[2:]
        if jitter:
            wh = wh * np.exp(rng.standard_normal(2) * self.cfg.scale_jitter)
            c = c + math.sqrt(wh[0] * wh[1]) * self.cfg.center_jitter * (rng.random(2) - 0.5)
        ext = np.concatenate([c - wh / 2, wh])
        try:
            win = crop_window(tuple(ext.tolist()), factor, images[0].shape[:2])
        except Exception:
            return None
        rf = out / win.size
        label = _label(box, c, rf, out)
        centre = label[:2] + label[2:] / 2
        if not (0 <= centre[0] < 1 and 0 <= centre[1] < 1):
            return None
        crops = [crop_numpy(img, win, out) for img in images]
        return crops, label

    def _augment_set(
        self, rng: np.random.Generator, crops: list[np.ndarray], label: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Brightness U(0.8, 1.2) then a horizontal flip, shared by both modalities of the set."""
        b = rng.uniform(1 - self.cfg.brightness, 1 + self.cfg.brightness)
        out = [np.clip(c.astype(np.float32) * b / 255.0, 0.0, 1.0) for c in crops]
        if rng.random() < self.cfg.flip_prob:
            out = [c[:, ::-1] for c in out]
            label = label.copy()
            label[0] = 1.0 - label[0] - label[2]
        return [(c - self.mean) / self.std for c in out], label

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        cfg = self.cfg
        bad_frames = 0
        for _ in range(100):
            index, src, t, s = self._pick(rng)
            try:
                frames = [src.frame(t), src.frame(s)]
            except InputError:
                self.bad.add(index)
                bad_frames += 1
                continue
            boxes = [np.asarray(src.boxes[t], np.float64), np.asarray(src.boxes[s], np.float64)]
            grey = rng.random() < cfg.grey_prob
            flip = rng.random() < cfg.flip_prob
            for k, (rgb, tir) in enumerate(frames):
                if grey:
                    g = rgb.mean(axis=2, keepdims=True).astype(np.uint8)
                    rgb = np.repeat(g, 3, axis=2)
                if flip:
                    rgb, tir = rgb[:, ::-1], tir[:, ::-1]
                    boxes[k] = boxes[k].copy()
                    boxes[k][0] = rgb.shape[1] - boxes[k][0] - boxes[k][2]
                frames[k] = (np.ascontiguousarray(rgb), np.ascontiguousarray(tir))
            tmpl = self._crop_set(rng, list(frames[0]), boxes[0], cfg.template_factor, cfg.template_size, jitter=False)
            srch = self._crop_set(rng, list(frames[1]), boxes[1], cfg.search_factor, cfg.search_size, jitter=True)
            if tmpl is None or srch is None:
                continue
            (z_rgb, z_tir), z_label = self._augment_set(rng, *tmpl)
            (x_rgb, x_tir), x_label = self._augment_set(rng, *srch)
            n_tokens = (cfg.search_size // cfg.patch_size) ** 2
            masked = cfg.mask_ratio > 0 and rng.random() < cfg.mask_prob
            keep = rng.random(n_tokens) > cfg.mask_ratio if masked else np.ones(n_tokens, bool)
            return {
                "template_rgb": z_rgb,
                "template_tir": z_tir,
                "search_rgb": x_rgb,
                "search_tir": x_tir,
                "template_anno": z_label.astype(np.float32),
                "search_anno": x_label.astype(np.float32),
                "search_keep": keep,
                "bad_frames": np.int64(bad_frames),
            }
        raise RuntimeError("could not draw a valid training pair in 100 tries")

    def sample_number(self, k: int) -> dict[str, np.ndarray]:
        """Sample number ``k`` of the run: a function of (seed, k) only."""
        return self.sample(np.random.default_rng((self.seed, k)))

    def batch(self, step: int, size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        """Batch number ``step`` of ``rank``: (B, 3, H, W) normalised crops, (B, 4) labels, (B, Ls) keep mask."""
        first = (step * world + rank) * size
        return collate([self.sample_number(first + i) for i in range(size)])


def collate(samples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch; images HWC → CHW."""
    out = {}
    for key in samples[0]:
        arr = np.stack([s[key] for s in samples])
        if arr.ndim == 4:  # B, H, W, C → B, C, H, W
            arr = arr.transpose(0, 3, 1, 2)
        out[key] = torch.from_numpy(np.ascontiguousarray(arr))
    return out
