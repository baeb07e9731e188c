"""Evaluation: the standard RGBT metrics on dataset folders (spec §5), and result files.

>>> m = score("lasher", root, results_dir)    # also rgbt234, rgbt210, gtot, vtuav, synthetic
>>> m["PR"], m["NPR"], m["SR"]                # fractions; RGBT234/GTOT give MPR/MSR under PR/SR

Only ground-truth files are read from ``root``; ``results_dir`` holds one ``<sequence>.txt`` per
sequence, x, y, w, h per frame (comma, space or tab separated), first frame included.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ckd_ros.data.datasets import Sequence, read_dataset
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

__all__ = ["protocol_of", "read_results", "score", "score_sequences"]


def read_results(path: str | Path) -> np.ndarray:
    """(N, 4) boxes of a result file; the toolkit tries ',', then ' ', then tab."""
    p = Path(path)
    rows = []
    for n, line in enumerate(p.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = [x for x in re.split(r"[,\s]+", line.strip()) if x]
        try:
            vals = [float(x) for x in parts]
        except ValueError:
            raise InputError(f"{p}:{n}: not numbers: {line!r}") from None
        if len(vals) != 4:
            raise InputError(f"{p}:{n}: expected x,y,w,h, got {len(vals)} values")
        rows.append(vals)
    if not rows:
        raise InputError(f"{p}: empty result file")
    return np.array(rows, dtype=np.float64)


def protocol_of(dataset: str) -> str:
    key = dataset.lower().replace("_", "").replace("-", "")
    return "lasher" if key in ("synthetic", "synth") else key


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


def score(dataset: str, root: str | Path, results_dir: str | Path, sequences: list[str] | None = None) -> dict[str, object]:
    """The dataset's metrics for one tracker's result folder (see the module doc)."""
    seqs = read_dataset(dataset, root, sequences)
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(f"{results_dir}: results folder not found")
    missing = [s.name for s in seqs if not (results_dir / f"{s.name}.txt").is_file()]
    if missing:
        raise InputError(f"{results_dir}: no result file for {len(missing)} of {len(seqs)} sequences, e.g. {missing[:5]}")
    results = {s.name: read_results(results_dir / f"{s.name}.txt") for s in seqs}
    return score_sequences(seqs, results, protocol_of(dataset))
