"""The box head is one swappable part: ``model/head.py`` is the only place that knows which head
the network has.

The first tests hold the CENTER head's methods to independent computations of what the network, the
tracker and the losses computed before they delegated to it; the rest put a stand-in head of a
different shape in its place (``head.HEAD``, the one assignment a swap makes) and run it through
every consumer (config layout and validation, checkpoint and bare state_dict, network and its fast
paths, ONNX output names, tracker, training net, stage-1 init and tracking loss) without touching
them.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import random_inputs
from torch import Tensor, nn

from ckd_ros.errors import ConfigError
from ckd_ros.model import build_model, head, load_model, load_variant, save_checkpoint
from ckd_ros.model.checkpoint import infer_config
from ckd_ros.model.export import OUTPUTS, output_names
from ckd_ros.model.head import BoxHead, CenterHead, Layout, focal_loss, gaussian_heatmap
from ckd_ros.model.int8 import int8_support
from ckd_ros.tracker import CKDTracker
from ckd_ros.train.losses import giou_l1_loss, tracking_loss
from ckd_ros.train.network import CKDTrainingNet, TeacherNet


def entries(module: nn.Module, prefix: str = "") -> list[tuple[str, tuple[int, ...], bool]]:
    params = {name for name, _ in module.named_parameters()}
    return [(prefix + k, tuple(v.shape), k in params) for k, v in module.state_dict().items()]


def random_maps(batch: int = 2, feat: int = 8, seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "score_map": torch.rand(batch, 1, feat, feat, generator=g).clamp(1e-4, 1 - 1e-4),
        "size_map": torch.rand(batch, 2, feat, feat, generator=g),
        "offset_map": torch.randn(batch, 2, feat, feat, generator=g),
    }


# ---- the CENTER head in use ------------------------------------------------------------------


@pytest.mark.parametrize("in_channels", [128, 64])  # the fused head (two branches) and a teacher's
def test_center_layout_is_the_built_heads_state_dict(in_channels):
    cfg = load_variant("ckd_tiny")
    built = head.build_head(in_channels, cfg)
    assert type(built) is head.HEAD is CenterHead
    assert list(CenterHead.param_layout(in_channels, cfg.head_channels, "box_head.")) == entries(built, "box_head.")
    assert built.state_dict()[CenterHead.WIDTH_KEY].shape[0] == cfg.head_channels
    assert CenterHead.width_problem(cfg.head_channels) is None
    assert CenterHead.width_problem(12) == "head_channels 12 must be a multiple of 8 (widths /2, /4, /8)"
    assert len(entries(built)) == 90  # docs/checkpoints.md: box_head., 90 entries


def test_center_outputs_are_the_models_and_the_onnx_graphs():
    model = build_model("ckd_tiny")
    with torch.no_grad():
        out = model(*random_inputs(model.cfg))
    assert OUTPUTS == output_names(model) == ("score_map", "size_map", "offset_map", "pred_boxes")
    assert list(out) == list(OUTPUTS)


def peak_boxes(maps: dict[str, Tensor], window: Tensor | None = None) -> Tensor:
    """docs/tracker.md's decoding, cell by cell: the (windowed) score map's peak (iy, ix), then
    cx = (ix + offset_x) / F, cy = (iy + offset_y) / F and (w, h) = the size map there."""
    score = maps["score_map"] if window is None else window * maps["score_map"]
    feat = score.shape[-1]
    rows = []
    for b in range(score.shape[0]):
        iy, ix = divmod(int(score[b, 0].argmax()), feat)
        ox, oy = maps["offset_map"][b, :, iy, ix].tolist()
        w, h = maps["size_map"][b, :, iy, ix].tolist()
        rows.append([(ix + ox) / feat, (iy + oy) / feat, w, h])
    return torch.tensor(rows)


def test_center_decode_score_and_loss_are_the_former_inline_computations():
    maps = random_maps()
    window = torch.rand(8, 8)
    raw = CenterHead.decode(maps)
    torch.testing.assert_close(raw, peak_boxes(maps))
    windowed = CenterHead.decode(maps, window)
    torch.testing.assert_close(windowed, peak_boxes(maps, window))
    assert not torch.equal(windowed, raw)  # the window moves the peak here
    # a hand-placed peak: cell (iy 5, ix 2) of an 8x8 map, offset (0.25, -0.5), size (0.3, 0.6)
    maps["score_map"][1, 0, 5, 2] = 1.0
    maps["offset_map"][1, :, 5, 2] = torch.tensor([0.25, -0.5])
    maps["size_map"][1, :, 5, 2] = torch.tensor([0.3, 0.6])
    torch.testing.assert_close(CenterHead.decode(maps)[1], torch.tensor([2.25 / 8, 4.5 / 8, 0.3, 0.6]))
    assert CenterHead.score(maps)[1].item() == 1.0
    assert torch.equal(CenterHead.score(maps), torch.amax(maps["score_map"], dim=(1, 2, 3)))
    gt = torch.tensor([[0.2, 0.3, 0.4, 0.3], [0.5, 0.1, 0.2, 0.6]])
    heatmap = gaussian_heatmap(gt, 8)
    assert torch.equal(CenterHead.loss(maps, gt), focal_loss(maps["score_map"], heatmap))
    # the tracking loss adds the head's term to the generic GIoU and L1 (weights 2, 5, 1)
    maps["pred_boxes"] = CenterHead.decode(maps).unsqueeze(1)
    total, terms = tracking_loss(maps, gt)
    giou, l1 = giou_l1_loss(maps["pred_boxes"].view(-1, 4), gt)
    assert set(terms) == {"giou", "l1", "focal", "iou"}
    assert total.item() == pytest.approx(2 * giou.item() + 5 * l1.item() + focal_loss(maps["score_map"], heatmap).item())


def test_center_merge_concatenates_the_first_convolutions_and_sums_their_biases():
    torch.manual_seed(1)
    cfg = load_variant("ckd_tiny")
    rgb, tir, fused = (head.build_head(c, cfg) for c in (64, 64, 128))
    fused.merge_from(rgb, tir)
    for trunk in CenterHead.BRANCHES:
        first = getattr(fused, f"conv1_{trunk}")[0]
        parts = [getattr(h, f"conv1_{trunk}")[0] for h in (rgb, tir)]
        assert torch.equal(first.weight, torch.cat([p.weight for p in parts], dim=1))
        assert torch.equal(first.bias, parts[0].bias + parts[1].bias)
        assert torch.equal(getattr(fused, f"conv5_{trunk}").weight, getattr(rgb, f"conv5_{trunk}").weight)


# ---- a stand-in head of another shape --------------------------------------------------------


class CellBoxHead(BoxHead):
    """One shared 1x1 trunk; per cell a confidence and a whole (cx, cy, w, h) box. Nothing of it is
    named like CENTER's maps or weights, and it has no fused form."""

    OUTPUTS = ("conf_map", "box_map")
    LOSS_NAME = "conf_bce"
    WIDTH_KEY = "proj.weight"

    def __init__(self, in_channels: int, width: int, feat_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, 1)
        self.out = nn.Conv2d(width, 5, 1)

    @staticmethod
    def param_layout(in_channels: int, width: int, prefix: str = "") -> Layout:
        yield f"{prefix}proj.weight", (width, in_channels, 1, 1), True
        yield f"{prefix}proj.bias", (width,), True
        yield f"{prefix}out.weight", (5, width, 1, 1), True
        yield f"{prefix}out.bias", (5,), True

    @staticmethod
    def width_problem(width: int) -> str | None:
        return None if width > 0 else f"head_channels {width} must be positive"

    def forward(self, fmap: Tensor) -> dict[str, Tensor]:
        x = self.out(torch.relu(self.proj(fmap)))
        return {"conf_map": x[:, :1].sigmoid(), "box_map": x[:, 1:].sigmoid()}

    @staticmethod
    def decode(maps: dict[str, Tensor], window: Tensor | None = None) -> Tensor:
        conf = maps["conf_map"] if window is None else window * maps["conf_map"]
        idx = conf.flatten(1).argmax(dim=1)
        return maps["box_map"].flatten(2)[torch.arange(idx.shape[0]), :, idx]

    @staticmethod
    def score(maps: dict[str, Tensor]) -> Tensor:
        return maps["conf_map"].flatten(1).max(dim=1).values

    @torch.no_grad()
    def merge_from(self, rgb: BoxHead, tir: BoxHead) -> None:
        self.proj.weight.copy_(torch.cat([rgb.proj.weight, tir.proj.weight], dim=1))
        self.proj.bias.copy_(rgb.proj.bias + tir.proj.bias)
        self.out.load_state_dict(rgb.out.state_dict())

    @staticmethod
    def loss(maps: dict[str, Tensor], gt_boxes: Tensor) -> Tensor:
        """BCE of the confidence against 1 at the cell of the box centre, 0 elsewhere."""
        conf = maps["conf_map"].float()
        feat = conf.shape[-1]
        centre = ((gt_boxes[:, :2] + gt_boxes[:, 2:] / 2) * feat).long().clamp(0, feat - 1)
        target = torch.zeros_like(conf)
        target[torch.arange(conf.shape[0]), 0, centre[:, 1], centre[:, 0]] = 1.0
        return F.binary_cross_entropy(conf, target)


