"""A seeded synthetic RGB-T world that carries the modality gap CKD is about.

Each sequence is a camera panning over a scene, rendered twice:

* **RGB**: a high-frequency textured background (multi-scale colour noise, "buildings"); the
  target is a patterned sprite (two colours, stripes or checks);
* **thermal**: a smooth, mostly cool background with a few warm patches; the target is a warm
  body with a vertical temperature gradient. Its *shape* is the same in both, its *appearance* is
  not: what identifies it in one modality says nothing in the other.

The target drifts with momentum, bounces off the frame edges and changes scale smoothly. The
sequence is cut into segments, each with a scenario:

================  =======================================================================
scenario          what happens
================  =======================================================================
``normal``        both modalities informative (every sequence starts with one, for init)
``night``         RGB is nearly black with sensor noise: only thermal sees the target
``glare``         a saturating glare blob over the target region: RGB is useless there
``crossover``     the target's temperature equals its surroundings: thermal is useless
``occlusion``     a bar crosses in front of the target in both modalities
``distractor``    look-alikes nearby: RGB twins that are cold, and warm bodies of another colour
================  =======================================================================

Rendering a 240x320 pair costs about a millisecond, so training draws pairs on the fly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SCENARIOS = ("normal", "night", "glare", "crossover", "occlusion", "distractor")
GAP_SCENARIOS = ("night", "glare", "crossover")


@dataclass(frozen=True)
class SynthConfig:
    height: int = 240
    width: int = 320
    length: int = 150
    margin: int = 160  # background canvas border for camera panning
    min_size: float = 20.0
    max_size: float = 48.0


@dataclass
class _Body:
    """One moving object: trajectory, size over time, sprites and a mask per modality."""

    xy: np.ndarray  # (L, 2) centre per frame
    size: np.ndarray  # (L, 2) w, h per frame
    rgb: np.ndarray  # sprite (h0, w0, 3) uint8
    tir: np.ndarray  # sprite (h0, w0) float32 temperature
    mask: np.ndarray  # (h0, w0) float32 alpha


_NOISE_BANK: dict[tuple[int, int], np.ndarray] = {}


def _noise(h: int, w: int, k: int) -> np.ndarray:
    """Unit sensor noise (h, w, 3) from a fixed bank of 8 frames: per-frame randomness without the
    cost of drawing 230k normals per frame."""
    if (h, w) not in _NOISE_BANK:
        _NOISE_BANK[(h, w)] = np.random.default_rng(12345).normal(0, 1, (8, h, w, 3)).astype(np.float32)
    return _NOISE_BANK[(h, w)][k % 8]


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, channels: int = 1) -> np.ndarray:
    small = rng.random((cells, max(2, cells * w // h), channels)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)


def _rgb_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bg = np.zeros((h, w, 3), np.float32)
    bg += 40.0
    for cells, weight in ((4, 100.0), (16, 40.0), (64, 15.0)):
        bg += _smooth_noise(rng, h, w, cells, 3) * weight
    for _ in range(int(rng.integers(6, 14))):  # "buildings", "cars": hard edges, muted colours
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, 90)), y0 + int(rng.integers(10, 90))
        grey = rng.uniform(40, 200)
        colour = grey + rng.uniform(-30, 30, 3)
        cv2.rectangle(bg, (x0, y0), (x1, y1), tuple(float(c) for c in colour), -1)
    bg += rng.normal(0, 5, (h, w, 3)).astype(np.float32)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _tir_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bg = 70 + _smooth_noise(rng, h, w, 5)[:, :, 0] * 50
    for _ in range(int(rng.integers(2, 6))):  # warm patches: engines, windows, sun-heated walls
        warm = np.zeros((h, w), np.float32)
        cv2.circle(warm, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(8, 40)), 1.0, -1)
        bg += cv2.GaussianBlur(warm, (0, 0), 6) * rng.uniform(30, 80)
    return bg.astype(np.float32)


def _sprite(
    rng: np.random.Generator, colours: np.ndarray | None = None, hot: float | None = None, size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb pattern, temperature map, alpha mask) of an ellipse-like body, at a canonical 64 px."""
    mask = np.zeros((size, size), np.float32)
    if rng.random() < 0.5:
        cv2.ellipse(mask, (size // 2, size // 2), (size // 2 - 2, size // 2 - 2), 0, 0, 360, 1.0, -1)
    else:
        cv2.rectangle(mask, (3, 3), (size - 4, size - 4), 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.0)
    if colours is None:  # a saturated hue and a dark counter-colour: what a person wears, a car's paint
        hue = rng.uniform(0, 180)
        hsv = np.array([[[hue, 255, 240], [(hue + 90) % 180, 200, 60]]], np.uint8)
        colours = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float64)
    yy, xx = np.mgrid[0:size, 0:size]
    period = int(rng.integers(6, 16))
    if rng.random() < 0.5:
        sel = ((yy // period) % 2).astype(bool)
    else:
        sel = (((yy // period) + (xx // period)) % 2).astype(bool)
    rgb = np.where(sel[:, :, None], colours[0], colours[1]).astype(np.float32)
    rgb += rng.normal(0, 6, rgb.shape)
    hot = rng.uniform(170, 235) if hot is None else hot
    tir = hot - 25.0 * (yy / size) + rng.normal(0, 3, (size, size))  # head warmer than feet
    return np.clip(rgb, 0, 255).astype(np.uint8), tir.astype(np.float32), mask


def _trajectory(
    rng: np.random.Generator, cfg: SynthConfig, start: np.ndarray, base: np.ndarray, speed: float
) -> tuple[np.ndarray, np.ndarray]:
    n = cfg.length
    xy = np.zeros((n, 2))
    size = np.zeros((n, 2))
    pos, vel = start.astype(float), rng.normal(0, speed, 2)
    log_scale = 0.0
    scale_vel = 0.0
    for i in range(n):
        vel = 0.9 * vel + rng.normal(0, speed * 0.35, 2)
        pos = pos + vel
        scale_vel = 0.9 * scale_vel + rng.normal(0, 0.01)
        log_scale = float(np.clip(log_scale + scale_vel, math.log(0.6), math.log(1.7)))
        wh = base * math.exp(log_scale)
        for k, lim in ((0, cfg.width), (1, cfg.height)):
            lo, hi = wh[k] / 2 + 2, lim - wh[k] / 2 - 2
            if pos[k] < lo or pos[k] > hi:
                vel[k] = -vel[k]
                pos[k] = min(max(pos[k], lo), hi)
        xy[i], size[i] = pos, wh
    return xy, size


def _segments(rng: np.random.Generator, length: int, focus: str | None) -> list[tuple[int, int, str]]:
    """Scenario segments; the first is always ``normal`` so that initialisation is fair."""
    lo, hi = min(20, length // 4), length - min(15, length // 5)
    if hi - lo < 4:
        return [(0, length, "normal")]
    cuts = sorted(rng.choice(np.arange(lo, hi), size=int(rng.integers(2, 4)), replace=False).tolist())
    bounds = [0, *cuts, length]
    out = []
    for k in range(len(bounds) - 1):
        if k == 0:
            name = "normal"
        elif focus is not None and k % 2 == 1:
            name = focus
        else:
            name = str(rng.choice(SCENARIOS))
        out.append((bounds[k], bounds[k + 1], name))
    return out


class SyntheticSequence:
    """One seeded RGB-T sequence: ``frame(i)`` → (rgb, tir) uint8 HxWx3; ``boxes`` (L, 4) x, y, w, h."""

    def __init__(self, seed: int, config: SynthConfig | None = None, focus: str | None = None) -> None:
        cfg = self.cfg = config or SynthConfig()
        rng = self.rng = np.random.default_rng(seed)
        self.seed = seed
        h, w, m = cfg.height, cfg.width, cfg.margin
        self.rgb_bg = _rgb_background(rng, h + 2 * m, w + 2 * m)
        self.tir_bg = _tir_background(rng, h + 2 * m, w + 2 * m)
        steps = rng.normal(0, 1.2, (cfg.length, 2)).cumsum(axis=0)
        self.camera = np.clip(steps, -m + 1, m - 1).astype(int)
        self.segments = _segments(rng, cfg.length, focus)
        self.scenario = np.empty(cfg.length, dtype=object)
        for a, b, name in self.segments:
            self.scenario[a:b] = name
        side = rng.uniform(cfg.min_size, cfg.max_size)
        aspect = rng.uniform(0.5, 1.8)
        base = np.array([side * math.sqrt(aspect), side / math.sqrt(aspect)])
        start = rng.uniform([w * 0.25, h * 0.25], [w * 0.75, h * 0.75])
        target_rgb, target_tir, mask = _sprite(rng)
        self.target = _Body(*_trajectory(rng, cfg, start, base, rng.uniform(0.8, 2.5)), target_rgb, target_tir, mask)
        self.distractors = []
        for k in range(int(rng.integers(3, 5))):
            if k % 2 == 0:  # an RGB twin that is cold in thermal
                spr = _sprite(
                    rng,
                    colours=rng.permutation(np.stack([target_rgb[0, 0], target_rgb[-1, -1]]).astype(float)),
                    hot=float(rng.uniform(80, 110)),
                )
            else:  # a warm body with other colours
                spr = _sprite(rng, hot=float(rng.uniform(170, 230)))
            near = self.target.xy[0] + rng.normal(0, 40, 2)
            traj = _trajectory(
                rng, cfg, np.clip(near, [20, 20], [w - 20, h - 20]), base * rng.uniform(0.8, 1.2), rng.uniform(0.8, 2.5)
            )
            self.distractors.append((_Body(*traj, *spr), k < 1))  # the first one is present all the time
        self.occluder_x = rng.uniform(-0.5, 0.5)
        self.boxes = np.concatenate([self.target.xy - self.target.size / 2, self.target.size], axis=1)
        self.template_ok = self.scenario == "normal"  # training draws templates where both modalities see

    def __len__(self) -> int:
        return self.cfg.length

    def _paste(self, rgb: np.ndarray, tir: np.ndarray, body: _Body, i: int, temp: float | None) -> None:
        w, h = (max(2, round(v)) for v in body.size[i])
        x0, y0 = round(body.xy[i][0] - w / 2), round(body.xy[i][1] - h / 2)
        H, W = tir.shape
        xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
        if xb <= xa or yb <= ya:
            return
        crop = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
        a = cv2.resize(body.mask, (w, h))[crop]
        s_rgb = cv2.resize(body.rgb, (w, h))[crop].astype(np.float32)
        roi = rgb[ya:yb, xa:xb]
        roi[:] = roi * (1 - a[:, :, None]) + s_rgb * a[:, :, None]
        s_tir = cv2.resize(body.tir, (w, h))[crop] if temp is None else np.full_like(a, temp)
        troi = tir[ya:yb, xa:xb]
        troi[:] = troi * (1 - a) + s_tir * a

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        k = self.seed * 7919 + i  # per-frame noise choice: any frame renders alone, reproducibly
        m, (cx, cy) = cfg.margin, self.camera[i]
        rows, cols = slice(m + cy, m + cy + cfg.height), slice(m + cx, m + cx + cfg.width)
        rgb = self.rgb_bg[rows, cols].astype(np.float32)
        tir = self.tir_bg[rows, cols].copy()
        scen = self.scenario[i]
        for body, always in self.distractors:
            if always or scen == "distractor":
                self._paste(rgb, tir, body, i, None)
        tx, ty = self.target.xy[i]
        tw, th = self.target.size[i]
        crossover_temp = None
        if scen == "crossover":  # as warm as what surrounds it
            y0, y1 = int(max(0, ty - th)), int(min(cfg.height, ty + th))
            x0, x1 = int(max(0, tx - tw)), int(min(cfg.width, tx + tw))
            crossover_temp = float(np.median(tir[y0:y1, x0:x1])) if y1 > y0 and x1 > x0 else float(tir.mean())
        self._paste(rgb, tir, self.target, i, crossover_temp)
        if scen == "occlusion":
            a, b = next((a, b) for a, b, n in self.segments if a <= i < b)
            frac = (i - a) / max(1, b - a - 1)
            ox = tx + (frac - 0.5 + self.occluder_x * 0.2) * 4 * tw
            half = max(6, 0.6 * tw)
            x0, x1 = int(max(0, ox - half)), int(min(cfg.width, ox + half))
            rgb[:, x0:x1] = rgb[:, x0:x1] * 0.2 + 90
            tir[:, x0:x1] = 75.0
        if scen == "night":
            rgb = rgb * 0.06 + 5 * _noise(cfg.height, cfg.width, k + 3)
        elif scen == "glare":
            yy, xx = np.ogrid[: cfg.height, : cfg.width]
            r = 1.5 * max(tw, th) + 25
            blob = np.exp(-((xx - tx) ** 2 + (yy - ty) ** 2) / (2 * r * r)).astype(np.float32)
            rgb = rgb * (1 - blob[:, :, None]) + 255 * blob[:, :, None] * 1.4
        rgb = rgb + 3 * _noise(cfg.height, cfg.width, k)
        tir = tir + 2 * _noise(cfg.height, cfg.width, k + 1)[:, :, 0]
        rgb8 = np.clip(rgb, 0, 255).astype(np.uint8)
        tir8 = np.clip(tir, 0, 255).astype(np.uint8)
        return rgb8, np.repeat(tir8[:, :, None], 3, axis=2)


def write_sequence(seq: SyntheticSequence, folder: str | Path) -> Path:
    """LasHeR layout: visible/ and infrared/ jpgs, visible.txt, infrared.txt, init.txt, scenario.txt."""
    folder = Path(folder)
    (folder / "visible").mkdir(parents=True, exist_ok=True)
    (folder / "infrared").mkdir(parents=True, exist_ok=True)
    for i in range(len(seq)):
        rgb, tir = seq.frame(i)
        cv2.imwrite(
            str(folder / "visible" / f"v{i:06d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
        )
        cv2.imwrite(str(folder / "infrared" / f"i{i:06d}.jpg"), tir[:, :, 0], [cv2.IMWRITE_JPEG_QUALITY, 92])
    lines = "".join(",".join(f"{v:.2f}" for v in b) + "\n" for b in seq.boxes)
    for name in ("visible.txt", "infrared.txt", "init.txt"):
        (folder / name).write_text(lines)
    (folder / "scenario.txt").write_text("".join(f"{s}\n" for s in seq.scenario))
    return folder


SUITE_SEEDS = range(10_000, 10_030)  # held out: training draws seeds below 10 000


def suite_sequence(k: int, length: int | None = None) -> tuple[str, SyntheticSequence]:
    """The k-th held-out test sequence: each gap scenario is the focus of an equal share."""
    focus = focus_of(k)
    n = length or 120 + (k * 37) % 121  # 120..240 frames
    seq = SyntheticSequence(SUITE_SEEDS[k], SynthConfig(length=n), focus=focus)
    return f"synth{k:03d}_{focus}", seq


def write_suite(root: str | Path, count: int = 30, length: int | None = None, progress: bool = True) -> list[Path]:
    """Write the held-out suite (default 30 sequences) in the LasHeR layout under ``root``."""
    from tqdm import tqdm

    root = Path(root)
    out = []
    for k in tqdm(range(count), desc="synthetic suite", unit="seq", disable=not progress):
        name, seq = suite_sequence(k, length)
        out.append(write_sequence(seq, root / name))
    return out


def focus_of(k: int) -> str:
    """The gap scenario the k-th sequence of a focused set concentrates on (night, glare, …)."""
    return SCENARIOS[1 + k % (len(SCENARIOS) - 1)]


class SyntheticPool:
    """Training sequences by index (seeds ``offset + i``, below the held-out suite's), built lazily
    and kept: building one (its scene and trajectories) costs far more than rendering a frame.

    ``focus="cycle"`` gives every sequence a focus scenario in turn, as the held-out suite has
    (other seeds): gap segments are then as frequent in training as in the test; ``"none"`` draws
    every segment's scenario uniformly.
    """

    def __init__(self, count: int, length: int = 150, offset: int = 0, focus: str = "none") -> None:
        if count < 1 or offset + count > SUITE_SEEDS.start:
            raise ValueError(f"training seeds must stay below the held-out suite's {SUITE_SEEDS.start}")
        if focus not in ("none", "cycle"):
            raise ValueError(f"focus must be 'none' or 'cycle', got {focus!r}")
        self.count, self.length, self.offset, self.focus = count, length, offset, focus
        self._cache: dict[int, SyntheticSequence] = {}

    def __len__(self) -> int:
        return self.count

    def __call__(self, i: int) -> SyntheticSequence:
        if i not in self._cache:
            focus = focus_of(i) if self.focus == "cycle" else None
            self._cache[i] = SyntheticSequence(self.offset + i, SynthConfig(length=self.length), focus=focus)
        return self._cache[i]
