"""Bags with rosbags: round trip, and replay through the real node agrees with offline evaluation."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs the ROS 2 venv (scripts/setup_env.sh)")
pytest.importorskip("vision_msgs.msg", reason="needs vision_msgs (scripts/setup_env.sh builds it)")

from ckd_ros.cli import main as cli_main
from ckd_ros.data.datasets import read_dataset
from ckd_ros.data.synthetic import SynthConfig, SyntheticSequence, write_sequence
from ckd_ros.errors import CKDError, InputError
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


def test_compressed_bag_replays_like_the_raw_one_within_what_jpeg_changes(dataset, tmp_path):
    (seq,) = read_dataset("synthetic", dataset)
    ckpt = None  # the shipped model: a trained one, whose boxes respond to the image, not to noise
    raw = replay(write_sequence_bag(seq, tmp_path / "raw"), ckpt, mode="lockstep", progress=False)
    bag = write_sequence_bag(seq, tmp_path / "c", compressed=True)
    frames = read_bag(bag, Topics())  # the default topics resolve to their /compressed streams
    assert frames.transports == ("compressed", "compressed") and frames.topics == (
        "/rgb/image/compressed",
        "/thermal/image/compressed",
    )
    assert len(frames.rgb) == 24 and frames.rgb_sizes[frames.rgb[0][0]] == seq.pairs().__next__()[0].shape[:2]
    t = typestore().deserialize_cdr(frames.thermal[3][1], "sensor_msgs/msg/CompressedImage")
    assert t.format == "mono8; png compressed mono8"
    report = replay(bag, ckpt, mode="lockstep", progress=False)
    assert report.frames == report.processed == 24 and report.failed == 0
    # PNG thermal is exact; JPEG RGB at quality 90 perturbs the pixels, and closed-loop tracking can
    # carry a small difference along: the scores, not each box, must agree
    assert np.median(np.abs(report.boxes - raw.boxes)) < 2.0
    assert abs(report.metrics["SR"] - raw.metrics["SR"]) < 0.1 and abs(report.metrics["PR"] - raw.metrics["PR"]) < 0.1


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


def write_bag_with(seq, out, malformed=(), first_gt=None, empty=()):
    """A bag as ``write_sequence_bag`` writes it, except that the RGB frames at ``malformed`` carry
    an encoding no camera has (a pair the node must skip), those at ``empty`` are 0x0 with no data,
    and the first GT box is ``first_gt``."""
    from rosbags.rosbag2 import Writer

    from ckd_ros.ros.bags import _detection, _image

    store, img_t, det_t = typestore(), "sensor_msgs/msg/Image", "vision_msgs/msg/Detection2D"
    gt = seq.gt["aligned"]
    with Writer(out, version=9) as w:
        c_rgb, c_tir = (w.add_connection(t, img_t, typestore=store) for t in ("/rgb/image", "/thermal/image"))
        c_gt = w.add_connection("/ground_truth", det_t, typestore=store)
        for i, (rgb, tir) in enumerate(seq.pairs()):
            t = 1_700_000_000_000_000_000 + i * 40_000_000
            msg = _image(store, rgb, "rgb8", t, "cam")
            if i in malformed:
                msg.encoding = "weird42"
            if i in empty:
                msg.height = msg.width = msg.step = 0
                msg.data = np.zeros(0, np.uint8)
            w.write(c_rgb, t, store.serialize_cdr(msg, img_t))
            w.write(c_tir, t, store.serialize_cdr(_image(store, tir[:, :, 0], "mono8", t, "cam"), img_t))
            box = np.asarray(first_gt if i == 0 and first_gt is not None else gt[i], float)
            w.write(c_gt, t, store.serialize_cdr(_detection(store, box, t, "cam"), det_t))
    return out


@pytest.mark.parametrize("mode", ["realtime", "lockstep"])
def test_a_bag_of_malformed_frames_is_an_error_not_a_score(dataset, tmp_path, capsys, mode):
    """Nothing answered is nothing to score (it used to print PR 100: every empty box took the GT
    of frame 0); lockstep sees the node's malformed count, instead of waiting 60 s per frame."""
    (seq,) = read_dataset("synthetic", dataset)
    bag = write_bag_with(seq, tmp_path / "bad", malformed=range(24))
    t0 = time.monotonic()
    with pytest.raises(CKDError, match=r"answered none of the 24 pairs: 24 failed \(.*'weird42'"):
        replay(bag, str(dataset.parent / "tiny.pt"), mode=mode, progress=False)
    assert time.monotonic() - t0 < 30
    argv = ["bag", "replay", str(bag), "--checkpoint", str(dataset.parent / "tiny.pt")]
    assert cli_main(argv + (["--lockstep"] if mode == "lockstep" else [])) == 2
    out, err = capsys.readouterr()
    assert "PR@20" not in out and "Traceback" not in err
    assert err.splitlines()[-1].startswith("ckd-ros bag: error: bad: the ckd_tracker node answered none")


