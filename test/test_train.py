"""Training: the official key layout, one step lowers the loss, exact resume, stage freezing, CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from ckd_ros.cli import main as cli_main
from ckd_ros.errors import ConfigError
from ckd_ros.model import load_model, load_variant
from ckd_ros.train import (
    CKDActor,
    CKDTrainingNet,
    LossConfig,
    TrainConfig,
    build_trainer,
    load_train_config,
    param_groups,
)

KEYS_FILE = Path(__file__).parent / "data" / "official_state_dict_keys.txt"


def tiny_config(tmp_path, **kw) -> TrainConfig:
    base = dict(
        name="t",
        stage=0,
        model="ckd_tiny",
        steps=2,
        batch_size=2,
        out_dir=str(tmp_path / "run"),
        lr={"head": 1e-3, "teacher": 1e-3},
        checkpoint_every=1,
        log_every=1,
    )
    cfg = TrainConfig(**(base | kw))
    cfg.data.num_sequences, cfg.data.length = 4, 40
    return cfg


def params(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.mark.slow
def test_vitb_training_model_has_the_878_official_keys():
    net = CKDTrainingNet(load_variant("ckd_vitb"))
    sd = net.state_dict()
    assert len(sd) == 878
    assert sd["box_head_v.conv1_ctr.0.weight"].shape == (256, 768, 3, 3)
    names = [re.match(r"(\S+)", line).group(1) for line in KEYS_FILE.read_text().splitlines()]
    assert list(net.inference_state_dict()) == names


def test_tiny_training_model_layout():
    net = CKDTrainingNet(load_variant("ckd_tiny"))
    prefixes = {k.split(".")[0] for k in net.state_dict()}
    assert prefixes == {"rgb_branch", "tir_branch", "box_head", "teacher_rgb", "teacher_tir", "box_head_v", "box_head_i"}
    assert net.box_head_v.conv1_ctr[0].weight.shape[1] == 64 and net.box_head.conv1_ctr[0].weight.shape[1] == 128


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_one_step_lowers_the_loss_on_a_fixed_batch(tmp_path, stage):
    cfg = tiny_config(tmp_path)
    trainer = build_trainer(cfg, progress=False)
    net = trainer.net
    actor = CKDActor(net, LossConfig(), stage)
    opt = torch.optim.AdamW(param_groups(net, {"head": 1e-3, "branch": 1e-3, "teacher": 1e-3}, 0.0))
    batch = trainer.data.sampler.batch(0, 4)

    def loss() -> float:
        torch.manual_seed(0)
        return float(actor(batch)[0].detach())

    before = loss()
    torch.manual_seed(0)
    opt.zero_grad()
    actor(batch)[0].backward()
    opt.step()
    assert loss() < before


def test_resume_reproduces_the_same_next_step(tmp_path):
    straight = build_trainer(tiny_config(tmp_path / "a"), progress=False)
    straight.run()
    first = build_trainer(tiny_config(tmp_path / "b", steps=1), progress=False)
    first.run()
    resumed = build_trainer(tiny_config(tmp_path / "b", steps=2), progress=False)
    assert resumed.step == 1
    resumed.run()
    a, b = params(straight.net), params(resumed.net)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "b" / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,seconds") and [r.split(",")[0] for r in log[1:]] == ["1", "2"]


def test_stage_chain_and_stage2_trains_only_the_head(tmp_path):
    s0 = tiny_config(tmp_path / "s0")
    build_trainer(s0, progress=False).run()
    s1 = tiny_config(
        tmp_path / "s1",
        stage=1,
        init=str(tmp_path / "s0" / "run" / "last.pt"),
        lr={"head": 1e-3, "branch": 1e-3, "teacher": 1e-3},
    )
    t1 = build_trainer(s1, progress=False)
    # students start as copies of their teachers
    assert torch.equal(t1.net.rgb_branch.blocks[0].attn.qkv.weight, t1.net.teacher_rgb.blocks[0].attn.qkv.weight)
    t1.run()
    s2 = tiny_config(tmp_path / "s2", stage=2, init=str(tmp_path / "s1" / "run" / "last.pt"), lr={"head": 1e-3})
    t2 = build_trainer(s2, progress=False)
    before = params(t2.net)
    t2.run()
    after = params(t2.net)
    assert all(torch.equal(before[k], after[k]) for k in before if "branch" in k or "teacher" in k)
    assert not torch.equal(before["box_head.conv1_ctr.0.weight"], after["box_head.conv1_ctr.0.weight"])
    model = load_model(tmp_path / "s2" / "run" / "model.pt")  # the exported inference model
    assert model.cfg.name == "ckd_tiny" and len(model.state_dict()) == len(t2.net.inference_state_dict())


def test_train_config_errors_are_named(tmp_path):
    with pytest.raises(ConfigError, match="set init"):
        TrainConfig(stage=1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"stage": 0, "stepz": 3}))
    with pytest.raises(ConfigError, match="unknown keys \\['stepz'\\]"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        load_train_config(bad, ["steps"])
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump({"stage": 0, "model": "ckd_tiny"}))
    assert load_train_config(ok, ["steps=7", "loss.style=0"]).steps == 7
    with pytest.raises(ConfigError, match="match no parameter"):
        param_groups(CKDTrainingNet(load_variant("ckd_tiny")), {"backbone": 1e-3}, 0.0)


def test_train_command_end_to_end(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "stage": 0,
                "model": "ckd_tiny",
                "steps": 2,
                "batch_size": 2,
                "lr": {"head": 1e-3, "teacher": 1e-3},
                "data": {"num_sequences": 3, "length": 40},
            }
        )
    )
    assert cli_main(["train", str(cfg), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "model.pt").is_file() and (tmp_path / "o" / "last.pt").is_file()
    assert "stage 0" in capsys.readouterr().out
    assert cli_main(["train", str(tmp_path / "nope.yaml")]) == 2


def test_teacher_baselines_run_through_the_tracker():
    """The RGB-only / TIR-only baselines of the evaluation table: each sees only its own modality."""
    from ckd_ros.data.synthetic import SynthConfig, SyntheticSequence
    from ckd_ros.tracker import CKDTracker
    from ckd_ros.train.network import TeacherNet

    net = CKDTrainingNet(load_variant("ckd_tiny")).eval()
    seq = SyntheticSequence(3, SynthConfig(height=120, width=160, length=4))
    init = tuple(seq.boxes[0])
    for modality in ("rgb", "tir"):
        boxes = []
        for blind_other in (False, True):
            trk = CKDTracker(TeacherNet(net, modality), fused_attention=True)
            rgb, tir = seq.frame(0)
            trk.initialize(rgb, tir, init)
            rgb, tir = seq.frame(1)
            if blind_other:  # the other modality's image must not matter
                rgb, tir = (rgb, tir * 0) if modality == "rgb" else (rgb * 0, tir)
            boxes.append(trk.track(rgb, tir).box)
        assert boxes[0] == boxes[1], modality
    with pytest.raises(ConfigError, match="two-branch"):
        CKDTracker(TeacherNet(net, "rgb"), stack_branches=True)
