"""`ckd-ros track` on real image folders: outputs, video, and clear failures."""

from __future__ import annotations

import cv2
import pytest
from reference_tracker import synthetic_frames

from ckd_ros.cli import main
from ckd_ros.model import save_checkpoint


@pytest.fixture
def sequence(tmp_path, tiny_model):
    for sub in ("visible", "infrared"):
        (tmp_path / sub).mkdir()
    for i, (rgb, tir) in enumerate(synthetic_frames(6, h=120, w=160)):
        cv2.imwrite(str(tmp_path / "visible" / f"{i:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(tmp_path / "infrared" / f"{i:05d}.png"), tir[:, :, 0])  # grey file → 3 channels
    save_checkpoint(tiny_model, tmp_path / "tiny.pt")
    return tmp_path


def test_track_writes_boxes_scores_and_video(sequence, capsys):
    out = sequence / "out"
    rc = main(
        [
            "track",
            "--rgb",
            str(sequence / "visible"),
            "--tir",
            str(sequence / "infrared"),
            "--init",
            "10,20,40,30",
            "--checkpoint",
            str(sequence / "tiny.pt"),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    lines = (out / "boxes.txt").read_text().splitlines()
    assert len(lines) == 6 and lines[0] == "10.0000,20.0000,40.0000,30.0000"
    assert all(len(line.split(",")) == 4 for line in lines)
    assert len((out / "scores.txt").read_text().splitlines()) == 6
    cap = cv2.VideoCapture(str(out / "track.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 320
    assert "6 frames" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rgb", "{s}/nowhere"], "no such folder or video"),
        (["--init", "10,20,0,30"], "zero or negative size"),
        (["--init", "500,20,10,30"], "outside"),
        (["--checkpoint", "{s}/missing.pt"], "no such checkpoint file"),
    ],
)
def test_track_bad_input_exits_2_with_a_message(sequence, capsys, args, message):
    base = {
        "--rgb": f"{sequence}/visible",
        "--tir": f"{sequence}/infrared",
        "--init": "10,20,40,30",
        "--checkpoint": f"{sequence}/tiny.pt",
        "--out": f"{sequence}/o",
        "--device": "cpu",
    }
    base[args[0]] = args[1].format(s=sequence)
    argv = ["track"] + [x for kv in base.items() for x in kv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_track_rejects_a_malformed_init_box(sequence):
    with pytest.raises(SystemExit) as exc:
        main(["track", "--rgb", "a", "--tir", "b", "--init", "1,2,3"])
    assert exc.value.code == 2
