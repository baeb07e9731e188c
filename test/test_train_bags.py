"""A user's own recordings as training data: ``ckd-ros bag export`` → ``data.kind: folder`` → train."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

pytest.importorskip("rosbags", reason="bag tools need rosbags (requirements/core.txt)")

from ckd_ros.cli import main as cli_main
from ckd_ros.data.datasets import read_dataset, read_folder
from ckd_ros.data.frames import read_rgb
from ckd_ros.data.synthetic import SynthConfig, SyntheticSequence, write_sequence
from ckd_ros.ros.bags import write_sequence_bag


@pytest.fixture
def sequence(tmp_path):
    seq = SyntheticSequence(21, SynthConfig(height=96, width=128, length=26))
    folder = write_sequence(seq, tmp_path / "ds" / "walk")
    gt = (folder / "init.txt").read_text().splitlines()
    gt[4] = "0,0,0,0"  # target absent in frame 4: the bag has no Detection2D there
    (folder / "init.txt").write_text("\n".join(gt) + "\n")
    (s,) = read_dataset("lasher", tmp_path / "ds")
    return s


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "compressed"])
def test_exported_bag_is_a_training_folder(sequence, tmp_path, capsys, compressed):
    if compressed:
        pytest.importorskip("sensor_msgs.msg", reason="compressed bags are written with the ROS message types")
    bag = write_sequence_bag(sequence, tmp_path / "bag", rate=10, compressed=compressed)
    out = tmp_path / "recordings" / "walk"
    assert cli_main(["bag", "export", str(bag), str(out)]) == 0
    assert "26 frame pairs, 25 with a box" in capsys.readouterr().out
    (seq,) = read_folder(out)
    assert len(seq) == 26 and seq.tir_dir.name == "thermal"
    rows = (out / "groundtruth.txt").read_text().splitlines()
    assert rows[4] == "NaN,NaN,NaN,NaN" and seq.boxes[4].tolist() == [0, 0, 0, 0]
    assert np.allclose(np.delete(seq.boxes, 4, 0), np.delete(sequence.gt["aligned"], 4, 0), atol=0.006)
    rgb, tir = seq.frame(7)
    want_rgb, want_tir = read_rgb(sequence.files()[0][7]), read_rgb(sequence.files()[1][7])
    tol = 8 if compressed else 0  # jpeg in the bag; the export itself is lossless (png)
    assert np.abs(rgb.astype(int) - want_rgb).mean() <= tol and np.abs(tir.astype(int) - want_tir).mean() <= tol
    # and it trains, from the folder that holds the sequence folders
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"stage": 0, "model": "ckd_tiny", "steps": 1, "batch_size": 2, "lr": {"head": 1e-3}}))
    sets = ["--set", "data.kind=folder", "--set", f"data.root={out.parent}", "--set", "data.num_workers=1"]
    assert cli_main(["train", str(cfg), "--out", str(tmp_path / "run"), *sets]) == 0
    assert (tmp_path / "run" / "model.pt").is_file()


def test_export_of_a_bag_without_ground_truth_and_into_an_existing_folder(sequence, tmp_path, capsys):
    bag = write_sequence_bag(sequence, tmp_path / "robot", with_gt=False)
    out = tmp_path / "rec"
    assert cli_main(["bag", "export", str(bag), str(out)]) == 0
    assert "0 with a box; the bag has no ground truth: annotate groundtruth.txt" in capsys.readouterr().out
    assert set((out / "groundtruth.txt").read_text().split()) == {"NaN,NaN,NaN,NaN"}
    assert cli_main(["bag", "export", str(bag), str(out)]) == 2
    assert "rec: already exists" in capsys.readouterr().err
    assert cli_main(["bag", "export", str(tmp_path / "nobag"), str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
