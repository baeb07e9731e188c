"""The CKD network: official key set, elimination mechanics, parity with an official-structure forward."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import random_inputs, sharpen
from reference_ckd import reference_forward

from ckd_ros.errors import ConfigError, InputError
from ckd_ros.model import ModelConfig, build_model, load_variant, run_lockstep
from ckd_ros.model.elimination import template_center_mask
from ckd_ros.model.head import FusedCenterHead

KEYS_FILE = Path(__file__).parent / "data" / "official_state_dict_keys.txt"  # docs/checkpoints.md, "The inference keys"


def official_keys() -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in KEYS_FILE.read_text().splitlines():
        m = re.fullmatch(r"(\S+) \(([^)]*)\) (\S+)", line.strip())
        rows.append((m.group(1), tuple(int(x) for x in m.group(2).split(",") if x.strip()), m.group(3)))
    return rows


def test_vitb_state_dict_is_exactly_appendix_a(vitb_model):
    got = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in vitb_model.state_dict().items()]
    expected = official_keys()
    assert len(expected) == 394
    assert got == expected


def test_ctr_point_mask_is_flat_index_27_for_8x8():
    mask = template_center_mask(8)
    assert mask.shape == (1, 64)
    assert mask.nonzero()[:, 1].tolist() == [27]


@pytest.mark.parametrize("variant", ["ckd_vitb_mce", "ckd_vitb_ce", "ckd_vitb", "ckd_small", "ckd_tiny"])
def test_variants_load(variant):
    cfg = load_variant(variant)
    assert cfg.name == variant
    expected = {"ckd_vitb_mce": [256, 180, 126, 89], "ckd_vitb_ce": [256, 180, 126, 89], "ckd_vitb": [256]}
    if variant in expected:
        assert cfg.search_token_counts() == expected[variant]


def test_bad_variant_and_config_values_are_named():
    with pytest.raises(ConfigError, match="unknown model variant 'nope'.*ckd_vitb_mce"):
        load_variant("nope")
    with pytest.raises(ConfigError, match="not divisible by num_heads"):
        ModelConfig(embed_dim=100, num_heads=3)
    with pytest.raises(ConfigError, match="ce_loc"):
        ModelConfig(depth=4, ce_loc=(3, 6))
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({"embed_dims": 3})


def test_vitb_mce_token_counts_zeros_and_shared_positions(vitb_model):
    cfg = vitb_model.cfg
    z_v, z_i, x_v, x_i = random_inputs(cfg)
    tokens = [vitb_model.rgb_branch.embed(z_v, x_v), vitb_model.tir_branch.embed(z_i, x_i)]
    with torch.no_grad():
        out = run_lockstep([vitb_model.rgb_branch, vitb_model.tir_branch], tokens, cfg, vitb_model.template_mask(1))
    assert [g.shape[1] for g in out.kept_index] == [89, 89]
    assert torch.equal(out.kept_index[0], out.kept_index[1])  # MCE: same positions, same order
    removed = sorted(set(range(256)) - set(out.kept_index[0][0].tolist()))
    assert len(removed) == 256 - 89
    for feats in out.tokens:
        assert feats.shape == (1, 320, 768)
        search = feats[0, 64:]
        assert torch.all(search[removed] == 0)  # exact zeros, not LN(0)
        assert torch.all(search[out.kept_index[0][0]].abs().sum(-1) > 0)


def test_lockstep_counts_after_each_elimination(tiny_model):
    cfg = tiny_model.cfg.replace(depth=4)
    assert cfg.search_token_counts() == [64, 45, 32]
    z_v, z_i, x_v, x_i = random_inputs(cfg)
    tokens = [tiny_model.rgb_branch.embed(z_v, x_v), tiny_model.tir_branch.embed(z_i, x_i)]
    with torch.no_grad():
        out = run_lockstep(
            [tiny_model.rgb_branch, tiny_model.tir_branch], tokens, cfg, tiny_model.template_mask(1), collect_blocks=True
        )
    seen = [b.shape[1] - 16 for b in out.block_outputs[0]]
    assert seen == [64, 45, 32, 32]  # after blocks 0..3; elimination at blocks 1 and 2


def test_ce_mode_may_keep_different_positions_per_branch(tiny_model):
    tiny_model.set_elimination(ce_mode="ce")
    z_v, z_i, x_v, x_i = random_inputs(tiny_model.cfg, batch=4)
    tokens = [tiny_model.rgb_branch.embed(z_v, x_v), tiny_model.tir_branch.embed(z_i, x_i)]
    with torch.no_grad():
        out = run_lockstep([tiny_model.rgb_branch, tiny_model.tir_branch], tokens, tiny_model.cfg, tiny_model.template_mask(4))
    assert out.kept_index[0].shape == out.kept_index[1].shape == (4, 32)
    assert not torch.equal(out.kept_index[0].sort(1).values, out.kept_index[1].sort(1).values)


@pytest.mark.parametrize("mode", ["mce", "ce", "none"])
@pytest.mark.parametrize("batch", [1, 3])
def test_bit_exact_with_official_structure_forward(tiny_model, mode, batch):
    tiny_model.set_elimination(ce_mode=mode)
    inputs = random_inputs(tiny_model.cfg, batch=batch, seed=batch)
    mask = template_center_mask(tiny_model.cfg.template_feat, batch)
    loc = () if mode == "none" else tiny_model.cfg.ce_loc
    with torch.no_grad():
        ours = tiny_model(*inputs)
        ref = reference_forward(tiny_model, *inputs, mode=mode, ce_loc=loc, box_mask_z=mask)
    for key, r in zip(("score_map", "size_map", "offset_map", "pred_boxes"), ref):
        assert ours[key].shape == r.shape
        assert torch.equal(ours[key], r), f"{key} differs by {(ours[key] - r).abs().max().item()}"


@pytest.mark.slow
def test_vitb_bit_exact_with_official_structure_forward(vitb_model):
    inputs = random_inputs(vitb_model.cfg, batch=1, seed=5)
    with torch.no_grad():
        ours = vitb_model(*inputs)
        ref = reference_forward(vitb_model, *inputs, box_mask_z=template_center_mask(8))
    assert torch.equal(ours["score_map"], ref[0]) and torch.equal(ours["pred_boxes"], ref[3])


def test_batch_of_three_equals_three_batches_of_one(tiny_model):
    inputs = random_inputs(tiny_model.cfg, batch=3, seed=7)
    with torch.no_grad():
        batched = tiny_model(*inputs)
        singles = [tiny_model(*(t[i : i + 1] for t in inputs)) for i in range(3)]
    for key in ("score_map", "size_map", "offset_map", "pred_boxes"):
        stacked = torch.cat([s[key] for s in singles])
        torch.testing.assert_close(batched[key], stacked, rtol=1e-5, atol=1e-5)


def test_keep_ratio_one_equals_no_elimination(tiny_model):
    inputs = random_inputs(tiny_model.cfg, seed=3)
    with torch.no_grad():
        tiny_model.set_elimination(ce_mode="none")
        none = tiny_model(*inputs)
        tiny_model.cfg = tiny_model.cfg.replace(ce_mode="mce", ce_keep_ratio=1.0)
        full = tiny_model(*inputs)
    for key in none:
        assert torch.equal(none[key], full[key])


def test_elimination_actually_changes_outputs(tiny_model):
    inputs = random_inputs(tiny_model.cfg, seed=3)
    with torch.no_grad():
        mce = tiny_model(*inputs)["score_map"]
        tiny_model.set_elimination(ce_loc=())
        none = tiny_model(*inputs)["score_map"]
    assert not torch.equal(mce, none)


def test_fused_attention_matches_eager_within_float_tolerance(tiny_model):
    inputs = random_inputs(tiny_model.cfg, seed=11)
    with torch.no_grad():
        eager = tiny_model(*inputs)
        tiny_model.fused_attention = True
        fused = tiny_model(*inputs)
    torch.testing.assert_close(eager["score_map"], fused["score_map"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["mce", "ce", "none"])
def test_stacked_branches_equal_the_per_branch_path(tiny_model, mode):
    """Branch features: the same maths in another order of launches, bit-exact in fp32 with the
    official attention order, at batch 1 and 2, with and without elimination (CE: different kept
    indices per branch). Model outputs (the head's trunks fused, BatchNorm folded): equal up to
    float rounding."""
    sharpen(tiny_model, seed=5)
    if mode != "mce":
        tiny_model.set_elimination(ce_mode="ce") if mode == "ce" else tiny_model.set_elimination(ce_loc=())
    cfg = tiny_model.cfg
    branches = [tiny_model.rgb_branch, tiny_model.tir_branch]
    for batch in (1, 2):
        z_v, z_i, x_v, x_i = inputs = random_inputs(cfg, batch=batch, seed=7)
        with torch.no_grad():
            tokens = [tiny_model.rgb_branch.embed(z_v, x_v), tiny_model.tir_branch.embed(z_i, x_i)]
            mask = tiny_model.template_mask(batch)
            per_branch = run_lockstep(branches, tokens, cfg, mask).tokens
            tiny_model.stack_branches(False)
            ref = tiny_model(*inputs)
            tiny_model.stack_branches()
            stacked = tiny_model.stacked(tokens, cfg, mask, fused_attention=False)
            out = tiny_model(*inputs)
        assert all(torch.equal(a, b) for a, b in zip(per_branch, stacked, strict=True)), (mode, batch)
        for key in ("score_map", "size_map", "offset_map", "pred_boxes"):  # sharpened weights: logits in the 1000s
            assert (out[key] - ref[key]).abs().max() <= 1e-4 * max(1.0, ref[key].abs().max()), (mode, batch, key)


def test_stacked_embedding_equals_per_branch_embedding(tiny_model):
    """Patch projection as one batched matmul over both branches' template and search patches."""
    sharpen(tiny_model, seed=6)
    z_v, z_i, x_v, x_i = random_inputs(tiny_model.cfg, batch=2, seed=3)
    tiny_model.stack_branches()
    with torch.no_grad():
        ref = [tiny_model.rgb_branch.embed(z_v, x_v), tiny_model.tir_branch.embed(z_i, x_i)]
        out = tiny_model.stacked.embed([z_v, z_i], [x_v, x_i])
    for a, b in zip(out, ref, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_fused_head_equals_the_three_trunks_with_batchnorm_statistics(tiny_model):
    head = tiny_model.box_head
    g = torch.Generator().manual_seed(9)
    for m in head.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # trained-like statistics, so folding matters
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
    fmap = torch.randn(2, 2 * tiny_model.cfg.embed_dim, 8, 8, generator=g)
    with torch.no_grad():
        ref, out = head(fmap), FusedCenterHead(head)(fmap)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in head.modules()) == 15
    for key in ("score_map", "size_map", "offset_map"):
        assert out[key].shape == ref[key].shape
        torch.testing.assert_close(out[key], ref[key], rtol=1e-5, atol=1e-5, msg=key)


def test_stacked_branches_follow_dtype_and_take_current_weights(tiny_model):
    tiny_model.stack_branches()
    tiny_model.to(torch.bfloat16)
    assert tiny_model.stacked.blocks[0].qkv_w.dtype == torch.bfloat16
    inputs = [x.to(torch.bfloat16) for x in random_inputs(tiny_model.cfg, seed=2)]
    with torch.no_grad():
        stacked = tiny_model(*inputs)["score_map"]
        tiny_model.stack_branches(False)
        ref = tiny_model(*inputs)["score_map"]
    torch.testing.assert_close(stacked.float(), ref.float(), rtol=2e-2, atol=2e-2)
    # a copy, not a view: weights changed after stacking are not seen until stack_branches again
    tiny_model.stack_branches()
    with torch.no_grad():
        tiny_model.rgb_branch.blocks[0].attn.qkv.weight.mul_(2)
    assert not torch.equal(tiny_model.stacked.blocks[0].qkv_w[0], tiny_model.rgb_branch.blocks[0].attn.qkv.weight)


def test_wrong_input_sizes_are_one_clear_error(tiny_model):
    z_v, z_i, x_v, x_i = random_inputs(tiny_model.cfg)
    with pytest.raises(InputError, match=r"search_rgb has shape \(1, 3, 256, 256\).*expects \(1, 3, 128, 128\)"):
        tiny_model(z_v, z_i, torch.zeros(1, 3, 256, 256), x_i)
    with pytest.raises(InputError, match="template_tir"):
        tiny_model(z_v, z_i[:, :1], x_v, x_i)
    with pytest.raises(InputError, match="one batch size"):
        tiny_model(z_v, z_i, x_v, torch.cat([x_i, x_i]))


def test_share_student_aliases_one_branch():
    model = build_model(load_variant("ckd_tiny").replace(share_student=True))
    sd = model.state_dict()
    assert model.tir_branch is model.rgb_branch
    assert torch.equal(sd["rgb_branch.blocks.0.attn.qkv.weight"], sd["tir_branch.blocks.0.attn.qkv.weight"])


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("mode", ["mce", "ce"])
def test_forward_has_no_op_that_waits_for_the_device(tiny_model, stacked, mode):
    """Ops that read a value back to the host (nonzero, item) stall a GPU mid-frame and break CUDA
    graph capture; the forward, elimination included, has none (checked by op name on CPU)."""
    from torch.profiler import ProfilerActivity, profile

    tiny_model.set_elimination(ce_mode=mode)
    tiny_model.fused_attention = True
    tiny_model.stack_branches(stacked)
    inputs = random_inputs(tiny_model.cfg, seed=1)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        tiny_model(*inputs)
    ops = {e.key for e in prof.key_averages()}
    assert "aten::topk" in ops or "aten::sort" in ops  # elimination ran
    assert not ops & {"aten::nonzero", "aten::item", "aten::_local_scalar_dense", "aten::is_nonzero"}, ops