@pytest.fixture
def swapped(monkeypatch):
    """The network's head is ``CellBoxHead``: the one assignment a swap makes in head.py, and
    nothing else."""
    monkeypatch.setattr(head, "HEAD", CellBoxHead)
    torch.manual_seed(5)
    return load_variant("ckd_tiny")


def test_a_swapped_head_is_the_configs_layout_and_survives_a_checkpoint(swapped, tmp_path):
    cfg = swapped
    model = build_model(cfg)
    assert isinstance(model.box_head, CellBoxHead)
    state = model.state_dict()
    assert sorted(k for k in state if k.startswith("box_head.")) == [
        "box_head.out.bias",
        "box_head.out.weight",
        "box_head.proj.bias",
        "box_head.proj.weight",
    ]
    assert cfg.state_dict_shapes() == {k: tuple(v.shape) for k, v in state.items()}
    assert cfg.parameter_count() == sum(p.numel() for p in model.parameters())
    assert cfg.replace(head_channels=12).head_channels == 12  # CENTER's multiple-of-8 rule is not asked
    with pytest.raises(ConfigError, match="head_channels 0 must be positive"):
        cfg.replace(head_channels=0)
    assert infer_config(state, cfg) == cfg  # a bare state_dict: the width read at the head's WIDTH_KEY
    path = save_checkpoint(model, tmp_path / "cell.pt")
    loaded = load_model(path)
    inputs = random_inputs(cfg, seed=1)
    with torch.no_grad():
        want, got = model(*inputs), loaded(*inputs)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_a_swapped_head_runs_the_network_and_its_fast_paths(swapped):
    model = build_model(swapped)
    inputs = random_inputs(swapped, batch=2, seed=2)
    with torch.no_grad():
        out = model(*inputs)
    assert list(out) == ["conf_map", "box_map", "pred_boxes"] and output_names(model) == tuple(out)
    assert out["box_map"].shape == (2, 4, swapped.search_feat, swapped.search_feat)
    assert out["pred_boxes"].shape == (2, 1, 4) and torch.equal(out["pred_boxes"][:, 0], CellBoxHead.decode(out))
    model.stack_branches()
    assert model.stacked is not None and model.fused_head is None  # no fused form: the head itself runs
    with torch.no_grad():
        stacked = model(*inputs)
    torch.testing.assert_close(stacked["conf_map"], out["conf_map"], rtol=1e-5, atol=1e-6)
    model.stack_branches(False)
    if int8_support().available:
        model.quantize_int8()
        assert model.int8 and model.fused_head is None and "box_head.proj.weight" in model.state_dict()
        with torch.no_grad():
            q = model(*inputs)
        assert q["pred_boxes"].shape == (2, 1, 4) and bool(q["conf_map"].isfinite().all())


