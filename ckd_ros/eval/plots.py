"""Precision and success plots, as in RGBT papers (PR@20 and SR AUC in the legend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ckd_ros.data.files import output_file
from ckd_ros.errors import InputError
from ckd_ros.eval.metrics import SR_THRESHOLDS


def plot_path(path: str | Path) -> Path:
    """Where ``plot_curves`` will write: a file whose suffix matplotlib can write (none: ``.png``,
    the suffix matplotlib would add itself), in a folder that exists or can be made. Checked
    before any scoring, so a bad path costs nothing and is never noticed after the table printed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: the plot file is a folder; name a file, e.g. {path / 'plots.png'}")
    if not path.suffix:
        path = path.with_suffix(".png")
    formats = FigureCanvasAgg.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        known = ", ".join("." + f for f in sorted(formats))
        raise InputError(f"{path}: cannot write a plot as {path.suffix!r}; use one of {known}")
    return output_file(path, "plot file")


def plot_curves(metrics: dict[str, dict[str, object]], path: str | Path, title: str = "") -> Path:
    """One image (PNG unless ``path`` names another format) with the precision plot (left) and the
    success plot (right) for several trackers; returns the path written (see ``plot_path``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = plot_path(path)
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
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, dpi=110, format=path.suffix[1:].lower())
        tmp.replace(path)  # a failed write never leaves a truncated image under the real name
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write the plot: {exc.strerror or exc}") from None
    finally:
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