def test_lockstep_goes_past_malformed_frames_and_scores_them_as_misses(dataset, tmp_path):
    """Two malformed pairs: the node skips them, lockstep notices at once, the report counts them,
    and they score as misses; every other frame is the offline tracker's on the same frames."""
    (seq,) = read_dataset("synthetic", dataset)
    ckpt = dataset.parent / "tiny.pt"
    bag = write_bag_with(seq, tmp_path / "some_bad", malformed=(5, 6))
    t0 = time.monotonic()
    report = replay(bag, str(ckpt), mode="lockstep", progress=False)
    assert time.monotonic() - t0 < 30
    assert (report.frames, report.processed, report.failed, report.dropped) == (24, 22, 2, 0)
    assert "weird42" in report.failure and "2 frames without an answer scored as misses" in report.text()
    assert np.isinf(report.score.errors[[5, 6]]).all() and (report.score.overlaps[[5, 6]] == 0).all()
    kept = [i for i in range(24) if i not in (5, 6)]
    pairs = list(seq.pairs())
    offline = track_sequence(CKDTracker(load_model(ckpt)), [pairs[i] for i in kept], seq.init_box).boxes
    assert np.abs(report.boxes[kept] - np.array(offline)).max() < 1e-3


def test_a_nan_first_ground_truth_box_starts_the_replay_at_the_first_valid_one(dataset, tmp_path):
    (seq,) = read_dataset("synthetic", dataset)
    bag = write_bag_with(seq, tmp_path / "nan_first", first_gt=[np.nan] * 4)
    report = replay(bag, str(dataset.parent / "tiny.pt"), mode="lockstep", progress=False)
    assert "NaN" in report.note and "replaying from frame 1 of 24" in report.note and report.note in report.text()
    assert report.frames == 23
    assert np.allclose(report.boxes[0], seq.gt["aligned"][1], atol=1e-3)  # the node's first answer is its init box


def test_unreadable_first_frames_are_skipped_with_a_note_not_misread_as_a_0x0_image(dataset, tmp_path):
    """A box used to be checked against a '0x0 image' there: a good --init was refused."""
    (seq,) = read_dataset("synthetic", dataset)
    bag = write_bag_with(seq, tmp_path / "empty_first", empty=(0, 1))
    init = tuple(float(v) for v in seq.gt["aligned"][2])
    report = replay(bag, str(dataset.parent / "tiny.pt"), mode="lockstep", init_box=init, progress=False)
    assert "first 2 RGB frame(s) are not readable images" in report.note and report.frames == 22
    from_gt = replay(bag, str(dataset.parent / "tiny.pt"), mode="lockstep", progress=False)
    assert "not a readable image" in from_gt.note and "replaying from frame 2 of 24" in from_gt.note
    assert "0x0" not in from_gt.note and from_gt.frames == 22
    with pytest.raises(InputError, match="no RGB frame on /rgb/image is a readable image"):
        replay(write_bag_with(seq, tmp_path / "all_empty", empty=range(24)), None, init_box=init, progress=False)
