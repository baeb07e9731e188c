"""CUDA-graph runner rules (capture, replay, every fallback) checked on a CPU through a stand-in for
``torch.cuda.CUDAGraph``; the tracker's ``cuda_graphs`` switch; and bench/gpu_check.py's quick CPU
mode, whose correctness rows must pass and must be able to fail."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import random_inputs
from reference_tracker import synthetic_frames

from ckd_ros.errors import ConfigError
from ckd_ros.model.cuda_graphs import GraphedForward, resolve_cuda_graphs
from ckd_ros.tracker import CKDTracker, TrackerConfig

ROOT = Path(__file__).resolve().parents[1]


class FakeGraphs:
    """``torch.cuda.CUDAGraph`` as far as the runner can tell, on a CPU: capture runs the warm-up
    calls and records the call; replay re-runs it on the static inputs and writes the results into
    the captured output tensors in place, which is what a replay does to a graph's outputs. So a
    runner that forgot to copy an input, or handed out other tensors, gives wrong outputs here."""

    def __init__(self, fail: Exception | None = None, corrupt: bool = False) -> None:
        self.fail, self.corrupt = fail, corrupt
        self.attempts = self.replays = 0

    def unavailable(self, device: torch.device) -> str:
        return ""

    def capture(self, fn, warmup, device):
        self.attempts += 1
        if self.fail is not None:
            raise self.fail
        reference = None
        for _ in range(warmup):
            reference = fn()
        outputs = fn()
        return (fn, outputs), outputs, reference

    def replay(self, handle) -> None:
        fn, outputs = handle
        self.replays += 1
        for key, value in fn().items():
            outputs[key].copy_(value + 1.0 if self.corrupt else value)


def eager(model, inputs):
    with torch.inference_mode():
        return model(*inputs)


def assert_equal_outputs(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_replays_follow_new_search_crops_and_new_templates(tiny_model):
    fake = FakeGraphs()
    runner = GraphedForward(tiny_model, backend=fake)
    first, second, third = (random_inputs(tiny_model.cfg, seed=s) for s in (0, 1, 2))
    with torch.inference_mode():
        out0 = runner(*first)
        assert runner.active and runner.captures == 1 and runner.replay_error == 0.0
        assert_equal_outputs(out0, eager(tiny_model, first))
        template_rgb, template_tir = first[0], first[1]
        out1 = runner(template_rgb, template_tir, *second[2:])  # same target, next frame
        assert_equal_outputs(out1, eager(tiny_model, (template_rgb, template_tir, *second[2:])))
        out2 = runner(*third)  # a new target: new template tensors
        assert_equal_outputs(out2, eager(tiny_model, third))
    assert runner.captures == 1 and runner.replays == 2 and fake.attempts == 1
    # the outputs are the graph's own tensors, overwritten by each replay
    assert out2["score_map"].data_ptr() == out0["score_map"].data_ptr()
    assert runner.status == "cuda graph: captured 1x, 2 replays"


def test_other_input_shapes_run_eagerly_and_keep_the_graph(tiny_model):
    fake = FakeGraphs()
    runner = GraphedForward(tiny_model, backend=fake)
    one, two = random_inputs(tiny_model.cfg, batch=1, seed=0), random_inputs(tiny_model.cfg, batch=2, seed=1)
    with torch.inference_mode():
        runner(*one)
        out = runner(*two)
        assert not runner.active and "differ from the captured ones" in runner.status and "2x3x64x64" in runner.status
        assert_equal_outputs(out, eager(tiny_model, two))
        runner(*one)
    assert runner.active and runner.captures == 1 and fake.attempts == 1 and runner.replays == 1


def test_a_failed_capture_is_eager_for_good_with_its_reason_until_reset(tiny_model):
    fake = FakeGraphs(fail=RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore"))
    runner = GraphedForward(tiny_model, backend=fake)
    inputs = random_inputs(tiny_model.cfg, seed=0)
    with torch.inference_mode():
        for _ in range(3):
            assert_equal_outputs(runner(*inputs), eager(tiny_model, inputs))
    assert fake.attempts == 1  # not retried every frame
    assert runner.status == "eager: capture failed (RuntimeError: CUDA error: operation not permitted when stream is capturing)"
    fake.fail = None
    runner.reset()
    with torch.inference_mode():
        runner(*inputs)
    assert runner.active and fake.attempts == 2


def test_a_replay_that_differs_from_eager_is_refused(tiny_model):
    runner = GraphedForward(tiny_model, backend=FakeGraphs(corrupt=True))
    inputs = random_inputs(tiny_model.cfg, seed=0)
    with torch.inference_mode():
        out = runner(*inputs)
    assert_equal_outputs(out, eager(tiny_model, inputs))
    assert not runner.active and runner.status.startswith("eager: replay differs from eager by 1")


def test_a_model_switched_after_capture_is_captured_again(tiny_model):
    fake = FakeGraphs()
    runner = GraphedForward(tiny_model, backend=fake)
    inputs = random_inputs(tiny_model.cfg, seed=0)
    with torch.inference_mode():
        runner(*inputs)
        tiny_model.stack_branches(True)
        assert_equal_outputs(runner(*inputs), eager(tiny_model, inputs))
        assert runner.captures == 2
        tiny_model.set_elimination(ce_loc=())
        assert_equal_outputs(runner(*inputs), eager(tiny_model, inputs))
        assert runner.captures == 3
        runner(*inputs)
    assert runner.captures == 3 and fake.attempts == 3


def test_refusals_name_their_reason_and_give_eager_outputs(tiny_model):
    inputs = random_inputs(tiny_model.cfg, seed=0)
    reference = eager(tiny_model, inputs)
    off = GraphedForward(tiny_model, enabled=False, backend=FakeGraphs())
    with torch.inference_mode():
        assert_equal_outputs(off(*inputs), reference)
    assert off.status == "eager: cuda_graphs off" and off.backend.attempts == 0
    runner = GraphedForward(tiny_model, backend=FakeGraphs())
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        runner(*inputs)
    assert "autocast" in runner.status
    runner(*inputs)  # autograd on
    assert "autograd" in runner.status and runner.backend.attempts == 0


def test_the_real_backend_on_a_cpu_is_eager_with_identical_outputs(tiny_model):
    runner = GraphedForward(tiny_model)
    inputs = random_inputs(tiny_model.cfg, seed=0)
    with torch.inference_mode():
        assert_equal_outputs(runner(*inputs), eager(tiny_model, inputs))
    assert runner.status == "eager: cpu device: CUDA graphs need a CUDA device" and not runner.active


def test_the_setting_resolves_per_device_and_the_tracker_takes_a_bool():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [resolve_cuda_graphs(s, cpu) for s in ("auto", "on", "off")] == [False, True, False]
    assert [resolve_cuda_graphs(s, cuda) for s in ("auto", "on", "off")] == [True, True, False]
    with pytest.raises(ConfigError, match="cuda_graphs 'yes'"):
        resolve_cuda_graphs("yes", cpu)
    with pytest.raises(ConfigError, match="True or False"):
        TrackerConfig(cuda_graphs="auto")
    assert TrackerConfig().cuda_graphs is False  # a bare tracker keeps the official eager path


def test_tracker_with_cuda_graphs_on_a_cpu_tracks_exactly_as_without(tiny_model):
    frames = synthetic_frames(5)
    runs = []
    for graphs in (False, True):
        trk = CKDTracker(copy.deepcopy(tiny_model), cuda_graphs=graphs)
        trk.initialize(*frames[0], (30, 30, 40, 40))
        runs.append([trk.track(*f).box for f in frames[1:]])
    assert runs[0] == runs[1]
    assert trk.cuda_graphs_status == "eager: cpu device: CUDA graphs need a CUDA device"


def test_tracker_frames_go_through_the_graph_across_targets(tiny_model):
    frames = synthetic_frames(7)
    ref = CKDTracker(copy.deepcopy(tiny_model))
    trk = CKDTracker(copy.deepcopy(tiny_model), cuda_graphs=True)
    fake = FakeGraphs()
    trk.graphed.backend = fake
    boxes = {"ref": [], "graph": []}
    for t, key in ((ref, "ref"), (trk, "graph")):
        t.initialize(*frames[0], (30, 30, 40, 40))
        boxes[key] += [t.track(*f).box for f in frames[1:4]]
        t.initialize(*frames[3], (200, 100, 60, 50))  # a new target: new templates, same graph
        boxes[key] += [t.track(*f).box for f in frames[4:]]
    assert boxes["graph"] == boxes["ref"]
    assert fake.attempts == 1 and trk.graphed.replays == 5
    assert trk.cuda_graphs_status == "cuda graph: captured 1x, 5 replays"


# -- bench/gpu_check.py -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check

        yield gpu_check
    finally:
        sys.path.remove(str(ROOT / "bench"))


def maps(peak: int, second: int, gap: float, box: tuple[float, ...]) -> dict[str, torch.Tensor]:
    score = torch.full((1, 1, 8, 8), 0.1)
    score.view(-1)[peak], score.view(-1)[second] = 0.9, 0.9 - gap
    return {
        "score_map": score,
        "size_map": torch.full((1, 2, 8, 8), 0.2),
        "offset_map": torch.zeros(1, 2, 8, 8),
        "pred_boxes": torch.tensor(box).view(1, 1, 4),
    }


def test_frame_comparison_judges_peak_box_and_near_ties(gpu_check):
    ref = maps(10, 20, 0.3, (0.5, 0.5, 0.2, 0.2))
    compare = gpu_check.compare
    close = compare(ref, maps(10, 20, 0.3, (0.5 + 0.3 / 128, 0.5, 0.2, 0.2)), 128)  # 0.3 px
    far = compare(ref, maps(10, 20, 0.3, (0.5 + 0.6 / 128, 0.5, 0.2, 0.2)), 128)  # 0.6 px
    moved = compare(ref, maps(20, 10, 0.3, (0.3, 0.5, 0.2, 0.2)), 128)  # a clear peak moved
    assert close["ok"] and close["same_peak"] and close["box_px"] == pytest.approx(0.3, abs=1e-5)
    assert not far["ok"] and not moved["ok"] and not moved["near_tie"]
    tie_ref = maps(10, 20, 0.001, (0.5, 0.5, 0.2, 0.2))
    swapped = compare(tie_ref, maps(20, 10, 0.001, (0.3, 0.5, 0.2, 0.2)), 128)  # within rounding: not judged
    assert swapped["ok"] and swapped["near_tie"]
    assert gpu_check.judge("s", "n", [close, swapped]).status == "pass"
    assert gpu_check.judge("s", "n", [swapped]).status == "FAIL"  # nothing judged is no pass
    assert gpu_check.judge("s", "n", [close, far]).status == "FAIL"


def test_quick_cpu_mode_runs_every_section_and_writes_the_table(tmp_path):
    out = tmp_path / "gpu_check.json"
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--quick", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "section      check" in proc.stdout and "CPU" in proc.stdout
    report = json.loads(out.read_text())
    assert report["ok"] and report["quick"] and report["environment"]["cpu_flags"]
    rows = report["rows"]
    assert {r["section"] for r in rows} == {"correctness", "model", "tracker", "node", "targets"}
    assert all(set(r) == {"section", "name", "status", "text", "note", "figures"} for r in rows)
    judged = [r for r in rows if r["section"] == "correctness" and r["status"] != "skipped"]
    assert len(judged) >= 5 and all(r["status"] in ("pass", "ok") for r in judged), judged
    assert sum(r["status"] == "pass" for r in judged) >= 4
    cuda_rows = [r for r in rows if r["name"].startswith(("cuda fp32", "fp16", "TensorRT", "closed loop fp16"))]
    assert len(cuda_rows) == 6 and all(r["status"] == "skipped" and "no CUDA" in r["note"] for r in cuda_rows)
    speed = [r for r in rows if r["section"] in ("model", "tracker") and r["status"] == "ok"]
    assert len(speed) == 3 + 6
    for r in speed:
        assert r["figures"]["fps"] > 0 and 0 < r["figures"]["p50_ms"] <= r["figures"]["p99_ms"]
    assert [r["figures"]["vs_eager"] for r in speed if r["name"].startswith("eager")] == [1.0, 1.0, 1.0]
    graph_rows = [r for r in rows if "CUDA graphs" in r["name"] and r["status"] != "skipped"]
    assert len(graph_rows) == 5 and all("eager: cpu device" in r["note"] for r in graph_rows)
    node = [r for r in rows if r["section"] == "node"]
    assert [r["name"] for r in node] == ["100 Hz input", "200 Hz input"]
    for r in node:
        if r["status"] == "ok":
            assert 0 < r["figures"]["processed"] and r["figures"]["processed"] + r["figures"]["dropped"] <= r["figures"]["sent"]


def test_a_failing_correctness_row_fails_the_run(gpu_check, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "BOX_TOLERANCE_PX", -1.0)
    monkeypatch.setattr(gpu_check, "CLOSED_LOOP_POINTS", -1.0)
    out = tmp_path / "fail.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--sections", "correctness", "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    failed = [r["name"] for r in report["rows"] if r["status"] == "FAIL"]
    assert not report["ok"] and len(failed) == 4, failed
