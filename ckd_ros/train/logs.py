"""Run logs beyond ``log.csv``: TensorBoard scalars while training, a loss/IoU plot at the end.

A trainer hook (``on_log(step, stats)``, ``on_end(out_dir)``) that knows only statistic names: every
statistic the actor reports becomes a ``train/<name>`` scalar, and the plot draws the ones named like
losses and IoUs. TensorBoard is optional at run time: without the ``tensorboard`` package the run
says so once and keeps log.csv and the plot.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

PLOT_NAME = "curves.png"


class RunLogs:
    def __init__(self, out_dir: str | Path, tensorboard: bool = True, log: Callable[[str], None] = print) -> None:
        self.out, self.enabled, self.log = Path(out_dir), tensorboard, log
        self.writer = None

    def _writer(self):
        if self.writer is None and self.enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.log("tensorboard is not installed (pip install tensorboard): log.csv and curves.png only")
                self.enabled = False
                return None
            self.writer = SummaryWriter(log_dir=str(self.out / "tensorboard"))
        return self.writer

    def on_log(self, step: int, stats: dict[str, float]) -> None:
        writer = self._writer()
        if writer is None:
            return
        for name, value in stats.items():
            writer.add_scalar(f"train/{name}", value, step)
        writer.flush()

    def on_end(self, out_dir: Path) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        plot_log(Path(out_dir) / "log.csv", Path(out_dir) / PLOT_NAME)


def read_log(path: Path) -> dict[str, list[float]]:
    """log.csv as columns (a resumed run appends to the same file, so steps run on)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if value not in (None, ""):
                columns.setdefault(key, []).append(float(value))
    return columns


def plot_log(log_csv: Path, png: Path) -> Path | None:
    """Losses (left) and IoUs (right) against the step, from log.csv; None when there is nothing."""
    if not log_csv.is_file():
        return None
    cols = read_log(log_csv)
    if not cols.get("step"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [k for k in ("loss", "fused", "t_rgb", "t_tir", "style", "content") if k in cols]
    ious = [k for k in sorted(cols) if k == "iou" or k.endswith("_iou")]
    fig, (ax_l, ax_i) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, keys, title in ((ax_l, losses, "loss"), (ax_i, ious, "IoU with the ground truth (training batches)")):
        for k in keys:
            if len(cols[k]) == len(cols["step"]):
                ax.plot(cols["step"], cols[k], label=k)
        ax.set_xlabel("step")
        ax.set_title(title)
        if keys:
            ax.legend()
    ax_i.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
