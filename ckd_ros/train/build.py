"""Assembling a CKD training run from its config: the stage logic the generic trainer must not know.

``build_trainer(cfg)`` makes the training net, gives it its starting weights (``init``: the
previous stage's training file, or real weights, see :func:`initialise`), the optimizer's
parameter groups, the CKD actor of the stage, the pair sampler and its loader, and hands them to
``Trainer``. Every check that can fail on a user's input (config, data on disk, the init
checkpoint) runs here, before the first step.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from ckd_ros.errors import CheckpointError
from ckd_ros.model.checkpoint import check_state_dict
from ckd_ros.train.actor import CKDActor
from ckd_ros.train.config import TrainConfig
from ckd_ros.train.data import StepLoader, make_sources
from ckd_ros.train.network import CKDTrainingNet, TeacherNet
from ckd_ros.train.sampler import PairSampler
from ckd_ros.train.trainer import Trainer, TrainerSettings, param_groups, read_training_state, setup_distributed


def initialise(net: CKDTrainingNet, cfg: TrainConfig) -> None:
    """Starting weights of the stage. A training file of ours (``last.pt`` of the previous stage)
    must fit the net exactly; stage 1 started from a stage-0 file copies the teachers into the
    students. Other files are real weights, see ``ckd_ros.train.pretrained``."""
    if not cfg.init:
        return
    path = Path(os.path.expanduser(cfg.init))
    if not path.is_file():
        raise CheckpointError(f"{path}: init checkpoint not found")
    try:
        state = read_training_state(path)
    except CheckpointError:
        from ckd_ros.train.pretrained import load_pretrained

        load_pretrained(net, path, cfg.stage, cfg.trust_pickle)
        return
    # keys and shapes, not the variant name: stage 2 may switch elimination on (ckd_vitb → ckd_vitb_mce)
    trained = state.get("model_config", {}).get("name", "?")
    check_state_dict(net.state_dict(), state["state_dict"], f"{path} (trained {trained}; this stage trains {cfg.model})")
    net.load_state_dict(state["state_dict"])
    if state["train_config"]["stage"] == 0 and cfg.stage == 1:
        net.init_students_from_teachers()


def load_teacher(path: str | Path, modality: str) -> TeacherNet:
    """One teacher of a training file (``last.pt``) as a tracker-ready single-modality net: the
    RGB-only / TIR-only baselines of the evaluation table."""
    from ckd_ros.model import ModelConfig

    state = read_training_state(path)
    net = CKDTrainingNet(ModelConfig.from_dict(state["model_config"]))
    try:
        net.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit its own model config: {str(exc).splitlines()[0]}") from None
    return TeacherNet(net, modality)


def _device(name: str, world: int) -> torch.device:
    from ckd_ros.runtime import resolve_device

    dev = resolve_device(name)
    if dev.type == "cuda" and world > 1:
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return dev


def build_trainer(
    cfg: TrainConfig,
    sources: tuple[object, int] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Trainer:
    """A ready ``Trainer`` for ``cfg`` (``sources``: (index → source, count), default from cfg.data)."""
    rank, world = setup_distributed()
    quiet = (lambda _line: None) if rank else log  # one rank speaks
    src, count = sources if sources is not None else make_sources(cfg, quiet)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device, world)
    torch.manual_seed(cfg.seed)  # the initial weights are part of the recipe
    net = CKDTrainingNet(cfg.model_config())
    initialise(net, cfg)
    net.to(device).train()
    optimizer = torch.optim.AdamW(param_groups(net, cfg.lr, cfg.weight_decay))
    actor = CKDActor(net, cfg.loss, cfg.stage)
    sampler = PairSampler(src, count, cfg.sampler_config(), seed=cfg.seed)
    loader = StepLoader(sampler, cfg.steps, cfg.batch_size, cfg.data.num_workers, rank, world)
    settings = TrainerSettings(
        name=f"stage {cfg.stage} {cfg.name}",
        steps=cfg.steps,
        grad_clip=cfg.grad_clip,
        checkpoint_every=cfg.checkpoint_every,
        log_every=cfg.log_every,
        out_dir=cfg.out_dir,
        seed=cfg.seed,
        progress_keys=CKDActor.progress_keys,
    )

    def export(path: Path) -> Path:
        from ckd_ros.model import save_checkpoint

        extra = {"trained_by": "ckd-ros train", "stage": cfg.stage, "steps": cfg.steps, "run": cfg.name}
        return save_checkpoint(net.to_inference(), path, extra=extra)

    meta = {"model_config": net.cfg.to_dict(), "train_config": cfg.to_dict()}
    from ckd_ros.train.logs import RunLogs

    hooks = [RunLogs(cfg.out_dir, cfg.tensorboard, quiet)] if rank == 0 else []
    trainer = Trainer(
        actor, net, loader, optimizer, settings, device, meta=meta, export=export, hooks=hooks, progress=progress, log=quiet
    )
    trainer.data = loader  # the sampler behind the loader, for tests and benchmarks
    return trainer
