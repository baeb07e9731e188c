"""Bags with rosbags: round trip, and replay through the real node agrees with offline evaluation."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs the ROS 2 venv (scripts/setup_env.sh)")
pytest.importorskip("vision_msgs.msg", reason="needs vision_msgs (scripts/setup_env.sh builds it)")

from ckd_ros.cli import main as cli_main
from ckd_ros.data.datasets import read_dataset
from ckd_ros.data.synthetic import SynthConfig, SyntheticSequence, write_sequence
from ckd_ros.errors import InputError
from ckd_ros.model import build_model, load_model, save_checkpoint
from ckd_ros.ros.bags import Topics, read_bag, typestore, write_sequence_bag
from ckd_ros.ros.replay import replay
from ckd_ros.tracker import CKDTracker
from ckd_ros.tracker.offline import track_sequence

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("ds")
    write_sequence(SyntheticSequence(10_077, SynthConfig(length=24)), root / "seqA")
    torch.manual_seed(0)
    save_checkpoint(build_model("ckd_tiny"), root.parent / "tiny.pt")
    return root


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip(dataset, tmp_path, storage):
    (seq,) = read_dataset("synthetic", dataset)
    bag = write_sequence_bag(seq, tmp_path / "b", rate=20, storage=storage)
    frames = read_bag(bag, Topics())
    assert len(frames.rgb) == len(frames.thermal) == 24 and len(frames.gt) == 24
    stamps = [s for s, _ in frames.rgb]
    assert np.allclose(np.diff(stamps), 50_000_000)  # 20 Hz
    store = typestore()
    img = store.deserialize_cdr(frames.rgb[3][1], "sensor_msgs/msg/Image")
    rgb, tir = list(seq.pairs())[3]
    assert img.encoding == "rgb8" and np.array_equal(np.asarray(img.data).reshape(rgb.shape), rgb)
    t = store.deserialize_cdr(frames.thermal[3][1], "sensor_msgs/msg/Image")
    assert t.encoding == "mono8" and np.array_equal(np.asarray(t.data).reshape(rgb.shape[:2]), tir[:, :, 0])
    assert np.allclose(frames.gt[stamps[5]], seq.gt["aligned"][5], atol=1e-6)
    with pytest.raises(InputError, match="already exists"):
        write_sequence_bag(seq, bag)


@pytest.mark.parametrize("node_process", [False, True], ids=["node-in-process", "node-process"])
def test_lockstep_replay_through_the_node_equals_offline_eval(dataset, tmp_path, node_process):
    """In this process, or in its own (as ``ckd-ros launch`` starts it), the node's boxes are the
    offline tracker's."""
    (seq,) = read_dataset("synthetic", dataset)
    ckpt = dataset.parent / "tiny.pt"
    offline = track_sequence(CKDTracker(load_model(ckpt)), seq.pairs(), seq.init_box).boxes
    bag = write_sequence_bag(seq, tmp_path / "b")
    report = replay(bag, str(ckpt), mode="lockstep", progress=False, node_process=node_process)
    assert report.frames == report.processed == 24 and report.dropped == 0
    assert np.abs(report.boxes - np.array(offline)).max() < 1e-3
    assert report.metrics is not None and 0 <= report.metrics["SR"] <= 1
    assert len(report.latencies_ms) == 24 and min(report.latencies_ms) > 0


def test_a_node_process_that_fails_to_start_is_reported_with_its_error(dataset, tmp_path):
    (seq,) = read_dataset("synthetic", dataset)
    bag = write_sequence_bag(seq, tmp_path / "b")
    with pytest.raises(RuntimeError, match=r"exited with 2: .*missing\.pt"):
        replay(bag, str(tmp_path / "missing.pt"), progress=False, node_process=True)


def test_realtime_replay_counts_drops_and_robot_bags_need_an_init(dataset, tmp_path):
    (seq,) = read_dataset("synthetic", dataset)
    topics = Topics(rgb="/robot/cam/color", thermal="/robot/flir/image")
    bag = write_sequence_bag(seq, tmp_path / "robot", rate=1000, topics=topics, with_gt=False)  # faster than inference
    with pytest.raises(InputError, match="give an init box"):
        replay(bag, str(dataset.parent / "tiny.pt"), topics=topics, progress=False)
    report = replay(bag, str(dataset.parent / "tiny.pt"), topics=topics, init_box=tuple(seq.init_box), progress=False)
    assert report.processed + report.dropped in (24, 23) and report.processed >= 1
    assert "latency and rate only" in report.text() and report.metrics is None


def test_bag_commands(dataset, tmp_path, capsys):
    out = tmp_path / "bags"
    assert cli_main(["bag", "from-dataset", "--dataset", "synthetic", "--root", str(dataset), str(out), "--rate", "30"]) == 0
    assert (out / "seqA").is_dir()
    assert (
        cli_main(
            [
                "bag",
                "replay",
                str(out / "seqA"),
                "--checkpoint",
                str(dataset.parent / "tiny.pt"),
                "--lockstep",
                "--out",
                str(tmp_path / "res"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "processed 24, dropped 0" in text and "PR@20" in text
    assert len((tmp_path / "res" / "seqA.txt").read_text().splitlines()) == 24
    assert cli_main(["bag", "replay", str(tmp_path / "nope")]) == 2
