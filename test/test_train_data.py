"""Training on data on disk: the benchmark layouts and a user's own folders, pairs decoded in loader
workers, and every bad input named in one line (exit 2) before the first step."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from ckd_ros.cli import main as cli_main
from ckd_ros.data.synthetic import SynthConfig, SyntheticSequence, write_sequence
from ckd_ros.errors import InputError
from ckd_ros.train import DataConfig, PairSampler, SamplerConfig, TrainConfig, build_trainer, make_sources
from ckd_ros.train.data import StepLoader


def small_seq(seed: int, length: int = 30) -> SyntheticSequence:
    return SyntheticSequence(seed, SynthConfig(height=96, width=128, length=length))


@pytest.fixture
def lasher(tmp_path) -> Path:
    root = tmp_path / "LasHeR"
    for k in range(2):
        write_sequence(small_seq(k), root / f"seq{k}")
    return root


def write_folder_sequence(seq: SyntheticSequence, folder: Path, absent: tuple[int, ...] = (), tir_scale: float = 1.0) -> Path:
    """The ``folder`` layout: rgb/, thermal/ and groundtruth.txt, NaN rows where the target is absent."""
    (folder / "rgb").mkdir(parents=True)
    (folder / "thermal").mkdir()
    rows = []
    for i in range(len(seq)):
        rgb, tir = seq.frame(i)
        cv2.imwrite(str(folder / "rgb" / f"{i:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if tir_scale != 1.0:
            tir = cv2.resize(tir, None, fx=tir_scale, fy=tir_scale)
        cv2.imwrite(str(folder / "thermal" / f"{i:06d}.png"), tir[:, :, 0])
        rows.append("NaN,NaN,NaN,NaN" if i in absent else ",".join(f"{v:.2f}" for v in seq.boxes[i]))
    (folder / "groundtruth.txt").write_text("\n".join(rows) + "\n")
    return folder


def config_file(tmp_path: Path, **data) -> Path:
    cfg = tmp_path / "c.yaml"
    body = {
        "stage": 0,
        "model": "ckd_tiny",
        "steps": 2,
        "batch_size": 2,
        "lr": {"head": 1e-3, "teacher": 1e-3},
        "data": {"num_workers": 1, **data},
    }
    cfg.write_text(yaml.safe_dump(body))
    return cfg


def test_lasher_layout_trains_from_the_command_line(lasher, tmp_path, capsys):
    cfg = config_file(tmp_path)
    out = tmp_path / "o"
    args = ["train", str(cfg), "--set", "data.kind=lasher", "--set", f"data.root={lasher}", "--out", str(out)]
    assert cli_main(args) == 0
    assert (out / "model.pt").is_file() and "data lasher" in capsys.readouterr().out


def test_pairs_from_a_dataset_follow_the_official_sampling(lasher):
    """Template unjittered and centred; search jittered (centre and scale); 25 % of search tokens
    dropped (Bernoulli); the RGB and TIR crops of a set cut at the same place."""
    cfg = TrainConfig(stage=0, model="ckd_tiny", data=DataConfig(kind="lasher", root=str(lasher), num_workers=0))
    src, n = make_sources(cfg)
    assert n == 2 and len(src[0]) == 30 and src[0].boxes.shape == (30, 4)
    sampler = PairSampler(src, n, SamplerConfig(template_size=64, search_size=128, patch_size=16, mask_ratio=0.25))
    samples = [sampler.sample_number(k) for k in range(64)]
    z = np.stack([s["template_anno"] for s in samples])
    x = np.stack([s["search_anno"] for s in samples])
    z_centre, x_centre = z[:, :2] + z[:, 2:] / 2, x[:, :2] + x[:, 2:] / 2
    assert np.allclose(z_centre, (64 - 1) / 2 / 64, atol=0.02)  # no template jitter (the half-pixel is OSTrack's)
    assert x_centre.std(axis=0).min() > 0.03  # centre jitter moves the target in the search crop
    scale = np.sqrt(x[:, 2] * x[:, 3]) * 4  # target side / crop side · factor: 1 without scale jitter
    assert 0.1 < np.log(scale).std() < 0.6  # exp(N(0, 1)·0.25) per side
    keep = np.stack([s["search_keep"] for s in samples])
    assert keep.shape == (64, 64) and abs(1 - keep.mean() - 0.25) < 0.03
    # same sample number → same pair, in any process
    assert all(np.array_equal(a, b) for a, b in zip(sampler.sample_number(5).values(), samples[5].values()))


class MainProcessGuard:
    """A source whose frames may only be decoded outside the process that built it."""

    def __init__(self, seq) -> None:
        self.seq, self.boxes, self.owner = seq, seq.boxes, os.getpid()

    def __len__(self) -> int:
        return len(self.seq)

    def frame(self, i: int):
        if os.getpid() == self.owner:
            raise AssertionError("a frame was decoded in the training loop's process")
        return self.seq.frame(i)


def test_frames_are_decoded_in_worker_processes_and_batches_do_not_depend_on_them():
    seqs = [MainProcessGuard(small_seq(k)) for k in range(3)]
    sampler = PairSampler(seqs, 3, SamplerConfig(template_size=64, search_size=128), seed=1)
    two = [b for b in StepLoader(sampler, steps=3, batch_size=2, num_workers=2)(1)]
    assert len(two) == 2
    with pytest.raises(AssertionError, match="training loop"):
        next(StepLoader(sampler, steps=3, batch_size=2, num_workers=0)(1))
    one = [b for b in StepLoader(sampler, steps=3, batch_size=2, num_workers=1)(1)]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(two, one) for k in a)


def test_ranks_draw_disjoint_pairs():
    seqs = [small_seq(k) for k in range(3)]
    sampler = PairSampler(seqs, 3, SamplerConfig(template_size=64, search_size=128), seed=1)
    r0, r1 = (sampler.batch(4, 2, rank=r, world=2) for r in (0, 1))
    assert not torch.equal(r0["search_rgb"], r1["search_rgb"])
    assert torch.equal(r1["search_rgb"], PairSampler(seqs, 3, sampler.cfg, seed=1).batch(4, 2, rank=1, world=2)["search_rgb"])


def test_folder_recordings_with_absent_frames_and_a_smaller_thermal_camera(tmp_path):
    """``folder``: NaN rows are never sampled; a half-size thermal camera is resized onto the RGB
    pixels (data.align) before cropping, so both crops are cut at the same place."""
    root = tmp_path / "rec"
    absent = tuple(range(5, 30, 2))
    write_folder_sequence(small_seq(3), root / "walk", absent=absent, tir_scale=0.5)
    cfg = TrainConfig(stage=0, model="ckd_tiny")
    cfg.data = DataConfig(kind="folder", root=str(root), num_workers=0)
    (src,), _ = make_sources(cfg)
    rgb, tir = src.frame(0)
    assert rgb.shape == tir.shape == (96, 128, 3)
    assert (src.boxes[list(absent), 2:] == 0).all()
    sampler = PairSampler([src], 1, SamplerConfig(template_size=64, search_size=128))
    picked = {sampler._pick(np.random.default_rng(k))[2:] for k in range(200)}
    assert not {f for pair in picked for f in pair} & set(absent)
    cfg.data = DataConfig(kind="folder", root=str(root), align="none", num_workers=0)
    with pytest.raises(InputError, match="differ in size"):
        make_sources(cfg)
    # a calibrated rig: the half-size thermal frame warped by its TIR→RGB homography (a 2x zoom here)
    cfg.data = DataConfig(kind="folder", root=str(root), align="homography", homography=[2, 0, 0, 0, 2, 0, 0, 0, 1])
    (src,), _ = make_sources(cfg)
    rgb, warped = src.frame(0)
    assert warped.shape == rgb.shape and abs(int(warped[40, 60, 0]) - int(tir[40, 60, 0])) <= 12


def run_cli(tmp_path, capsys, *sets: str) -> tuple[int, str]:
    cfg = config_file(tmp_path)
    code = cli_main(["train", str(cfg), "--out", str(tmp_path / "o"), *[a for s in sets for a in ("--set", s)]])
    err = capsys.readouterr().err.strip()
    return code, err


def test_bad_datasets_are_one_line_and_exit_2_before_training(lasher, tmp_path, capsys):
    code, err = run_cli(tmp_path, capsys, "data.kind=kitti", f"data.root={lasher}")
    assert code == 2 and "data kind 'kitti': one of synthetic, lasher" in err
    code, err = run_cli(tmp_path, capsys, "data.kind=lasher", f"data.root={tmp_path / 'nowhere'}")
    assert code == 2 and "nowhere: dataset root not found" in err and "\n" not in err
    (tmp_path / "empty").mkdir()
    code, err = run_cli(tmp_path, capsys, "data.kind=lasher", f"data.root={tmp_path / 'empty'}")
    assert code == 2 and "empty: dataset root is empty" in err
    os.remove(sorted((lasher / "seq1" / "infrared").iterdir())[-1])
    code, err = run_cli(tmp_path, capsys, "data.kind=lasher", f"data.root={lasher}")
    assert code == 2 and "seq1/infrared: 29 thermal images, but" in err and "\n" not in err
    os.remove(sorted((lasher / "seq1" / "visible").iterdir())[-1])
    code, err = run_cli(tmp_path, capsys, "data.kind=lasher", f"data.root={lasher}")
    assert code == 2 and "seq1/init.txt: 30 boxes for 29 frames" in err
    first = sorted((lasher / "seq0" / "visible").iterdir())[0]
    first.write_bytes(b"not a jpeg")
    code, err = run_cli(tmp_path, capsys, "data.kind=lasher", f"data.root={lasher}")
    assert code == 2 and f"{first}: not a readable image" in err
    assert not (tmp_path / "o" / "last.pt").exists()  # nothing trained


def test_short_sequences_are_skipped_with_a_count_and_bad_frames_mid_run_are_counted(tmp_path, capsys):
    root = tmp_path / "LasHeR"
    write_sequence(small_seq(0), root / "good")
    write_sequence(small_seq(1, length=12), root / "short")
    broken = write_sequence(small_seq(2), root / "broken")
    for f in sorted((broken / "visible").iterdir())[1:]:  # the first frame decodes, the rest do not
        f.write_bytes(b"truncated")
    cfg = config_file(tmp_path)
    assert (
        cli_main(["train", str(cfg), "--out", str(tmp_path / "o"), "--set", "data.kind=lasher", "--set", f"data.root={root}"])
        == 0
    )
    assert "skipped 1 of 3 sequences with fewer than 20 frames or 5 visible boxes: short" in capsys.readouterr().out
    log = (tmp_path / "o" / "log.csv").read_text().splitlines()
    assert "bad_frames" in log[0].split(",")
    # in one process: the broken sequence is met, counted, dropped, and every sample is still whole
    cfg = TrainConfig(stage=0, model="ckd_tiny", data=DataConfig(kind="lasher", root=str(root), num_workers=0))
    src, n = make_sources(cfg, log=lambda _: None)
    sampler = PairSampler(src, n, SamplerConfig(template_size=64, search_size=128))
    samples = [sampler.sample_number(k) for k in range(12)]
    assert sum(int(s["bad_frames"]) for s in samples) >= 1
    assert [q.name for i, q in enumerate(src) if i in sampler.bad] == ["broken"]


def test_an_init_checkpoint_that_does_not_fit_the_stage_is_one_line(tmp_path, capsys):
    cfg = TrainConfig(stage=0, model="ckd_tiny", steps=1, batch_size=2, lr={"head": 1e-3, "teacher": 1e-3})
    cfg.out_dir = str(tmp_path / "s0")
    cfg.data.num_sequences, cfg.data.length, cfg.data.num_workers = 2, 30, 0
    build_trainer(cfg, progress=False).run()
    code, err = run_cli(tmp_path, capsys, "stage=1", "model=ckd_small", f"init={tmp_path / 's0' / 'last.pt'}")
    assert code == 2 and "last.pt (trained ckd_tiny; this stage trains ckd_small): does not fit the model" in err
    junk = tmp_path / "junk.pt"
    torch.save({"something": torch.zeros(3)}, junk)
    code, err = run_cli(tmp_path, capsys, "stage=1", f"init={junk}")
    assert code == 2 and str(junk) in err and "\n" not in err