def test_the_tracker_decodes_and_scores_through_a_swapped_head(swapped, monkeypatch):
    from ckd_ros.data.synthetic import SynthConfig, SyntheticSequence

    seen: list[tuple[dict[str, Tensor], Tensor | None]] = []
    decode = CellBoxHead.decode

    def spy(maps: dict[str, Tensor], window: Tensor | None = None) -> Tensor:
        seen.append((maps, window))
        return decode(maps, window)

    monkeypatch.setattr(CellBoxHead, "decode", staticmethod(spy))
    tracker = CKDTracker(build_model(swapped))
    seq = SyntheticSequence(2, SynthConfig(height=120, width=160, length=3))
    tracker.initialize(*seq.frame(0), tuple(seq.boxes[0]))
    result = tracker.track(*seq.frame(1))
    assert result.valid and all(math.isfinite(v) for v in result.box)
    (maps, window), *_ = [s for s in seen if s[1] is not None]  # the model's own raw decode has no window
    assert window is tracker.window and set(maps) == {"conf_map", "box_map", "pred_boxes"}
    assert result.score == float(maps["conf_map"].max()) and 0.0 < result.score < 1.0


def test_training_builds_merges_and_scores_a_swapped_head(swapped):
    cfg = swapped
    net = CKDTrainingNet(cfg)
    heads = (net.box_head, net.box_head_v, net.box_head_i)
    assert all(isinstance(h, CellBoxHead) for h in heads)
    assert [h.proj.weight.shape[1] for h in heads] == [2 * cfg.embed_dim, cfg.embed_dim, cfg.embed_dim]
    net.init_students_from_teachers()
    x = torch.randn(1, 2 * cfg.embed_dim, 4, 4)
    c = cfg.embed_dim
    both = net.box_head_v.proj(x[:, :c]) + net.box_head_i.proj(x[:, c:])
    torch.testing.assert_close(net.box_head.proj(x), both, rtol=1e-5, atol=1e-5)  # starts as the sum of the two
    z_rgb, z_tir, x_rgb, x_tir = random_inputs(cfg, batch=2, seed=3)
    fused = net.students(z_rgb, z_tir, x_rgb, x_tir)["fused"]
    teacher = TeacherNet(net, "tir")(z_rgb, z_tir, x_rgb, x_tir)
    assert set(fused) == set(teacher) == {"conf_map", "box_map", "pred_boxes"}
    gt = torch.tensor([[0.3, 0.3, 0.4, 0.4], [0.1, 0.5, 0.2, 0.3]])
    total, terms = tracking_loss(fused, gt)
    assert set(terms) == {"giou", "l1", "conf_bce", "iou"}
    giou, l1 = giou_l1_loss(fused["pred_boxes"].view(-1, 4), gt)
    assert total.item() == pytest.approx(2 * giou.item() + 5 * l1.item() + terms["conf_bce"], rel=1e-5)
    total.backward()
    assert net.box_head.proj.weight.grad is not None and net.box_head.proj.weight.grad.abs().sum() > 0


def test_the_stand_in_loss_is_what_it_says():
    maps = {"conf_map": torch.full((1, 1, 4, 4), 0.5), "box_map": torch.rand(1, 4, 4, 4)}
    assert CellBoxHead.loss(maps, torch.tensor([[0.5, 0.5, 0.2, 0.2]])).item() == pytest.approx(math.log(2))
