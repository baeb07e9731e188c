"""Precision and success plots, as in RGBT papers (PR@20 and SR AUC in the legend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ckd_ros.eval.metrics import SR_THRESHOLDS


def plot_curves(metrics: dict[str, dict[str, object]], path: str | Path, title: str = "") -> Path:
    """One PNG with the precision plot (left) and the success plot (right) for several trackers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_s) = plt.subplots(1, 2, figsize=(11, 4.5))
    order = sorted(metrics, key=lambda k: -float(metrics[k]["SR"]))
    for name in order:
        m = metrics[name]
        thr = np.asarray(m["pr_thresholds"])
        ax_p.plot(thr, m["pr_curve"], label=f"{name} [{float(m['PR']):.3f}]")
        ax_s.plot(SR_THRESHOLDS, m["sr_curve"], label=f"{name} [{float(m['SR']):.3f}]")
    ax_p.set(xlabel="location error threshold (px)", ylabel="precision", title=f"Precision plot {title}".strip(), ylim=(0, 1))
    ax_s.set(xlabel="overlap threshold", ylabel="success rate", title=f"Success plot {title}".strip(), ylim=(0, 1), xlim=(0, 1))
    for ax in (ax_p, ax_s):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left" if ax is ax_s else "lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metrics_table(metrics: dict[str, dict[str, object]], per_label: bool = True) -> str:
    """A Markdown table: one row per tracker, PR / NPR / SR in percent, then per-label SR columns."""
    labels = sorted({lab for m in metrics.values() for lab in (m.get("per_label") or {})}) if per_label else []
    has_npr = all("NPR" in m for m in metrics.values())
    head = ["tracker", "PR@20", *(["NPR"] if has_npr else []), "SR", "FPS", *[f"{lab} PR/SR" for lab in labels]]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in sorted(metrics.items(), key=lambda kv: -float(kv[1]["SR"])):
        cells = [name, f"{100 * float(m['PR']):.1f}"]
        if has_npr:
            cells.append(f"{100 * float(m['NPR']):.1f}")
        cells.append(f"{100 * float(m['SR']):.1f}")
        fps = m.get("fps")
        cells.append("" if fps is None or not np.isfinite(fps) else f"{float(fps):.0f}")
        for lab in labels:
            d = (m.get("per_label") or {}).get(lab)
            cells.append("" if d is None else f"{100 * d['PR']:.1f}/{100 * d['SR']:.1f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
