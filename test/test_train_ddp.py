"""The torchrun path: 2 CPU ranks (gloo) average their gradients and end with identical weights;
only rank 0 writes files and prints; an interrupted run resumes to the weights of a straight one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).parent


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=HERE.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_ranks_end_identical_and_an_interrupted_run_resumes(tmp_path):
    script = str(HERE / "ddp_train_script.py")
    torchrun(script, str(tmp_path / "straight"), "4")
    r0, r1 = weights(tmp_path / "straight" / "rank0.pt"), weights(tmp_path / "straight" / "rank1.pt")
    assert same(r0, r1)
    start = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["state_dict"]
    assert same(start, r0)
    log = (tmp_path / "straight" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]  # one writer, one row per step
    # interrupted after step 2 (its last checkpoint), then resumed to 4: the straight run's weights
    torchrun(script, str(tmp_path / "cut"), "2")
    torchrun(script, str(tmp_path / "cut"), "4")
    assert same(weights(tmp_path / "cut" / "rank0.pt"), r0) and same(weights(tmp_path / "cut" / "rank1.pt"), r0)


def test_train_command_under_torchrun_speaks_once(tmp_path):
    cfg = tmp_path / "c.yaml"
    body = {"stage": 0, "model": "ckd_tiny", "steps": 2, "batch_size": 2, "lr": {"head": 1e-3, "teacher": 1e-3}}
    cfg.write_text(yaml.safe_dump(body | {"device": "cpu", "data": {"num_sequences": 3, "length": 30, "num_workers": 1}}))
    done = torchrun("-m", "ckd_ros.cli", "train", str(cfg), "--out", str(tmp_path / "o"))
    assert done.stdout.count("stage 0 (c): 2 steps x batch 2 x 2 rank(s)") == 1
    assert done.stdout.count("wrote ") == 1
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["curves.png", "last.pt", "log.csv", "model.pt", "tensorboard"]
    assert len(list((tmp_path / "o" / "tensorboard").iterdir())) == 1  # one event file: one writer
