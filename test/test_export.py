"""ONNX export with static token counts, checked against PyTorch with onnxruntime."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")

import onnx

from ckd_ros.cli import main
from ckd_ros.model import save_checkpoint
from ckd_ros.model.export import export_onnx, verify_onnx


@pytest.mark.parametrize("mode", ["mce", "ce", "none"])
def test_onnx_matches_pytorch(tiny_model, tmp_path, mode):
    tiny_model.set_elimination(ce_mode=mode)
    path = export_onnx(tiny_model, tmp_path / "m.onnx")
    graph = onnx.load(str(path)).graph
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert shapes == {
        "template_rgb": [1, 3, 64, 64],
        "template_tir": [1, 3, 64, 64],
        "search_rgb": [1, 3, 128, 128],
        "search_tir": [1, 3, 128, 128],
    }
    assert [o.name for o in graph.output] == ["score_map", "size_map", "offset_map", "pred_boxes"]
    diffs = verify_onnx(tiny_model, path)
    assert max(diffs.values()) < 1e-4, diffs


def test_export_command(tiny_model, tmp_path, capsys):
    save_checkpoint(tiny_model, tmp_path / "m.pt")
    assert main(["export", "onnx", "--checkpoint", str(tmp_path / "m.pt"), "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "search tokens 64 → 45 → 32" in out and "onnxruntime vs PyTorch" in out and "trtexec" in out
