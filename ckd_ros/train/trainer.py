"""The generic training loop: parameter groups, clipping, checkpoints, resume, logs, DDP.

It knows nothing about CKD's losses (the actor does). Batches are a pure function of the step
number and the torch RNG is re-seeded per step, so a resumed run takes exactly the step it would
have taken. Multi-GPU runs go through ``torchrun`` and PyTorch DDP.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ckd_ros.errors import CheckpointError, ConfigError
from ckd_ros.model import save_checkpoint
from ckd_ros.runtime import resolve_device
from ckd_ros.train.actor import CKDActor
from ckd_ros.train.config import TrainConfig
from ckd_ros.train.network import CKDTrainingNet
from ckd_ros.train.sampler import PairSampler

TRAIN_FORMAT = "ckd_ros/train/1"


def param_groups(net: nn.Module, lr: dict[str, float], weight_decay: float) -> list[dict[str, Any]]:
    """One AdamW group per ``lr`` key, matched as a substring of parameter names (official PARAM_KEY).

    Parameters that match no key are frozen (``requires_grad = False``).
    """
    groups: dict[str, list[nn.Parameter]] = {k: [] for k in lr}
    for name, p in net.named_parameters():
        key = next((k for k in lr if k in name), None)
        p.requires_grad_(key is not None)
        if key is not None:
            groups[key].append(p)
    empty = [k for k, ps in groups.items() if not ps]
    if empty:
        raise ConfigError(f"lr keys {empty} match no parameter name")
    return [{"params": ps, "lr": lr[k], "weight_decay": weight_decay, "name": k} for k, ps in groups.items()]


def save_training_state(path: Path, net: CKDTrainingNet, optimizer: torch.optim.Optimizer, step: int, cfg: TrainConfig) -> None:
    payload = {
        "format": TRAIN_FORMAT,
        "step": step,
        "model_config": net.cfg.to_dict(),
        "train_config": cfg.to_dict(),
        "state_dict": net.state_dict(),
        "optimizer": optimizer.state_dict(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_training_state(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such training checkpoint")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{p}: not a readable training checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict) or state.get("format") != TRAIN_FORMAT:
        raise CheckpointError(f"{p}: not a ckd_ros training checkpoint (written by `ckd-ros train`)")
    return state


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        sources: Callable[[int], Any],
        num_sources: int,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        self.cfg, self.progress, self.log = cfg, progress, log
        self.rank, self.world = _distributed()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        dev = resolve_device(cfg.device)
        self.device = (
            torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if dev.type == "cuda" and self.world > 1 else dev
        )
        self.out = Path(cfg.out_dir)
        torch.manual_seed(cfg.seed)  # the initial weights are part of the recipe
        self.net = CKDTrainingNet(cfg.model_config())
        self._initialise()
        self.net.to(self.device).train()
        self.optimizer = torch.optim.AdamW(param_groups(self.net, cfg.lr, cfg.weight_decay))
        self.step = 0
        last = self.out / "last.pt"
        if last.is_file():  # resume
            state = read_training_state(last)
            self.net.load_state_dict(state["state_dict"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = int(state["step"])
            self.log(f"resumed {last} at step {self.step}")
        self.model = nn.parallel.DistributedDataParallel(self.net, find_unused_parameters=True) if self.world > 1 else self.net
        self.actor = CKDActor(self.net if self.world == 1 else self.model.module, cfg.loss, cfg.stage)
        self.sampler = PairSampler(sources, num_sources, cfg.sampler_config(), seed=cfg.seed, rank=self.rank)

    def _initialise(self) -> None:
        """Stage 1 starts students from stage-0 teachers; stage 2 continues a stage-1 model."""
        if not self.cfg.init:
            return
        state = read_training_state(self.cfg.init)
        missing, unexpected = self.net.load_state_dict(state["state_dict"], strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{self.cfg.init}: does not fit {self.cfg.model}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        if state["train_config"]["stage"] == 0 and self.cfg.stage == 1:
            self.net.init_students_from_teachers()

    def _batch(self, step: int) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in self.sampler.batch(step, self.cfg.batch_size).items()}

    def train_step(self, step: int) -> dict[str, float]:
        torch.manual_seed(self.cfg.seed * 1_000_003 + step * 7 + self.rank)  # drop path: a function of the step
        batch = self._batch(step)
        loss, stats = self.actor(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            stats["grad_norm"] = float(nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip))
        self.optimizer.step()
        return stats

    def run(self) -> Path:
        from tqdm import tqdm

        cfg = self.cfg
        main = self.rank == 0
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        log_path = self.out / "log.csv"
        writer, fh = None, None
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=f"stage {cfg.stage} {cfg.name}",
            unit="step",
            disable=not (self.progress and main),
        )
        t0 = time.perf_counter()
        try:
            while self.step < cfg.steps:
                stats = self.train_step(self.step)
                self.step += 1
                bar.update()
                if main and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    bar.set_postfix(
                        {
                            k: f"{v:.3f}"
                            for k, v in stats.items()
                            if k in ("loss", "iou", "style", "content", "t_rgb_iou", "t_tir_iou")
                        }
                    )
                    if writer is None:
                        new = not log_path.exists()
                        fh = open(log_path, "a", newline="")
                        writer = csv.DictWriter(fh, fieldnames=["step", "seconds", *sorted(stats)], extrasaction="ignore")
                        if new:
                            writer.writeheader()
                    writer.writerow({"step": self.step, "seconds": round(time.perf_counter() - t0, 2), **stats})
                    fh.flush()
                if main and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps):
                    save_training_state(self.out / "last.pt", self.net, self.optimizer, self.step, cfg)
        finally:
            bar.close()
            if fh is not None:
                fh.close()
        final = self.out / "model.pt"
        if main:
            save_checkpoint(
                self.net.to_inference(),
                final,
                extra={"trained_by": "ckd-ros train", "stage": cfg.stage, "steps": cfg.steps, "run": cfg.name},
            )
        return final
