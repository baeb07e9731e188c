"""Training logs: TensorBoard scalars (every statistic, every logged step), log.csv kept, and a
loss/IoU plot at the end of a run, also when resumed or without tensorboard installed."""

from __future__ import annotations

import builtins

import cv2
import pytest

from ckd_ros.train import DataConfig, TrainConfig, build_trainer
from ckd_ros.train.logs import read_log


def tiny(tmp_path, steps: int, **kw) -> TrainConfig:
    return TrainConfig(
        stage=0,
        model="ckd_tiny",
        steps=steps,
        batch_size=2,
        lr={"head": 1e-3, "teacher": 1e-3},
        log_every=1,
        out_dir=str(tmp_path / "run"),
        data=DataConfig(num_sequences=3, length=30, num_workers=0),
        **kw,
    )


def test_scalars_csv_and_plot(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    build_trainer(tiny(tmp_path, 2), progress=False).run()
    build_trainer(tiny(tmp_path, 3), progress=False).run()  # resumed: one more step
    out = tmp_path / "run"
    cols = read_log(out / "log.csv")
    assert cols["step"] == [1, 2, 3] and len(cols["t_rgb_iou"]) == 3
    acc = event_accumulator.EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [round(e.value, 4) for e in loss] == [round(v, 4) for v in cols["loss"]]
    assert {"train/t_tir_iou", "train/grad_norm"} <= set(acc.Tags()["scalars"])
    png = cv2.imread(str(out / "curves.png"))
    assert png is not None and png.shape[0] > 100 and png.std() > 10  # an image with something drawn


def test_without_tensorboard_the_run_says_so_and_still_plots(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    lines: list[str] = []
    build_trainer(tiny(tmp_path, 1), progress=False, log=lines.append).run()
    assert sum("tensorboard is not installed" in line for line in lines) == 1
    assert (tmp_path / "run" / "curves.png").is_file() and not (tmp_path / "run" / "tensorboard").exists()
