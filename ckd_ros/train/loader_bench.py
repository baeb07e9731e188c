"""Is the loader or the model the bottleneck? Pairs/s of the training loader on real-size frames next
to the model's training steps/s, on this machine.

``python -m ckd_ros.train.loader_bench [--workers 2] [--size 640x480] [--model ckd_small]`` writes a
small LasHeR-layout dataset of jpgs at that size (the synthetic world, so no download), times the
``StepLoader`` (decode two frame pairs, jitter, crop, augment per pair) and then full training steps
(forward, backward, AdamW) of the stage on batches from it. Prints one line each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def make_dataset(root: Path, sequences: int, frames: int, width: int, height: int) -> None:
    from ckd_ros.data.synthetic import SynthConfig, SyntheticSequence, write_sequence

    for k in range(sequences):
        write_sequence(SyntheticSequence(k, SynthConfig(height=height, width=width, length=frames)), root / f"seq{k:03d}")


def main(argv: list[str] | None = None) -> None:
    from ckd_ros.benchmark import cpu_flags
    from ckd_ros.train import DataConfig, TrainConfig, build_trainer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--model", default="ckd_small")
    ap.add_argument("--stage", type=int, default=0)
    ap.add_argument("--model-steps", type=int, default=3)
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_dataset(root, 4, 40, width, height)
        lr = {"head": 1e-4, "teacher": 1e-4} if args.stage == 0 else {"head": 1e-4}
        if args.stage == 1:
            lr |= {"branch": 1e-5, "teacher": 1e-5}
        init = None
        if args.stage > 0:  # a stage-1/2 run starts from a CKD model: random weights time the same
            from ckd_ros.model import build_model, save_checkpoint

            init = str(save_checkpoint(build_model(args.model), Path(tmp) / "init.pt"))
        cfg = TrainConfig(
            stage=args.stage,
            init=init,
            model=args.model,
            steps=args.batches + 1,
            batch_size=args.batch,
            lr=lr,
            out_dir=str(Path(tmp) / "run"),
            data=DataConfig(kind="lasher", root=str(root), num_workers=args.workers),
            device="cpu",
        )
        trainer = build_trainer(cfg, progress=False, log=lambda _: None)
        batches = trainer.loader(0)
        first = next(batches)  # worker start-up is not throughput
        t0 = time.perf_counter()
        for _ in range(args.batches):
            next(batches)
        pairs_s = args.batches * args.batch / (time.perf_counter() - t0)
        del batches
        trainer.train_step(0, first)  # warm-up
        t0 = time.perf_counter()
        for i in range(args.model_steps):
            trainer.train_step(i + 1, first)
        steps_s = args.model_steps / (time.perf_counter() - t0)
    print(f"cpu [{cpu_flags()}], {torch.get_num_threads()} torch threads, {args.workers} loader workers, {width}x{height} jpg")
    print(f"loader: {pairs_s:.1f} pairs/s ({pairs_s / args.batch:.2f} batches of {args.batch}/s)")
    print(
        f"model: {steps_s:.3f} steps/s stage {cfg.stage} {args.model} batch {args.batch} "
        f"({steps_s * args.batch:.1f} pairs/s consumed)"
    )


if __name__ == "__main__":
    main()
