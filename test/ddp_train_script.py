"""Run under torchrun by test_train_ddp.py: one tiny DDP training run; every rank then saves the
weights it ended with (rank<r>.pt) so the test can compare the ranks."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ckd_ros.train import DataConfig, TrainConfig, build_trainer


def main(out: str, steps: int) -> None:
    cfg = TrainConfig(
        name="ddp",
        stage=0,
        model="ckd_tiny",
        steps=steps,
        batch_size=2,
        lr={"head": 1e-3, "teacher": 1e-3},
        checkpoint_every=2,
        log_every=1,
        out_dir=out,
        device="cpu",
        threads=1,
        data=DataConfig(num_sequences=3, length=30, num_workers=0),
    )
    trainer = build_trainer(cfg, progress=False)
    trainer.run()
    torch.save(trainer.net.state_dict(), Path(out) / f"rank{dist.get_rank()}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
