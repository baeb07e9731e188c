"""The one-command demo: the shipped model tracks held-out synthetic RGB-T sequences.

It prints PR/SR (overall and per scenario), FPS and latency, and writes an annotated video
(RGB | thermal, the box in green, the ground truth in yellow) and precision/success plots under
``out/demo``. Nothing is downloaded: the sequences are generated, the model ships in ``models/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ckd_ros.benchmark import Timing
from ckd_ros.data.synthetic import suite_sequence
from ckd_ros.eval.metrics import frame_subset_scores, score_lasher_sequence, summarise
from ckd_ros.eval.plots import metrics_table, plot_curves
from ckd_ros.tracker import CKDTracker
from ckd_ros.viz import VideoWriter, annotate_pair

DEMO_SEQUENCES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)  # two of each focus scenario from the held-out suite


def run_demo(
    tracker: CKDTracker,
    out_dir: str | Path,
    sequences: tuple[int, ...] = DEMO_SEQUENCES,
    length: int = 120,
    video: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, object]:
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = VideoWriter(str(out / "demo.mp4"), fps=25) if video else None
    scores, labels, latencies = [], {}, []
    try:
        for k in tqdm(sequences, desc="demo", unit="seq"):
            name, seq = suite_sequence(k, length)
            boxes = []
            for i in range(len(seq)):
                rgb, tir = seq.frame(i)
                t0 = time.perf_counter()
                res = tracker.initialize(rgb, tir, tuple(seq.boxes[0])) if i == 0 else tracker.track(rgb, tir)
                if i:
                    latencies.append((time.perf_counter() - t0) * 1000)
                boxes.append(res.box)
                if writer is not None:
                    cap = f"{name} #{i} [{seq.scenario[i]}] score {res.score:.2f}{' LOST' if res.lost else ''}"
                    writer.write(annotate_pair(rgb, tir, res.box, cap, res.lost, gt=seq.boxes[i]))
            scores.append(score_lasher_sequence(name, np.array(boxes), seq.boxes))
            labels[name] = np.asarray(seq.scenario, dtype=str)
    finally:
        if writer is not None:
            writer.close()
    metrics = summarise(scores, "lasher")
    metrics["per_label"] = frame_subset_scores(scores, labels)
    t = Timing(tuple(latencies))
    metrics["fps"] = t.fps
    name = f"CKD {tracker.model.cfg.name} ({tracker.device}, {tracker.config.precision})"
    log(metrics_table({name: metrics}))
    log(
        f"tracker latency per frame: p50 {t.pct(50):.1f} ms, p95 {t.pct(95):.1f} ms, p99 {t.pct(99):.1f} ms; "
        f"{t.fps:.1f} FPS over {len(latencies)} frames"
    )
    plot = plot_curves({name: metrics}, out / "plots.png", "(synthetic held-out)")
    log(f"wrote {plot}" + ("" if writer is None else f" and {out / 'demo.mp4'}"))
    return metrics
