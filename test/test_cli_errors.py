"""Every user mistake on the command line: exit status 2, one line on stderr naming the file or the
value, no traceback, nothing printed on stdout before it, nothing half-written left behind.

Each case is a mistake a new user makes (issue 11 §6): missing, unreadable, non-UTF-8 or binary
files; folders where files are expected and files where folders are; outputs under a regular file
or in /proc (the tests run as root, so permissions block nothing); NaN, infinite and huge boxes;
bad counts and rates; a corrupt bag. They run in this process, so a traceback is an exception here.
"""

from __future__ import annotations

import shlex
import shutil
import warnings
from pathlib import Path

import cv2
import pytest
import torch

from ckd_ros.cli import main
from ckd_ros.data.synthetic import SynthConfig, SyntheticSequence, write_sequence
from ckd_ros.eval import score
from ckd_ros.model import build_model, save_checkpoint

HAS_PROC = Path("/proc/self").is_dir()


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> Path:
    """A workspace: a 2-sequence LasHeR-layout dataset, a tiny model, result folders, broken files."""
    root = tmp_path_factory.mktemp("cli_errors")
    for k, name in enumerate(("seqA", "seqB")):
        write_sequence(SyntheticSequence(10_077 + k, SynthConfig(length=6)), root / "ds" / name)
    torch.manual_seed(0)
    save_checkpoint(build_model("ckd_tiny"), root / "tiny.pt")
    (root / "afile.txt").write_text("hello\n")
    (root / "emptydir").mkdir()
    (root / "bad.yaml").write_text("a: [\n")
    (root / "nonutf8.yaml").write_bytes(b"\xff\xfe")
    (root / "badflow.yaml").write_text("stage: [1,\n model: 2\n")

    def dataset(name: str, change) -> None:
        shutil.copytree(root / "ds", root / name)
        change(root / name / "seqA")

    dataset("gt_nonutf8", lambda d: (d / "init.txt").write_bytes(b"\xff\xfe1,2,3,4\n"))
    dataset("gt_binary", lambda d: (d / "init.txt").write_bytes(bytes(range(128, 256))))
    dataset("gt_inf", lambda d: (d / "init.txt").write_text("inf,10,20,20\n" + "10,10,20,20\n" * 5))
    dataset("gt_short", lambda d: (d / "init.txt").write_text((d / "visible.txt").read_text().splitlines()[0] + "\n"))
    dataset("labels_nonutf8", lambda d: (d / "scenario.txt").write_bytes(b"\xff\xfe"))
    dataset("corrupt_frame", lambda d: (d / "visible" / "v000003.jpg").write_text("not a jpeg"))
    shutil.copytree(root / "ds", root / "list_nonutf8")
    (root / "list_nonutf8" / "list.txt").write_bytes(b"seqA\xff\n")
    vt = root / "vtuav" / "u1"
    shutil.copytree(root / "ds" / "seqA" / "visible", vt / "rgb")
    shutil.copytree(root / "ds" / "seqA" / "infrared", vt / "ir")
    (vt / "rgb.txt").write_text("NaN,NaN,NaN,NaN\nNaN,NaN,NaN,NaN\n")

    def results(name: str, change=None) -> None:
        for s in ("seqA", "seqB"):
            (root / "res" / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(root / "ds" / s / "init.txt", root / "res" / name / f"{s}.txt")
            (root / "res" / name / f"{s}_time.txt").write_text("0.01\n0.02\n0.03\n")
        if change is not None:
            change(root / "res" / name)

    gt_a = (root / "ds" / "seqA" / "init.txt").read_text()
    results("good")
    results("short", lambda d: (d / "seqA.txt").write_text(gt_a.splitlines()[0] + "\n"))
    results("long", lambda d: (d / "seqA.txt").write_text(gt_a + gt_a))
    results("nonutf8", lambda d: (d / "seqA.txt").write_bytes(b"\xff\xfe1,2,3,4\n"))
    results("binary", lambda d: (d / "seqA.txt").write_bytes(bytes(range(128, 256))))
    results("isdir", lambda d: ((d / "seqA.txt").unlink(), (d / "seqA.txt").mkdir()))
    results("time_bad", lambda d: (d / "seqA_time.txt").write_text("abc\n0.1\n"))
    results("time_nonutf8", lambda d: (d / "seqA_time.txt").write_bytes(b"\xff\xfe\n"))
    results("time_dir", lambda d: ((d / "seqA_time.txt").unlink(), (d / "seqA_time.txt").mkdir()))
    results("time_empty", lambda d: (d / "seqA_time.txt").write_text(""))
    (root / "other" / "good").mkdir(parents=True)  # a second results folder named "good"
    for f in (root / "res" / "good").iterdir():
        shutil.copy(f, root / "other" / "good" / f.name)
    return root


@pytest.fixture(scope="module")
def bags(w) -> Path:
    """A bag of seqA, and copies with a broken metadata.yaml (rosbags only, no ROS graph)."""
    pytest.importorskip("rosbags")
    from ckd_ros.data.datasets import read_dataset
    from ckd_ros.ros.bags import write_sequence_bag

    (seq,) = read_dataset("synthetic", w / "ds", ["seqA"])
    write_sequence_bag(seq, w / "bag")
    for name, meta in (("bag_badmeta", b"rosbag2_bagfile_information:\n  version: [\n"), ("bag_nonutf8meta", b"\xff\xfe")):
        shutil.copytree(w / "bag", w / name)
        (w / name / "metadata.yaml").write_bytes(meta)
    return w


# Commands with valid defaults; a case appends the one option it gets wrong (argparse keeps the last).
TRACK = "track --rgb {w}/ds/seqA/visible --tir {w}/ds/seqA/infrared --init 150,160,20,24 --out {o}/track "
TRACK += "--checkpoint {w}/tiny.pt --device cpu"
RUN = "eval run --dataset lasher --root {w}/ds --out {o}/run --checkpoint {w}/tiny.pt"
SCORE = "eval score --dataset lasher --root {w}/ds --results {w}/res/good"
SUITE = "eval make-suite {o}/s --count 1 --length 3"
BAG_SEQ = "bag from-sequence {w}/ds/seqA {o}/b"
BAG_DS = "bag from-dataset --dataset lasher --root {w}/ds {o}/bs"
EXPORT = "export onnx --out {o}/m.onnx --checkpoint {w}/tiny.pt --no-verify"
REPLAY = "bag replay {w}/bag --checkpoint {w}/tiny.pt"

# (id, command line, what the error line must name, a path that must not exist afterwards, under {o}: the
# case's own output folder, so one case's leftovers cannot decide another's)
CASES = [
    ("track-out-is-a-file", TRACK + " --out {w}/afile.txt", ["afile.txt", "not a folder"], None),
    ("track-out-under-a-file", TRACK + " --out {w}/afile.txt/sub", ["afile.txt/sub"], None),
    ("track-out-in-proc", TRACK + " --out /proc/ckd_out", ["/proc/ckd_out"], None),
    ("track-init-60000px", TRACK + " --init 0,0,60000,60000", ["60000", "larger than the 320x240"], "track"),
    ("track-init-nan", TRACK + " --init nan,10,20,20", ["--init", "nan"], "track"),
    ("track-corrupt-frame", TRACK + " --rgb {w}/corrupt_frame/seqA/visible", ["v000003.jpg"], "track"),
    ("run-gt-not-utf8", RUN + " --root {w}/gt_nonutf8", ["gt_nonutf8/seqA/init.txt", "UTF-8"], "run"),
    ("run-gt-binary", RUN + " --root {w}/gt_binary", ["gt_binary/seqA/init.txt", "UTF-8"], "run"),
    ("run-gt-infinite", RUN + " --root {w}/gt_inf", ["gt_inf/seqA/init.txt:1", "inf"], "run"),
    ("run-list-not-utf8", RUN + " --root {w}/list_nonutf8", ["list_nonutf8/list.txt"], "run"),
    ("run-labels-not-utf8", RUN + " --root {w}/labels_nonutf8", ["labels_nonutf8/seqA/scenario.txt"], "run"),
    ("run-out-is-a-file", RUN + " --out {w}/afile.txt", ["afile.txt", "not a folder"], None),
    ("run-out-under-a-file", RUN + " --out {w}/afile.txt/x", ["afile.txt/x"], None),
    ("run-vtuav-no-valid-box", RUN + " --dataset vtuav --root {w}/vtuav", ["vtuav/u1/rgb.txt", "initial box"], None),
    ("score-result-not-utf8", SCORE + " --results {w}/res/nonutf8", ["res/nonutf8/seqA.txt", "UTF-8"], None),
    ("score-result-binary", SCORE + " --results {w}/res/binary", ["res/binary/seqA.txt", "UTF-8"], None),
    ("score-result-is-a-folder", SCORE + " --results {w}/res/isdir", ["res/isdir/seqA.txt", "folder"], None),
    ("score-time-not-numeric", SCORE + " --results {w}/res/time_bad", ["res/time_bad/seqA_time.txt:1", "'abc'"], None),
    ("score-time-not-utf8", SCORE + " --results {w}/res/time_nonutf8", ["res/time_nonutf8/seqA_time.txt", "UTF-8"], None),
    ("score-time-is-a-folder", SCORE + " --results {w}/res/time_dir", ["res/time_dir/seqA_time.txt"], None),
    ("score-gt-not-utf8", SCORE + " --root {w}/gt_nonutf8", ["gt_nonutf8/seqA/init.txt", "UTF-8"], None),
    ("score-short-result", SCORE + " --results {w}/res/short", ["res/short/seqA.txt has 1 rows", "ds/seqA/init.txt has 6"], None),
    ("score-long-result", SCORE + " --results {w}/res/long", ["res/long/seqA.txt has 12 rows", "ds/seqA/init.txt has 6"], None),
    ("score-short-gt", SCORE + " --root {w}/gt_short", ["res/good/seqA.txt has 6 rows", "gt_short/seqA/init.txt has 1"], None),
    ("score-same-folder-names", SCORE + " --results {w}/res/good {w}/other/good", ["other/good", "'good'"], None),
    ("score-plot-under-a-file", SCORE + " --plot {w}/afile.txt/p.png", ["afile.txt"], None),
    ("score-plot-in-proc", SCORE + " --plot /proc/ckd_p.png", ["/proc/ckd_p.png"], None),
    ("score-plot-is-a-folder", SCORE + " --plot {w}/emptydir", ["emptydir", "folder"], None),
    ("score-plot-unknown-format", SCORE + " --plot {w}/p.xyz", ["p.xyz", "'.xyz'"], "p.xyz"),
    ("suite-count-0", SUITE + " --count 0", ["--count 0"], "s"),
    ("suite-count-999", SUITE + " --count 999", ["--count 999"], "s"),
    ("suite-length-0", SUITE + " --length 0", ["--length 0"], "s"),
    ("suite-length-negative", SUITE + " --length -5", ["--length -5"], "s"),
    ("suite-out-under-a-file", "eval make-suite {w}/afile.txt/x --count 1", ["afile.txt/x"], None),
    ("bag-seq-out-under-a-file", "bag from-sequence {w}/ds/seqA {w}/afile.txt/b", ["afile.txt"], None),
    ("bag-seq-out-in-proc", "bag from-sequence {w}/ds/seqA /proc/ckd_bag", ["/proc/ckd_bag"], None),
    ("bag-seq-rate-nan", BAG_SEQ + " --rate nan", ["nan"], "b"),
    ("bag-seq-rate-inf", BAG_SEQ + " --rate inf", ["inf"], "b"),
    ("bag-seq-gt-not-utf8", "bag from-sequence {w}/gt_nonutf8/seqA {o}/b", ["gt_nonutf8/seqA/init.txt"], "b"),
    ("bag-seq-corrupt-frame", "bag from-sequence {w}/corrupt_frame/seqA {o}/b", ["v000003.jpg"], "b"),
    ("bag-seq-missing", "bag from-sequence {w}/nowhere {o}/b", ["nowhere", "not found"], "b"),
    ("bag-ds-out-is-a-file", "bag from-dataset --dataset lasher --root {w}/ds {w}/afile.txt", ["afile.txt"], None),
    ("bag-ds-rate-negative", BAG_DS + " --rate -1", ["-1"], "bs"),
    ("demo-length-0", "demo --length 0 --out {o}/d", ["--length 0"], "d"),
    ("demo-length-negative", "demo --length -1 --out {o}/d", ["--length -1"], "d"),
    ("demo-rate-0", "demo --rate 0 --out {o}/d", ["--rate 0"], "d"),
    ("demo-rate-nan", "demo --rate nan --out {o}/d", ["--rate nan"], "d"),
    ("demo-out-is-a-file", "demo --out {w}/afile.txt", ["afile.txt", "not a folder"], None),
    ("demo-out-under-a-file", "demo --out {w}/afile.txt/x", ["afile.txt/x"], None),
    ("launch-params-not-yaml", "launch --params-file {w}/bad.yaml", ["bad.yaml", "YAML"], None),
    ("launch-params-not-utf8", "launch --params-file {w}/nonutf8.yaml", ["nonutf8.yaml", "UTF-8"], None),
    ("launch-params-folder", "launch --params-file {w}/emptydir", ["emptydir", "folder"], None),
    ("export-out-under-a-file", EXPORT + " --out {w}/afile.txt/m.onnx", ["afile.txt"], None),
    ("export-out-is-a-folder", EXPORT + " --out {w}/emptydir", ["emptydir"], None),
    ("export-opset-0", EXPORT + " --opset 0", ["--opset 0"], "m.onnx"),
    ("export-opset-999", EXPORT + " --opset 999", ["--opset 999"], "m.onnx"),
    ("train-out-under-a-file", "train config/train/synth_stage0.yaml --out {w}/afile.txt/x", ["afile.txt/x"], None),
    ("train-config-not-utf8", "train {w}/nonutf8.yaml", ["nonutf8.yaml", "UTF-8"], None),
    ("train-config-bad-yaml", "train {w}/badflow.yaml", ["badflow.yaml", "not valid YAML"], None),
    ("convert-out-under-a-file", "convert {w}/tiny.pt {w}/afile.txt/x.pt", ["afile.txt"], None),
]
BAG_CASES = [
    ("replay-corrupt-metadata", "bag replay {w}/bag_badmeta", ["bag_badmeta/metadata.yaml", "YAML"], None),
    ("replay-metadata-not-utf8", "bag replay {w}/bag_nonutf8meta", ["bag_nonutf8meta", "utf-8"], None),
    ("replay-init-outside", REPLAY + " --init 5000,5000,10,10", ["5000.0", "outside the 320x240"], None),
    ("replay-init-nan", REPLAY + " --init nan,1,10,10", ["init box (nan"], None),
    ("replay-gt-topic-of-images", REPLAY + " --gt-topic /rgb/image", ["/rgb/image", "Detection2D"], None),
    ("replay-out-is-a-file", REPLAY + " --out {w}/afile.txt", ["afile.txt", "not a folder"], None),
    ("replay-out-under-a-file", REPLAY + " --out {w}/afile.txt/x", ["afile.txt/x"], None),
    ("replay-rate-scale-nan", REPLAY + " --rate-scale nan", ["--rate-scale nan"], None),
]


def run_error_case(w: Path, case: str, capsys, monkeypatch, command: str, names: list[str], absent: str | None) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # config/train/... relative to the repository
    o = w / "out" / case
    argv = shlex.split(command.format(w=w, o=o))
    if any("/proc/" in a for a in argv) and not HAS_PROC:
        pytest.skip("no /proc here")
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ckd-ros {argv[0]}: error: ")
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert out == ""  # refused before anything was printed (a table, a "wrote" line)
    if absent is not None:
        assert not (o / absent).exists(), f"{absent} was left behind"


@pytest.mark.parametrize(("case", "command", "names", "absent"), CASES, ids=[c[0] for c in CASES])
def test_a_mistake_is_one_line_and_exit_2(w, capsys, monkeypatch, case, command, names, absent):
    run_error_case(w, case, capsys, monkeypatch, command, names, absent)


@pytest.mark.parametrize(("case", "command", "names", "absent"), BAG_CASES, ids=[c[0] for c in BAG_CASES])
def test_a_bag_mistake_is_one_line_and_exit_2(bags, capsys, monkeypatch, case, command, names, absent):
    """Refused before any ROS graph starts: these need rosbags, not rclpy."""
    run_error_case(bags, case, capsys, monkeypatch, command, names, absent)


def test_short_results_are_scored_as_the_toolkit_only_when_asked(w, capsys):
    """--allow-short prints the toolkit's number (ckd_ros.eval.score, unchanged) and how many
    sequences were short; a plain run refuses (the case above)."""
    assert main(shlex.split((SCORE + " --results {w}/res/short --allow-short").format(w=w))) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "short: 1 of 2 sequences short (scored over the frames present) (--allow-short)" in out
    expected = score("lasher", w / "ds", w / "res" / "short")
    row = next(line for line in out.splitlines() if line.startswith("| short |"))
    assert row.split("|")[2].strip() == f"{100 * expected['PR']:.1f}"
    assert main(shlex.split((SCORE + " --results {w}/res/long --allow-short").format(w=w))) == 0
    assert "1 of 2 longer than the ground truth (cut to it)" in capsys.readouterr().out


def test_an_empty_timing_file_is_no_timing_not_a_warning(w, capsys):
    """It used to print NumPy's 'input contained no data' warning on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(shlex.split((SCORE + " --results {w}/res/time_empty").format(w=w))) == 0
    assert capsys.readouterr().err == ""


def test_a_plot_path_without_a_suffix_is_written_and_printed_as_png(w, capsys):
    """matplotlib adds .png itself; the printed path used to be the one given, not the file written."""
    plot = w / "out" / "plots" / "p"
    assert main(shlex.split((SCORE + f" --plot {plot}").format(w=w))) == 0
    out = capsys.readouterr().out
    assert f"plot: {plot}.png" in out and (w / "out" / "plots" / "p.png").stat().st_size > 0
    assert [p.name for p in (w / "out" / "plots").iterdir()] == ["p.png"]  # no temporary left


def test_a_failed_track_keeps_an_earlier_complete_output_and_leaves_no_partial_video(w, capsys):
    out = w / "out" / "kept"
    command = TRACK.format(w=w, o=w / "out") + f" --out {out}"
    assert main(shlex.split(command)) == 0
    before = (out / "boxes.txt").read_text()
    assert main(shlex.split(command + f" --rgb {w}/corrupt_frame/seqA/visible")) == 2
    assert (out / "boxes.txt").read_text() == before
    assert not (out / "track.partial.mp4").exists()
    cap = cv2.VideoCapture(str(out / "track.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6  # the earlier video, not the 3 frames of the failed run
