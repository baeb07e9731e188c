"""Evaluation: the standard RGBT metrics on dataset folders (docs/metrics.md), and result files.

>>> m = score("lasher", root, results_dir)    # also rgbt234, rgbt210, gtot, vtuav, synthetic
>>> m["PR"], m["NPR"], m["SR"]                # fractions; RGBT234/GTOT give MPR/MSR under PR/SR

Only ground-truth files are read from ``root``; ``results_dir`` holds one ``<sequence>.txt`` per
sequence, x, y, w, h per frame (comma, space or tab separated), first frame included.

``score`` computes what the toolkit computes, including for a result file whose length differs
from its ground truth (scored over the frames both have). Such a number describes part of a
sequence, so ``length_mismatches`` lists them for a caller (``ckd-ros eval score``) to refuse or
report; ``read_result_folder`` and ``score_sequences`` are the two halves of ``score`` for that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ckd_ros.data.datasets import Sequence, dataset_key, read_dataset
from ckd_ros.data.files import number_rows, read_text
from ckd_ros.errors import InputError
from ckd_ros.eval.metrics import (
    NPR_THRESHOLDS,
    PR_THRESHOLDS,
    SequenceScore,
    at,
    frame_subset_scores,
    score_lasher_sequence,
    score_rgbt210_sequence,
    score_two_gt_sequence,
    summarise,
)

__all__ = [
    "LengthMismatch",
    "length_mismatches",
    "protocol_of",
    "read_result_folder",
    "read_results",
    "read_seconds",
    "score",
    "score_sequences",
    "tracker_fps",
]


def read_results(path: str | Path) -> np.ndarray:
    """(N, 4) boxes of a result file; the toolkit tries ',', then ' ', then tab."""
    p = Path(path)
    rows = []
    for n, _line, vals in number_rows(p, "result file"):
        if len(vals) != 4:
            raise InputError(f"{p}:{n}: expected x,y,w,h, got {len(vals)} values")
        rows.append(vals)
    if not rows:
        raise InputError(f"{p}: empty result file")
    return np.array(rows, dtype=np.float64)


def read_seconds(path: str | Path) -> np.ndarray:
    """Seconds per frame from a ``<sequence>_time.txt`` (one number a line; blank lines skipped)."""
    p = Path(path)
    values = []
    for n, line in enumerate(read_text(p, "timing file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            v = float(line.strip())
        except ValueError:
            raise InputError(f"{p}:{n}: not a number of seconds: {line.strip()!r}") from None
        if not math.isfinite(v) or v < 0:
            raise InputError(f"{p}:{n}: {line.strip()!r} is not a time in seconds (finite, not negative)")
        values.append(v)
    return np.array(values, dtype=np.float64)


def tracker_fps(results_dir: str | Path, names: list[str]) -> float:
    """Frames per second from the timing files of ``names`` (frame 0, the init, excluded); NaN when
    there are none, as for result files written by another toolkit."""
    secs = [read_seconds(f)[1:] for f in (Path(results_dir) / f"{n}_time.txt" for n in names) if f.exists()]
    total = sum(float(s.sum()) for s in secs)
    return sum(len(s) for s in secs) / total if total > 0 else float("nan")


def protocol_of(dataset: str) -> str:
    """Each benchmark is scored by its own protocol, so the protocol is the dataset's reader key."""
    return dataset_key(dataset)


def score_sequence(seq: Sequence, result: np.ndarray, protocol: str) -> SequenceScore:
    if protocol in ("lasher",):
        return score_lasher_sequence(seq.name, result, seq.gt["aligned"])
    if protocol == "rgbt210":
        return score_rgbt210_sequence(seq.name, result, seq.gt["aligned"])
    if protocol == "rgbt234":
        return score_two_gt_sequence(seq.name, result, seq.gt["visible"], seq.gt["infrared"])
    if protocol == "gtot":
        from ckd_ros.eval.metrics import GTOT_PR_THRESHOLDS

        return score_two_gt_sequence(seq.name, result, seq.gt["visible"], seq.gt["infrared"], GTOT_PR_THRESHOLDS, strict=True)
    if protocol == "vtuav":  # sparse GT: score the annotated frames where the target is present
        gt = seq.gt["aligned"]
        frames = seq.gt_frames if seq.gt_frames is not None else np.arange(len(gt))
        keep = (frames < len(result)) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
        return (
            score_rgbt210_sequence(seq.name, result[frames[keep]], gt[keep])
            if keep.any()
            else SequenceScore(seq.name, np.ones(len(PR_THRESHOLDS)), np.zeros(21))
        )
    raise InputError(f"unknown protocol {protocol!r}")


