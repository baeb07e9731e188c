"""RGBT benchmark metrics, as the authors' toolkit (PyPI ``rgbt`` 1.0.1) computes them (docs/metrics.md).

All boxes are (x, y, w, h). Results are parsed as float32 and rounded half-to-even, as the
toolkit does; everything after that is float64 with exact thresholds (IoU > t is a hit for
success, error ≤ t for precision; GTOT uses error < t).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PR_THRESHOLDS = np.arange(0, 51, dtype=np.float64)  # px; the value at 20 is reported
NPR_THRESHOLDS = np.round(np.arange(0, 51) * 0.01, 2)  # normalised; the value at 0.2 is reported
SR_THRESHOLDS = np.round(np.arange(0, 21) * 0.05, 2)  # IoU; SR = mean over these 21 points
GTOT_PR_THRESHOLDS = np.arange(0, 51) * 0.5  # px, 0..25; the value at 5 (index 10) is reported


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row IoU of (N, 4) x, y, w, h boxes (the toolkit's pixel-inclusive form equals this)."""
    ix = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = ix * iy
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def centre_error(a: np.ndarray, b: np.ndarray, normalise_by: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distance between centres; with ``normalise_by`` (the GT), x / w and y / h first."""
    ca = a[:, :2] + a[:, 2:] / 2
    cb = b[:, :2] + b[:, 2:] / 2
    if normalise_by is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            ca, cb = ca / normalise_by[:, 2:], cb / normalise_by[:, 2:]
    return np.linalg.norm(ca - cb, axis=1)


def precision_curve(err: np.ndarray, thresholds: np.ndarray, strict: bool = False) -> np.ndarray:
    err = err[:, None]
    return ((err < thresholds) if strict else (err <= thresholds)).mean(axis=0) if len(err) else np.zeros(len(thresholds))


def success_curve(overlap: np.ndarray, thresholds: np.ndarray = SR_THRESHOLDS) -> np.ndarray:
    return (overlap[:, None] > thresholds).mean(axis=0) if len(overlap) else np.zeros(len(thresholds))


def round_results(boxes: np.ndarray) -> np.ndarray:
    """The toolkit reads results as float32 and rounds half to even."""
    return np.round(np.asarray(boxes, dtype=np.float32)).astype(np.float64)


def lasher_prepare(result: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LasHeR rules: row 0 := GT row 0; cut to the GT length (a shorter result scores the frames it
    has — the toolkit would crash); a box with w ≤ 0 or h ≤ 0 takes the previous, already corrected
    row (so runs of them chain); frames whose GT has any value ≤ 0 are flagged invalid."""
    n = min(len(result), len(gt))
    res = round_results(result[:n]).copy()
    gt = np.asarray(gt[:n], dtype=np.float64)
    res[0] = gt[0]
    for i in range(1, n):
        if res[i, 2] <= 0 or res[i, 3] <= 0:
            res[i] = res[i - 1]
    invalid = (gt <= 0).any(axis=1)
    return res, gt, invalid


@dataclass
class SequenceScore:
    """Per-sequence curves (PR, NPR over their grids; SR over 21 IoU thresholds) and frame data."""

    name: str
    pr: np.ndarray
    sr: np.ndarray
    npr: np.ndarray | None = None
    errors: np.ndarray = field(default_factory=lambda: np.zeros(0))
    overlaps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frames: int = 0


def score_lasher_sequence(name: str, result: np.ndarray, gt: np.ndarray, missing: np.ndarray | None = None) -> SequenceScore:
    """The LasHeR rules (``lasher_prepare``). ``missing`` flags frames the tracker never answered (a
    node that dropped or rejected the pair): they are misses at every threshold, where a w ≤ 0 box
    (an answer: "lost") takes the previous row. A result file cannot say "no answer"; a replay can,
    and carrying the previous box forward would score a node that answered nothing as perfect.
    Frame 0 stays the GT and invalid-GT frames keep their rule, as the toolkit has it."""
    res, gt, invalid = lasher_prepare(result, gt)
    err = centre_error(res, gt)
    nerr = centre_error(res, gt, normalise_by=gt)
    ov = iou(res, gt)
    err[invalid], nerr[invalid], ov[invalid] = -1.0, -1.0, -1.0  # PR: hit; SR: miss (docs/metrics.md)
    if missing is not None:
        miss = np.zeros(len(res), bool)
        miss[1:] = np.asarray(missing, bool)[1 : len(res)]
        miss &= ~invalid
        err[miss], nerr[miss], ov[miss] = np.inf, np.inf, 0.0
    return SequenceScore(
        name, precision_curve(err, PR_THRESHOLDS), success_curve(ov), precision_curve(nerr, NPR_THRESHOLDS), err, ov, len(res)
    )


def score_rgbt210_sequence(name: str, result: np.ndarray, gt: np.ndarray) -> SequenceScore:
    n = min(len(result), len(gt))
    res, gt = round_results(result[:n]).copy(), np.asarray(gt[:n], np.float64)
    res[0] = gt[0]
    err, ov = centre_error(res, gt), iou(res, gt)
    return SequenceScore(name, precision_curve(err, PR_THRESHOLDS), success_curve(ov), None, err, ov, n)


def score_two_gt_sequence(
    name: str,
    result: np.ndarray,
    gt_v: np.ndarray,
    gt_i: np.ndarray,
    thresholds: np.ndarray = PR_THRESHOLDS,
    strict: bool = False,
) -> SequenceScore:
    """RGBT234 / GTOT: per frame the better of the two modality GTs (min error, max IoU)."""
    n = min(len(result), len(gt_v), len(gt_i))
    res = round_results(result[:n])
    gv, gi = np.asarray(gt_v[:n], np.float64), np.asarray(gt_i[:n], np.float64)
    err = np.minimum(centre_error(res, gv), centre_error(res, gi))
    ov = np.maximum(iou(res, gv), iou(res, gi))
    return SequenceScore(name, precision_curve(err, thresholds, strict), success_curve(ov), None, err, ov, n)


def at(curve: np.ndarray, thresholds: np.ndarray, value: float) -> float:
    return float(curve[int(np.argmin(np.abs(thresholds - value)))])


def summarise(scores: list[SequenceScore], protocol: str) -> dict[str, object]:
    """Dataset numbers from per-sequence scores: sequence-averaged curves (GTOT: frame-weighted)."""
    if not scores:
        return {"PR": float("nan"), "SR": float("nan"), "sequences": 0, "frames": 0}
    out: dict[str, object] = {"sequences": len(scores), "frames": int(sum(s.frames for s in scores))}
    if protocol == "gtot":
        err = np.concatenate([s.errors for s in scores])
        ov = np.concatenate([s.overlaps for s in scores])
        pr = precision_curve(err, GTOT_PR_THRESHOLDS, strict=True)
        sr = success_curve(ov)
        out.update(
            PR=float(pr[10]),
            SR=float(np.sum((sr[:-1] + sr[1:]) / 2 * 0.05)),
            pr_curve=pr,
            sr_curve=sr,
            pr_thresholds=GTOT_PR_THRESHOLDS,
        )
        return out
    pr = np.mean([s.pr for s in scores], axis=0)
    sr = np.mean([s.sr for s in scores], axis=0)
    out.update(PR=at(pr, PR_THRESHOLDS, 20), SR=float(sr.mean()), pr_curve=pr, sr_curve=sr, pr_thresholds=PR_THRESHOLDS)
    if all(s.npr is not None for s in scores):
        npr = np.mean([s.npr for s in scores], axis=0)
        out.update(NPR=at(npr, NPR_THRESHOLDS, 0.2), npr_curve=npr)
    return out


def frame_subset_scores(scores: list[SequenceScore], labels: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """PR@20 / SR over the frames carrying each label (e.g. a synthetic scenario), frame-weighted.

    Invalid-GT frames keep their LasHeR treatment (-1: PR hit, SR miss).
    """
    buckets: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for s in scores:
        lab = labels.get(s.name)
        if lab is None:
            continue
        lab = lab[: s.frames]
        for name in np.unique(lab):
            m = lab == name
            e, o = buckets.setdefault(str(name), ([], []))
            e.append(s.errors[m])
            o.append(s.overlaps[m])
    out = {}
    for name, (e, o) in sorted(buckets.items()):
        err, ov = np.concatenate(e), np.concatenate(o)
        out[name] = {
            "PR": at(precision_curve(err, PR_THRESHOLDS), PR_THRESHOLDS, 20),
            "SR": float(success_curve(ov).mean()),
            "frames": len(err),
        }
    return out
