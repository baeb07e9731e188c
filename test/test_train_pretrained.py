"""Stages started from real weights: a converted CKD model (stages 1, 2) or a ViT tracker with the
official ``backbone.*`` / ``box_head.*`` key names (stage 0 teachers, the official stage-1 init)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ckd_ros.errors import CheckpointError
from ckd_ros.model import build_model, save_checkpoint
from ckd_ros.train import CKDTrainingNet, DataConfig, TrainConfig, build_trainer, load_train_config


def config(tmp_path, stage: int, init, **kw) -> TrainConfig:
    lr = {"head": 1e-3} if stage == 2 else {"head": 1e-3, "branch": 1e-3, "teacher": 1e-3}
    base = dict(stage=stage, init=str(init), model="ckd_tiny", steps=1, batch_size=2, lr=lr, out_dir=str(tmp_path / "run"))
    return TrainConfig(**(base | kw), data=DataConfig(num_sequences=2, length=30, num_workers=0))


@pytest.fixture
def ckd_file(tmp_path):
    torch.manual_seed(3)
    model = build_model("ckd_tiny")
    return save_checkpoint(model, tmp_path / "ckd.pt"), model.state_dict()


@pytest.mark.parametrize("stage", [1, 2])
def test_stage_1_and_2_start_from_a_converted_ckd_model(tmp_path, ckd_file, stage):
    path, weights = ckd_file
    trainer = build_trainer(config(tmp_path, stage, path), progress=False)
    net = trainer.net
    got = net.state_dict()
    assert all(torch.equal(got[k], v) for k, v in weights.items())  # students + fused head as they are
    assert torch.equal(net.teacher_tir.blocks[1].mlp.fc1.weight, net.tir_branch.blocks[1].mlp.fc1.weight)
    c = net.cfg.embed_dim
    fused_w, fused_b = net.box_head.conv1_ctr[0].weight, net.box_head.conv1_ctr[0].bias
    assert torch.equal(net.box_head_i.conv1_ctr[0].weight, fused_w[:, c:])
    # the two single-modality first layers add up to the fused one
    x = torch.randn(1, 2 * c, 4, 4)
    both = F.conv2d(x[:, :c], net.box_head_v.conv1_ctr[0].weight, net.box_head_v.conv1_ctr[0].bias, padding=1) + F.conv2d(
        x[:, c:], net.box_head_i.conv1_ctr[0].weight, net.box_head_i.conv1_ctr[0].bias, padding=1
    )
    assert torch.allclose(both, F.conv2d(x, fused_w, fused_b, padding=1), atol=1e-5)
    trainer.run()


def vit_tracker_file(tmp_path, grid_x: int = 12, grid_z: int = 6):
    """A DropTrack-like file: backbone.* on other grids plus temporal embeddings, box_head.*."""
    torch.manual_seed(4)
    model = build_model("ckd_tiny")
    sd = model.state_dict()
    backbone = {k.removeprefix("rgb_branch."): v for k, v in sd.items() if k.startswith("rgb_branch.")}
    c = backbone["pos_embed_x"].shape[-1]
    backbone["pos_embed_x"] = torch.randn(1, grid_x * grid_x, c)
    backbone["pos_embed_z"] = torch.randn(1, grid_z * grid_z, c)
    backbone["temporal_pos_embed_x"] = torch.randn(1, 1, c)
    backbone["temporal_pos_embed_z"] = torch.randn(1, 1, c)
    head = CKDTrainingNet(model.cfg).box_head_v.state_dict()  # a single-modality head: half the fused input width
    state = {**{f"backbone.{k}": v for k, v in backbone.items()}, **{f"box_head.{k}": v for k, v in head.items()}}
    path = tmp_path / "droptrack.pth"
    torch.save({"net": state}, path)
    return path, backbone, head


def test_stage_0_teachers_and_the_official_stage_1_init_from_a_vit_tracker(tmp_path):
    path, backbone, head = vit_tracker_file(tmp_path)
    t0 = build_trainer(config(tmp_path / "a", 0, path, lr={"head": 1e-3, "teacher": 1e-3}), progress=False).net
    side = t0.cfg.search_feat
    grid = backbone["pos_embed_x"].reshape(1, 12, 12, -1).permute(0, 3, 1, 2)
    want = (
        F.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)
        .permute(0, 2, 3, 1)
        .reshape(1, side * side, -1)
    )
    want = want + backbone["temporal_pos_embed_x"]
    for teacher in (t0.teacher_rgb, t0.teacher_tir):
        assert torch.allclose(teacher.pos_embed_x, want, atol=1e-6)
        assert torch.equal(teacher.blocks[0].attn.qkv.weight, backbone["blocks.0.attn.qkv.weight"])
    assert torch.equal(t0.box_head_i.conv1_size[0].weight, head["conv1_size.0.weight"])
    t1 = build_trainer(config(tmp_path / "b", 1, path), progress=False).net
    assert torch.equal(t1.rgb_branch.blocks[0].attn.qkv.weight, backbone["blocks.0.attn.qkv.weight"])
    w = head["conv1_ctr.0.weight"]
    assert torch.equal(
        t1.box_head.conv1_ctr[0].weight, torch.cat([w, w], 1)
    )  # duplicated, not halved (docs/training.md, "Stages")
    assert torch.equal(t1.box_head.conv1_ctr[0].bias, head["conv1_ctr.0.bias"])


def test_real_weights_that_do_not_fit_the_stage_are_named(tmp_path, ckd_file):
    path, _ = ckd_file
    with pytest.raises(CheckpointError, match="stage 0 trains teachers from a single-modality ViT"):
        build_trainer(config(tmp_path, 0, path, lr={"head": 1e-3, "teacher": 1e-3}), progress=False)
    vit, _, _ = vit_tracker_file(tmp_path)
    with pytest.raises(CheckpointError, match="stage 2 fine-tunes the MCE head of a CKD model"):
        build_trainer(config(tmp_path, 2, vit), progress=False)
    small = save_checkpoint(build_model("ckd_small"), tmp_path / "small.pt")
    with pytest.raises(CheckpointError, match="small.pt: does not fit the model: .*mis-shaped"):
        build_trainer(config(tmp_path, 1, small), progress=False)


def test_the_fine_tuning_configs_load(tmp_path):
    s1 = load_train_config("config/train/finetune_official_lasher.yaml")
    assert (s1.stage, s1.model, s1.data.kind, s1.batch_size) == (1, "ckd_vitb", "lasher", 10)
    s2 = load_train_config("config/train/finetune_official_lasher_stage2.yaml", [f"data.root={tmp_path}"])
    assert (s2.stage, s2.model, s2.init) == (2, "ckd_vitb_mce", s1.out_dir + "/last.pt")
