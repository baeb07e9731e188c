"""Training data: the sources a run samples pairs from, checked up front, and the loader that decodes
them in worker processes.

Sources are the synthetic world, a benchmark in its own layout (``lasher``, ``rgbt234``, ``rgbt210``,
``gtot``, ``vtuav``, read by ``ckd_ros.data.datasets``) or a user's own recordings (``folder``).
Everything a user can get wrong about a dataset on disk (a missing or empty root, a sequence whose
image folders and ground truth disagree in length, a first frame that does not decode, cameras of
different sizes without a registration) is found by :func:`make_sources` *before* a model is built,
as one ``InputError`` naming the file. Sequences that are merely unusable for pair sampling (fewer
than 20 frames or 5 visible boxes) are skipped and counted. Frames are decoded only in the loader.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ckd_ros.data.frames import read_rgb
from ckd_ros.errors import ConfigError, InputError
from ckd_ros.preprocess.align import Aligner
from ckd_ros.train.sampler import PairSampler, collate

DATASET_KINDS = ("lasher", "rgbt234", "rgbt210", "gtot", "vtuav", "folder")
MIN_FRAMES, MIN_VISIBLE = 20, 5  # the official sampler's rule (docs/training.md, Data): ≥ 20 frames, > 4 visible


@dataclass
class FrameSequence:
    """One sequence as training reads it: file lists, per-frame boxes in RGB pixels, and the
    registration that brings the thermal frame onto the RGB pixels before cropping. Plain data, so
    it pickles cheaply into every loader worker."""

    name: str
    rgb_files: list[str]
    tir_files: list[str]
    boxes: np.ndarray
    aligner: Aligner

    def __len__(self) -> int:
        return len(self.boxes)

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rgb, tir = read_rgb(self.rgb_files[i]), read_rgb(self.tir_files[i])
        return rgb, self.aligner(rgb, tir)


def _visible_count(boxes: np.ndarray) -> int:
    return int(((boxes[:, 2] > 0) & (boxes[:, 3] > 0)).sum())


def _check_sequence(seq, aligner: Aligner) -> FrameSequence:
    """A dataset ``Sequence`` → ``FrameSequence``, or an InputError naming the file that is wrong."""
    rgb, tir = seq.files()  # InputError for a missing or empty image folder, naming it
    if len(rgb) != len(tir):
        raise InputError(f"{seq.tir_dir}: {len(tir)} thermal images, but {seq.rgb_dir} has {len(rgb)} RGB images")
    gt_file = seq.gt_files[0] if seq.gt_files else seq.rgb_dir.parent
    boxes = seq.boxes
    if seq.gt_frames is None and len(boxes) != len(rgb):
        raise InputError(f"{gt_file}: {len(boxes)} boxes for {len(rgb)} frames in {seq.rgb_dir}")
    if seq.gt_frames is not None and len(seq.gt_frames) and seq.gt_frames[-1] >= len(rgb):
        raise InputError(f"{gt_file}: {len(seq.gt)} sparse boxes reach frame {seq.gt_frames[-1]}, beyond {len(rgb)} frames")
    first_rgb, first_tir = read_rgb(rgb[0]), read_rgb(tir[0])  # an unreadable image fails now, by name
    try:
        aligner(first_rgb, first_tir)
    except InputError as exc:
        raise InputError(f"{tir[0]}: {exc}") from None
    return FrameSequence(seq.name, [str(p) for p in rgb], [str(p) for p in tir], np.asarray(boxes, np.float64), aligner)


def dataset_sources(data, log: Callable[[str], None] = print) -> list[FrameSequence]:
    """The sequences of ``data`` (a ``DataConfig`` with a dataset ``kind`` and ``root``), checked."""
    from ckd_ros.data.datasets import read_dataset, read_folder

    if data.kind not in DATASET_KINDS:
        raise ConfigError(f"data kind {data.kind!r}: one of synthetic, {', '.join(DATASET_KINDS)}")
    if not data.root:
        raise ConfigError(f"data kind {data.kind} needs data.root: the dataset folder (e.g. --set data.root=PATH)")
    root = Path(os.path.expanduser(data.root))
    if not root.is_dir():
        raise InputError(f"{root}: dataset root {'is not a folder' if root.exists() else 'not found'}")
    if not any(root.iterdir()):
        raise InputError(f"{root}: dataset root is empty")
    aligner = Aligner(data.align, data.homography)
    names = list(data.sequences) if data.sequences else None
    seqs = read_folder(root, names) if data.kind == "folder" else read_dataset(data.kind, root, names)
    out, short = [], []
    for seq in seqs:
        src = _check_sequence(seq, aligner)
        if len(src) < MIN_FRAMES or _visible_count(src.boxes) < MIN_VISIBLE:
            short.append(seq.name)
        else:
            out.append(src)
    if short:
        log(
            f"skipped {len(short)} of {len(seqs)} sequences with fewer than {MIN_FRAMES} frames or {MIN_VISIBLE} "
            f"visible boxes: {', '.join(short[:5])}{' …' if len(short) > 5 else ''}"
        )
    if not out:
        raise InputError(f"{root}: no sequence has {MIN_FRAMES} frames and {MIN_VISIBLE} visible boxes to sample pairs from")
    return out


def make_sources(cfg, log: Callable[[str], None] = print) -> tuple[Callable[[int], object] | Sequence, int]:
    """(sources, count) for the run's data section: index → a source with ``boxes`` and ``frame(i)``."""
    if cfg.data.kind == "synthetic":
        from ckd_ros.data.synthetic import SyntheticPool

        pool = SyntheticPool(cfg.data.num_sequences, cfg.data.length, focus=cfg.data.focus)
        return pool, len(pool)
    seqs = dataset_sources(cfg.data, log)
    return seqs, len(seqs)


class PairDataset(Dataset):
    """Sample number k of the run (a map-style dataset, so the loader's workers can build any)."""

    def __init__(self, sampler: PairSampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:  # samples are drawn, not stored: any index is valid
        return 2**62

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:
        return self.sampler.sample_number(int(k))


class StepBatches:
    """The sample numbers of each step's batch for one rank, from ``start`` to ``steps`` (the split
    ``DistributedSampler`` would make, but resumable at any step)."""

    def __init__(self, start: int, steps: int, batch_size: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.steps, self.batch_size, self.rank, self.world = start, steps, batch_size, rank, world

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            first = (step * self.world + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))


class StepLoader:
    """``loader(start_step)`` → an iterator over the batches of steps start..steps−1 of this rank,
    decoded in ``num_workers`` processes (0: in this process, for debugging)."""

    def __init__(
        self, sampler: PairSampler, steps: int, batch_size: int, num_workers: int = 2, rank: int = 0, world: int = 1
    ) -> None:
        self.sampler, self.steps, self.batch_size = sampler, steps, batch_size
        self.num_workers, self.rank, self.world = num_workers, rank, world

    def __call__(self, start: int) -> Iterator[dict[str, torch.Tensor]]:
        if start >= self.steps:
            return iter(())
        loader = DataLoader(
            PairDataset(self.sampler),
            batch_sampler=StepBatches(start, self.steps, self.batch_size, self.rank, self.world),
            num_workers=self.num_workers,
            collate_fn=collate,
            prefetch_factor=4 if self.num_workers else None,
            persistent_workers=False,
            # Forked workers (torch gives each one thread). No cv2.setNumThreads in them: after a fork
            # of a process whose OpenCV pool has run, that call deadlocks. Not forkserver/spawn either:
            # they re-run the user's __main__, which breaks every script without a main guard.
        )
        return iter(loader)
