"""The generic training loop: clipping, checkpoints, resume, logs, DDP (as pytracking's
``LTRTrainer(actor, loaders, optimizer, settings)``).

It is handed an actor (an ``nn.Module`` whose forward maps a batch to ``(loss, stats)``), the net
whose weights are checkpointed, a loader (``loader(start_step)`` → batches) and an optimizer, and
knows nothing of CKD: what the stages compute lives in the actor, how a run is assembled in
``ckd_ros.train.build``. Batches are a pure function of the step number and the torch RNG is
re-seeded per step, so a resumed run takes exactly the step it would have taken. Multi-GPU runs go
through ``torchrun``: the actor is wrapped in DDP (gradients averaged), and only rank 0 writes
checkpoints, logs and the progress bar.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ckd_ros.errors import CheckpointError, ConfigError

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


def save_training_state(
    path: Path, net: nn.Module, optimizer: torch.optim.Optimizer, step: int, meta: dict[str, Any] | None = None
) -> None:
    """Weights, optimizer and step, plus whatever ``meta`` the run records (model and run config),
    written to a temporary file and renamed: an interrupted write never leaves a torn last.pt."""
    payload = {
        "format": TRAIN_FORMAT,
        "step": step,
        **(meta or {}),
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


def setup_distributed() -> tuple[int, int]:
    """(rank, world size): under torchrun (WORLD_SIZE > 1) the process group is joined here (NCCL
    on CUDA, gloo on CPU); a plain run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def teardown_distributed() -> None:
    """Leave the process group (torchrun runs); nothing for a plain run."""
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass
class TrainerSettings:
    name: str = "run"
    steps: int = 1000
    grad_clip: float = 0.1
    checkpoint_every: int = 500
    log_every: int = 10
    out_dir: str = "out/train"
    seed: int = 42
    progress_keys: tuple[str, ...] = ("loss",)  # statistics shown on the progress bar


class Trainer:
    def __init__(
        self,
        actor: nn.Module,
        net: nn.Module,
        loader: Callable[[int], Iterator[dict[str, torch.Tensor]]],
        optimizer: torch.optim.Optimizer,
        settings: TrainerSettings,
        device: torch.device,
        *,
        meta: dict[str, Any] | None = None,
        export: Callable[[Path], Path] | None = None,
        hooks: list[Any] = (),
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        """``net`` must already be on ``device`` with its starting weights; ``actor`` holds it.
        ``meta`` goes into every training checkpoint; ``export(path)`` writes the final model (rank 0);
        ``hooks`` get ``on_log(step, stats)`` and ``on_end(out_dir)`` calls on rank 0."""
        self.actor, self.net, self.loader, self.optimizer, self.settings = actor, net, loader, optimizer, settings
        self.device, self.meta, self.export, self.hooks = device, meta or {}, export, list(hooks)
        self.progress, self.log = progress, log
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.out = Path(settings.out_dir)
        self.step = 0
        last = self.out / "last.pt"
        if last.is_file():  # resume (every rank reads rank 0's file, so all continue from the same weights)
            state = read_training_state(last)
            self.net.load_state_dict(state["state_dict"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = int(state["step"])
            if self.rank == 0:
                self.log(f"resumed {last} at step {self.step}")
        self.model = nn.parallel.DistributedDataParallel(actor, find_unused_parameters=True) if self.world > 1 else actor

    def _sync_buffers(self) -> None:
        """Every rank takes rank 0's buffers (BatchNorm running statistics): DDP averages gradients,
        so parameters agree, but each rank updates its running statistics from its own batch and DDP
        only re-broadcasts them at the next forward. Done at each checkpoint, so the weights every
        rank holds are the ones rank 0 wrote, and a resumed run continues from exactly those."""
        if self.world > 1:
            for buf in self.net.buffers():
                dist.broadcast(buf, 0)

    def train_step(self, step: int, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        torch.manual_seed(self.settings.seed * 1_000_003 + step * 7 + self.rank)  # drop path: a function of the step
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        loss, stats = self.model(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.settings.grad_clip > 0:
            stats["grad_norm"] = float(nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.grad_clip))
        self.optimizer.step()
        return stats

    def run(self) -> Path:
        from tqdm import tqdm

        cfg = self.settings
        main = self.rank == 0
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        log_path = self.out / "log.csv"
        writer, fh = None, None
        bar = tqdm(total=cfg.steps, initial=self.step, desc=cfg.name, unit="step", disable=not (self.progress and main))
        t0 = time.perf_counter()
        batches = self.loader(self.step)
        try:
            while self.step < cfg.steps:
                stats = self.train_step(self.step, next(batches))
                self.step += 1
                bar.update()
                if main and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items() if k in cfg.progress_keys})
                    if writer is None:
                        new = not log_path.exists()
                        fh = open(log_path, "a", newline="")
                        writer = csv.DictWriter(fh, fieldnames=["step", "seconds", *sorted(stats)], extrasaction="ignore")
                        if new:
                            writer.writeheader()
                    writer.writerow({"step": self.step, "seconds": round(time.perf_counter() - t0, 2), **stats})
                    fh.flush()
                    for hook in self.hooks:
                        hook.on_log(self.step, stats)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self._sync_buffers()
                    if main:
                        save_training_state(self.out / "last.pt", self.net, self.optimizer, self.step, self.meta)
        finally:
            bar.close()
            if fh is not None:
                fh.close()
            del batches  # stops the loader's worker processes
        final = self.out / "model.pt"
        if main:
            if self.export is not None:
                self.export(final)
            for hook in self.hooks:
                hook.on_end(self.out)
        if self.world > 1:
            dist.barrier()  # no rank leaves (and tears the group down) before rank 0 has written
        return final
