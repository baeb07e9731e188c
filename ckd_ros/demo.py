"""The one-command demo: held-out synthetic RGB-T sequences played as ROS 2 topics through the real
``ckd_tracker`` node (player → node → recorder, one rclpy graph), with the shipped model.

It prints PR/SR (overall and per scenario), the node's output rate and publish→detection latency,
processed vs dropped pairs, and writes an annotated video (RGB | thermal, the node's box in green,
the ground truth in yellow) and precision/success plots under ``out/demo``. Nothing is
downloaded: the sequences are generated, the model ships in ``models/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ckd_ros.benchmark import Timing
from ckd_ros.data.files import output_dir, removed_on_error
from ckd_ros.data.synthetic import suite_sequence
from ckd_ros.eval.metrics import frame_subset_scores, summarise
from ckd_ros.eval.plots import metrics_table, plot_curves
from ckd_ros.viz import VideoWriter, annotate_pair

DEMO_SEQUENCES = tuple(range(10))  # two of each focus scenario from the held-out suite
# Said at the start of every demo and bag replay, so nobody takes its loss-free delivery for a camera's.
QOS_NOTE = (
    "QoS: player -> node reliable, keep last 100, so that every frame is scored; the node runs in this process, "
    "where Fast DDS hands messages over in-process, so no transport (and no transport profile) is involved. "
    "A camera driver publishes best effort, the node's default input QoS: between processes large best-effort "
    "images need a transport profile (README 'Large images over DDS', bench/bench_node.py)"
)
START_NS = 1_700_000_000_000_000_000


def _messages(seq, rate: float) -> list[tuple[int, object, object]]:
    from ckd_ros.ros.conversions import image_msg

    pairs = []
    for i in range(len(seq)):
        rgb, tir = seq.frame(i)
        stamp = START_NS + round(i * 1e9 / rate)
        a, b = image_msg(rgb, "rgb8"), image_msg(tir[:, :, 0], "mono8")
        a.header.frame_id = b.header.frame_id = "camera_rgb"
        pairs.append((stamp, a, b))  # stamped by the player as they go out
    return pairs


def run_demo(
    checkpoint: str | None,
    out_dir: str | Path,
    sequences: tuple[int, ...] = DEMO_SEQUENCES,
    length: int = 120,
    rate: float = 30.0,
    lockstep: bool = False,
    node_params: dict | None = None,
    video: bool = True,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict[str, object]:
    """The output folder is made (or refused) before ROS starts; the video is written under a
    partial name and renamed when every sequence played, so a failed run leaves no truncated one."""
    out = output_dir(out_dir, "demo output folder")
    partial = out / "demo.partial.mp4"
    with removed_on_error(partial):
        return _run_demo(checkpoint, out, partial, sequences, length, rate, lockstep, node_params, video, log, progress)


def _run_demo(checkpoint, out: Path, partial: Path, sequences, length, rate, lockstep, node_params, video, log, progress):
    import rclpy

    from ckd_ros.ros.replay import play_through_node

    writer = VideoWriter(str(partial), fps=25) if video else None
    scores, labels, latencies = [], {}, []
    processed = dropped = 0
    seconds = 0.0
    log(QOS_NOTE)
    rclpy.init()
    try:
        for k in sequences:
            name, seq = suite_sequence(k, length)
            pairs = _messages(seq, rate)
            gt = {s: tuple(seq.boxes[i]) for i, (s, _, _) in enumerate(pairs)}
            report = play_through_node(
                pairs,
                gt,
                tuple(seq.boxes[0]),
                checkpoint,
                mode="lockstep" if lockstep else "realtime",
                params=node_params,
                name=name,
                progress=progress,
            )
            scores.append(report.score)
            labels[name] = np.asarray(seq.scenario, dtype=str)
            latencies += report.latencies_ms
            processed, dropped, seconds = processed + report.processed, dropped + report.dropped, seconds + report.seconds
            if writer is not None:
                for i in range(len(seq)):
                    rgb, tir = seq.frame(i)
                    box = report.boxes[i] if report.boxes[i][2] > 0 else None
                    cap = f"{name} #{i} [{seq.scenario[i]}]" + ("" if box is not None else "  no detection")
                    writer.write(annotate_pair(rgb, tir, box, cap, gt=seq.boxes[i]))
    finally:
        rclpy.try_shutdown()
        if writer is not None:
            writer.close()
    if writer is not None:
        partial.replace(out / "demo.mp4")
    metrics = summarise(scores, "lasher")
    metrics["per_label"] = frame_subset_scores(scores, labels)
    metrics["fps"] = processed / seconds if seconds else float("nan")
    t = Timing(tuple(latencies or [float("nan")]))
    title = "ckd_tracker node" + (" (lockstep)" if lockstep else f" ({rate:g} Hz input)")
    log(metrics_table({title: metrics}))
    log(
        f"node: {processed} pairs processed, {dropped} dropped (one-slot mailbox), {metrics['fps']:.1f} processed/s; "
        f"publish → detection latency p50 {t.pct(50):.1f} ms, p95 {t.pct(95):.1f} ms, p99 {t.pct(99):.1f} ms"
    )
    plot = plot_curves({title: metrics}, out / "plots.png", "(synthetic held-out)")
    log(f"wrote {plot}" + ("" if writer is None else f" and {out / 'demo.mp4'}"))
    return metrics