def score_sequences(sequences: list[Sequence], results: dict[str, np.ndarray], protocol: str) -> dict[str, object]:
    """Metrics for in-memory results (name → boxes), with per-sequence and per-label tables."""
    scores = [score_sequence(s, results[s.name], protocol) for s in sequences]
    out = summarise(scores, protocol)
    out["per_sequence"] = {
        s.name: {
            "PR": at(s.pr, PR_THRESHOLDS, 20) if protocol != "gtot" else float(s.pr[10]),
            "SR": float(s.sr.mean()),
            **({"NPR": at(s.npr, NPR_THRESHOLDS, 0.2)} if s.npr is not None else {}),
        }
        for s in scores
    }
    labels = {s.name: s.labels for s in sequences if s.labels is not None}
    if labels and protocol == "lasher":
        out["per_label"] = frame_subset_scores(scores, labels)
    return out


def read_result_folder(results_dir: str | Path, sequences: list[Sequence]) -> dict[str, np.ndarray]:
    """``<sequence>.txt`` of every sequence in ``results_dir`` (all must be there), name → boxes."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(f"{results_dir}: results folder {'is not a folder' if results_dir.exists() else 'not found'}")
    missing = [s.name for s in sequences if not (results_dir / f"{s.name}.txt").exists()]
    if missing:
        raise InputError(f"{results_dir}: no result file for {len(missing)} of {len(sequences)} sequences, e.g. {missing[:5]}")
    return {s.name: read_results(results_dir / f"{s.name}.txt") for s in sequences}


@dataclass(frozen=True)
class LengthMismatch:
    """A result file with more or fewer rows than its sequence has annotated frames."""

    sequence: str
    result_file: Path
    rows: int
    reference: str  # what fixes the expected length: a ground-truth file, or a frame folder (VTUAV)
    expected: int

    @property
    def short(self) -> bool:
        return self.rows < self.expected

    def text(self) -> str:
        return f"{self.result_file} has {self.rows} rows, {self.reference} has {self.expected}"


def length_mismatches(
    sequences: list[Sequence], results: dict[str, np.ndarray], results_dir: str | Path, protocol: str
) -> list[LengthMismatch]:
    """Sequences whose result length differs from the ground truth's (VTUAV: from the frame count,
    its ground truth being sparse). ``score`` scores them over the frames both have, as the
    toolkit does for RGBT234 / RGBT210 / GTOT; the toolkit's LasHeR code crashes on a short file."""
    out = []
    for s in sequences:
        rows = len(results[s.name])
        if protocol == "vtuav":
            expected, reference = len(s), f"the frame folder {s.rgb_dir}"
        else:
            lengths = [len(g) for g in s.gt.values()]
            expected = min(lengths)
            files = s.gt_files or (Path(f"<{s.name} ground truth>"),)
            reference = f"the ground truth {files[lengths.index(expected)] if len(files) == len(lengths) else files[0]}"
        if rows != expected:
            out.append(LengthMismatch(s.name, Path(results_dir) / f"{s.name}.txt", rows, reference, expected))
    return out


def score(dataset: str, root: str | Path, results_dir: str | Path, sequences: list[str] | None = None) -> dict[str, object]:
    """The dataset's metrics for one tracker's result folder (see the module doc)."""
    seqs = read_dataset(dataset, root, sequences)
    return score_sequences(seqs, read_result_folder(results_dir, seqs), protocol_of(dataset))
