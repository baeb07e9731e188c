"""The ``ckd-ros`` command: one entry point, a subcommand per job.

Each subcommand is a thin adapter over a core function; every error the core raises on purpose
(``CKDError``) becomes one line on stderr and exit status 2, never a traceback. Inputs and output
paths are checked before the slow part (loading a model, tracking, playing a bag), so a mistake
costs seconds and leaves nothing half-written. Progress bars are drawn only on a terminal: in a
log or a pipe, stderr carries the error line alone.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ckd_ros.data.files import output_dir, output_file, removed_on_error
from ckd_ros.errors import CKDError, ConfigError, InputError
from ckd_ros.precisions import CE_MODES, CUDA_GRAPH_SETTINGS, DEVICES, PRECISIONS, STACK_SETTINGS


def _progress() -> bool:
    """Whether to draw progress bars: only for a person watching (stderr is a terminal)."""
    return sys.stderr.isatty()


def _convert(args: argparse.Namespace) -> int:
    from ckd_ros.model import load_model, save_checkpoint

    output_file(args.output, "output checkpoint")  # before minutes of reading a ViT-B file
    model = load_model(args.input, variant=args.variant, trust_pickle=True)
    if args.ce_mode:
        model.set_elimination(ce_mode=args.ce_mode)
    out = save_checkpoint(model, args.output, extra={"converted_from": Path(args.input).name})
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): variant {model.cfg.name}, "
        f"{len(model.state_dict())} tensors, {n_params / 1e6:.3f} M parameters, elimination {model.cfg.ce_mode} "
        f"at blocks {list(model.cfg.elimination_layers)}; load it with weights_only=True (no pickle)"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from ckd_ros.model.export import export_onnx, verify_onnx

    args.device, args.precision = "cpu", "fp32"
    _check_opset(args.opset)
    output_file(args.out, "ONNX file")
    model = _load_model(args)
    path = export_onnx(model, args.out, args.opset)
    counts = " → ".join(map(str, model.cfg.search_token_counts()))
    print(
        f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): {model.cfg.name}, opset {args.opset}, batch 1, "
        f"search tokens {counts}"
    )
    if not args.no_verify:
        diffs = verify_onnx(model, path)
        print("onnxruntime vs PyTorch, max |difference|: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    print(f"TensorRT FP16 (Jetson / any NVIDIA GPU): trtexec --onnx={path} --fp16 --saveEngine={path.with_suffix('.engine')}")
    return 0


def _check_opset(opset: int) -> None:
    """The opsets the TorchScript exporter can write this network in: from 9 (its expand and
    masked_fill need it) to the newest torch knows; checked before the model is loaded."""
    import torch.onnx

    newest = getattr(getattr(torch.onnx, "_constants", None), "ONNX_MAX_OPSET", 20)
    if not 9 <= opset <= newest:
        raise ConfigError(f"--opset {opset}: this network exports with opsets 9 to {newest}")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the network to ONNX (static shapes), verified with onnxruntime")
    p.add_argument("format", choices=["onnx"])
    p.add_argument("--out", default="out/ckd.onnx")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--checkpoint", help="model file (default: the shipped model)")
    p.add_argument("--variant", help="variant for a bare state_dict")
    p.add_argument("--ce-mode", choices=CE_MODES)
    p.add_argument("--trust-pickle", action="store_true", help="also read official trainer files (allowlist unpickler)")
    p.set_defaults(func=_export)


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="official CKD checkpoint (.pth.tar) → the project's safe format",
        description="Read an official CKD trainer file or bare state_dict once (with an allowlist unpickler "
        "that rebuilds tensors and runs none of the file's code), check its config, all 394 keys and "
        "shapes strictly, drop the teacher keys, and write a tensors-only file that robots load with "
        "weights_only=True.",
    )
    p.add_argument("input", help="OSTrack_CKD_epNNNN.pth.tar or a bare state_dict")
    p.add_argument("output", help="output file, e.g. models/ckd_vitb_mce.pt")
    p.add_argument("--variant", help="variant name or YAML for shapes the weights cannot tell (default: official ViT-B)")
    p.add_argument("--ce-mode", choices=CE_MODES, help="elimination stored as the file's default")
    p.set_defaults(func=_convert)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="model file (default: the shipped small model in models/)")
    p.add_argument("--variant", help="variant for a bare state_dict (default: inferred, official ViT-B settings)")
    p.add_argument("--ce-mode", choices=CE_MODES, help="override token elimination")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=("auto", *PRECISIONS),
        help="fp32 (official outputs, default), fp16 (CUDA), bf16, int8 (CPU), or auto: what the node picks (the fastest "
        "precision whose outputs this machine checked against fp32)",
    )
    p.add_argument("--stack-branches", default="auto", choices=STACK_SETTINGS, help="both branches as one batch")
    p.add_argument("--cuda-graphs", default="auto", choices=CUDA_GRAPH_SETTINGS, help="replay the forward as a CUDA graph")
    p.add_argument("--cpu-threads", type=int, default=0, help="CPU threads for inference (default: all cores)")
    p.add_argument("--trust-pickle", action="store_true", help="also read official trainer files (allowlist unpickler)")


def _engine(args: argparse.Namespace):
    """The tracking engine the node builds, from these flags (the node's parameter names)."""
    from ckd_ros.engine import EngineConfig, TrackingEngine, all_cores

    config = EngineConfig(
        checkpoint=args.checkpoint or "",
        model_variant=args.variant or "",
        ce_mode=args.ce_mode or "",
        device=args.device,
        precision=args.precision,
        stack_branches=args.stack_branches,
        cuda_graphs=args.cuda_graphs,
        cpu_threads=args.cpu_threads or all_cores(),  # no ROS executor to leave a core for
        trust_pickle=args.trust_pickle,
        allow_cpu_fallback=False,  # offline: a CUDA failure is reported, not hidden by a slower run
    )
    return TrackingEngine(config, log=lambda line: print(line, file=sys.stderr))


def _load_model(args: argparse.Namespace):
    from ckd_ros.model import load_model
    from ckd_ros.resources import shipped_model

    path = args.checkpoint or shipped_model()
    return load_model(path, device=args.device, ce_mode=args.ce_mode, variant=args.variant, trust_pickle=args.trust_pickle)


def _parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(" ", ",").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not x,y,w,h") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"{text!r} is not four numbers x,y,w,h")
    return values  # type: ignore[return-value]


def _track(args: argparse.Namespace) -> int:
    """Inputs first (frames, the init box against the first frame), then the model, then the output
    folder; a failure while tracking removes what this run created (a new folder, the video)."""
    from ckd_ros.data.frames import FrameSource
    from ckd_ros.preprocess import Aligner
    from ckd_ros.tracker.tracker import check_box

    rgb_src, tir_src = FrameSource(args.rgb), FrameSource(args.tir)
    if len(rgb_src) != len(tir_src):
        print(
            f"warning: {len(rgb_src)} RGB and {len(tir_src)} thermal frames; tracking the first "
            f"{min(len(rgb_src), len(tir_src))}",
            file=sys.stderr,
        )
    try:
        check_box(args.init, rgb_src.first().shape[:2])
    except InputError as exc:
        raise InputError(f"--init: {exc} (the first frame of {args.rgb})") from None
    tir_src.first()  # a thermal video that decodes nothing fails here, not after the model loads
    tracker = _engine(args)
    model = tracker.tracker.model
    align = Aligner(args.align)
    out = Path(args.out)
    partial = out / "track.partial.mp4"  # renamed to track.mp4 when complete
    with removed_on_error(out, partial):
        _track_into(args, out, partial, rgb_src, tir_src, tracker, align, model)
    return 0


def _track_into(args, out: Path, partial: Path, rgb_src, tir_src, tracker, align, model) -> None:
    from tqdm import tqdm

    from ckd_ros.tracker.offline import track_sequence, write_boxes
    from ckd_ros.viz import VideoWriter, annotate_pair

    output_dir(out)
    for name in ("boxes.txt", "scores.txt", "times.txt", "track.mp4"):
        output_file(out / name)
    video = None if args.no_video else VideoWriter(str(partial))
    bar = tqdm(total=min(len(rgb_src), len(tir_src)), unit="frame", desc="tracking", disable=not _progress())

    def on_frame(rgb, tir, res) -> None:
        bar.update()
        bar.set_postfix(score=f"{res.score:.2f}", lost=res.lost)
        if video is not None:
            state = "LOST" if res.lost else "tracking"
            video.write(annotate_pair(rgb, tir, res.box, f"#{res.frame} score {res.score:.2f} {state}", res.lost))

    pairs = ((rgb, align(rgb, tir)) for rgb, tir in zip(rgb_src, tir_src))
    try:
        seq = track_sequence(tracker, pairs, args.init, on_frame)
    finally:
        bar.close()
        if video is not None:
            video.close()
    write_boxes(out / "boxes.txt", seq.boxes)
    (out / "scores.txt").write_text("".join(f"{r.score:.4f},{int(r.lost)}\n" for r in seq.results))
    (out / "times.txt").write_text("".join(f"{t:.6f}\n" for t in seq.seconds))
    if video is not None:
        partial.replace(out / "track.mp4")
    print(
        f"{len(seq.results)} frames, {seq.fps:.1f} FPS ({model.cfg.name} on {tracker.device}); "
        f"wrote {out}/boxes.txt, scores.txt, times.txt" + ("" if video is None else ", track.mp4")
    )


def _add_track(sub: argparse._SubParsersAction) -> None:
    from ckd_ros.preprocess.align import UNCALIBRATED_MODES

    p = sub.add_parser(
        "track",
        help="track one recorded RGB-T sequence (folders of images or videos)",
        description="Track a target through a recorded RGB + thermal sequence and write boxes "
        "(x,y,w,h per line, first line = the init box), scores and an annotated video.",
    )
    p.add_argument("--rgb", required=True, help="folder of RGB frames (sorted by name) or a video")
    p.add_argument("--tir", required=True, help="folder of thermal frames or a video, registered to RGB")
    p.add_argument("--init", required=True, type=_parse_box, help="initial box x,y,w,h in RGB pixels")
    p.add_argument("--out", default="out/track", help="output folder (default: out/track)")
    p.add_argument("--align", default="none", choices=UNCALIBRATED_MODES, help="thermal registration")
    p.add_argument("--no-video", action="store_true", help="skip the annotated video")
    _add_model_args(p)
    p.set_defaults(func=_track)


def _train(args: argparse.Namespace) -> int:
    """Config, output folder, data on disk and the init checkpoint are all checked (one line, exit 2)
    before the first step; under torchrun only rank 0 prints."""
    from ckd_ros.train import build_trainer, load_train_config

    cfg = load_train_config(args.config, args.set or [])
    if args.out:
        cfg.out_dir = args.out
    main_rank = os.environ.get("RANK", "0") == "0"
    if main_rank:
        output_dir(cfg.out_dir, "training output folder")  # before data and model are built
    say = print if main_rank else (lambda *_a, **_k: None)
    trainer = build_trainer(cfg, progress=_progress(), log=say)
    say(
        f"stage {cfg.stage} ({cfg.name}): {cfg.steps} steps x batch {cfg.batch_size} x {trainer.world} rank(s) on "
        f"{trainer.device}, model {cfg.model}, data {cfg.data.kind}, out {cfg.out_dir}"
    )
    from ckd_ros.train.trainer import teardown_distributed

    try:
        final = trainer.run()
    finally:
        teardown_distributed()
    say(f"wrote {final} (inference model) and {Path(cfg.out_dir) / 'last.pt'} (training state)")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train CKD (stage 0 teachers, 1 distillation, 2 MCE head)",
        description="Run one training stage from a YAML config; resumes from OUT/last.pt if present. "
        "Multi-GPU: torchrun --nproc_per_node N -m ckd_ros.cli train CONFIG",
    )
    p.add_argument("config", help="config/train/*.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--out", help="output folder (default: out_dir of the config)")
    p.set_defaults(func=_train)


TRACKERS = ("ckd", "constant", "mil-rgb", "mil-tir", "teacher-rgb", "teacher-tir")


def tracker_factory(args: argparse.Namespace):
    """A zero-argument constructor of the tracker named by ``--tracker`` (one per sequence)."""
    from ckd_ros.eval.runner import ConstantBox, OpenCVTracker
    from ckd_ros.tracker import CKDTracker

    kind = args.tracker
    if kind == "constant":
        return ConstantBox
    if kind.startswith("mil-"):
        return lambda: OpenCVTracker(kind.removeprefix("mil-"))
    if kind.startswith("teacher-"):
        from ckd_ros.runtime import resolve_device
        from ckd_ros.train import load_teacher

        if not args.checkpoint:
            raise ConfigError(f"--tracker {kind} needs --checkpoint OUT/last.pt of a training run")
        teacher = load_teacher(args.checkpoint, kind.removeprefix("teacher-")).to(resolve_device(args.device)).eval()
        precision = "fp32" if args.precision == "auto" else args.precision  # a baseline runs the reference arithmetic
        return lambda: CKDTracker(teacher, precision=precision)
    engine = _engine(args)
    return lambda: engine  # initialize() starts each sequence afresh


def _eval_run(args: argparse.Namespace) -> int:
    from ckd_ros.data.datasets import read_dataset
    from ckd_ros.eval.runner import run_dataset

    seqs = read_dataset(args.dataset, args.root, args.sequences)
    stats = run_dataset(
        tracker_factory(args), seqs, args.out, float_boxes=args.float_boxes, progress=_progress(), desc=args.tracker
    )
    print(
        f"{args.tracker}: tracked {stats['tracked']} sequences ({stats['skipped']} already done) at "
        f"{stats['fps']:.1f} FPS; results in {args.out}"
    )
    return 0


def _tracker_labels(folders: list[str]) -> list[str]:
    """Each results folder's name labels its row; two folders of one name would merge silently."""
    labels = [Path(os.path.abspath(f)).name or str(f) for f in folders]
    for i, name in enumerate(labels):
        if name in labels[:i]:
            raise ConfigError(
                f"results folders {folders[labels.index(name)]} and {folders[i]} are both named {name!r}, "
                "and a folder's name labels its tracker; rename or link one"
            )
    return labels


def _length_refusal(mismatches, count: int, folder: str) -> str:
    first = mismatches[0].text()
    what = first if len(mismatches) == 1 else f"{len(mismatches)} of {count} result files in {folder} differ, e.g. {first}"
    return f"{what}: a result file needs one row per frame; --allow-short scores over the frames both have, as the toolkit does"


def _eval_score(args: argparse.Namespace) -> int:
    """Every input is read and checked, and the plot rendered, before anything is printed: a
    failure prints its one line and no table. Result files whose length differs from the ground
    truth are refused unless --allow-short (ckd_ros.eval.score would score them silently)."""
    from ckd_ros.data.datasets import read_dataset
    from ckd_ros.eval import length_mismatches, protocol_of, read_result_folder, score_sequences, tracker_fps
    from ckd_ros.eval.plots import metrics_table, plot_curves, plot_path

    labels = _tracker_labels(args.results)
    plot = plot_path(args.plot) if args.plot else None
    seqs = read_dataset(args.dataset, args.root, args.sequences)
    protocol = protocol_of(args.dataset)
    metrics, notes = {}, []
    for folder, name in zip(args.results, labels):
        results = read_result_folder(folder, seqs)
        off = length_mismatches(seqs, results, folder, protocol)
        if off and not args.allow_short:
            raise InputError(_length_refusal(off, len(seqs), folder))
        if off:
            short = sum(m.short for m in off)
            parts = [f"{short} of {len(seqs)} sequences short (scored over the frames present)"] if short else []
            parts += [f"{len(off) - short} of {len(seqs)} longer than the ground truth (cut to it)"] if len(off) > short else []
            notes.append(f"{name}: {', '.join(parts)} (--allow-short)")
        metrics[name] = score_sequences(seqs, results, protocol)
        metrics[name]["fps"] = tracker_fps(folder, [s.name for s in seqs])
    if plot is not None:
        plot_curves(metrics, plot, args.dataset)
    print(metrics_table(metrics))
    for note in notes:
        print(note)
    if args.per_sequence:
        for name, m in metrics.items():
            print(f"\n{name}: per sequence (PR@20 / SR, %)")
            for seq, v in m["per_sequence"].items():
                print(f"  {seq:<40} {100 * v['PR']:5.1f} {100 * v['SR']:5.1f}")
    if plot is not None:
        print(f"plot: {plot}")
    return 0


def _make_suite(args: argparse.Namespace) -> int:
    from ckd_ros.data.synthetic import SUITE_SEEDS, write_suite

    if not 1 <= args.count <= len(SUITE_SEEDS):
        raise ConfigError(f"--count {args.count}: the held-out suite has 1 to {len(SUITE_SEEDS)} sequences")
    _check_length(args.length)
    out = Path(args.out)
    with removed_on_error(out):
        output_dir(out, "suite folder")
        folders = write_suite(out, args.count, args.length, progress=_progress())
    print(f"wrote {len(folders)} sequences in the LasHeR layout under {args.out}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from ckd_ros.data.datasets import DATASETS

    p = sub.add_parser("eval", help="benchmarks: run trackers, score result files, make the synthetic suite")
    esub = p.add_subparsers(dest="eval_command", required=True, metavar="ACTION")
    run = esub.add_parser("run", help="track every sequence of a dataset (resumable) and write result files")
    run.add_argument("--dataset", required=True, help=f"{', '.join(DATASETS)} or synthetic")
    run.add_argument("--root", required=True, help="the dataset folder in its own layout")
    run.add_argument("--out", required=True, help="result folder: <sequence>.txt and <sequence>_time.txt")
    run.add_argument("--sequences", nargs="+", help="only these sequences")
    run.add_argument("--tracker", default="ckd", choices=TRACKERS, help="ckd (default) or a baseline")
    run.add_argument("--float-boxes", action="store_true", help="keep decimals (official files truncate to int)")
    _add_model_args(run)
    run.set_defaults(func=_eval_run)
    sc = esub.add_parser("score", help="metric table (and plots) for one or more result folders")
    sc.add_argument("--dataset", required=True)
    sc.add_argument("--root", required=True)
    sc.add_argument("--results", required=True, nargs="+", help="result folders; each folder name labels a tracker")
    sc.add_argument("--sequences", nargs="+")
    sc.add_argument("--plot", help="write precision/success plots to this PNG")
    sc.add_argument("--per-sequence", action="store_true")
    sc.add_argument(
        "--allow-short",
        action="store_true",
        help="score result files shorter (or longer) than their ground truth over the frames both have, as the "
        "toolkit does, and say how many; by default such a folder is refused",
    )
    sc.set_defaults(func=_eval_score)
    ms = esub.add_parser("make-suite", help="write the held-out synthetic RGB-T test suite (LasHeR layout)")
    ms.add_argument("out")
    ms.add_argument("--count", type=int, default=30)
    ms.add_argument("--length", type=int, help="frames per sequence (default: 120-240, varying)")
    ms.set_defaults(func=_make_suite)


def _check_length(length: int | None) -> None:
    if length is not None and length < 2:
        raise ConfigError(f"--length {length}: a sequence needs at least 2 frames (the init frame and one to track)")


def _demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # the demo graph stays on this machine
    if args.transport_profile:  # before rclpy.init: Fast DDS reads the profile once, at the first participant
        from ckd_ros.ros.transport import describe_environment, transport_environment

        os.environ.update(transport_environment(args.transport_profile))
        print(describe_environment())
    if args.bag:
        from ckd_ros.demo import QOS_NOTE
        from ckd_ros.ros.replay import replay

        print(QOS_NOTE)
        report = replay(
            args.bag,
            args.checkpoint,
            mode="lockstep" if args.lockstep else "realtime",
            params={"device": args.device, "precision": args.precision},
            progress=_progress(),
        )
        print(report.text())
        return 0
    from ckd_ros.demo import run_demo
    from ckd_ros.resources import shipped_model

    _check_length(args.length)
    if not (math.isfinite(args.rate) and args.rate > 0):
        raise ConfigError(f"--rate {args.rate}: the input rate must be a positive number of Hz")
    output_dir(args.out, "demo output folder")
    checkpoint = args.checkpoint or str(shipped_model())
    print(f"demo: {checkpoint} in the ckd_tracker node; output in {args.out}")
    run_demo(
        checkpoint,
        args.out,
        length=args.length,
        rate=args.rate,
        lockstep=args.lockstep,
        video=not args.no_video,
        node_params={"device": args.device, "precision": args.precision},
        progress=_progress(),
    )
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="held-out synthetic RGB-T sequences through the ckd_tracker ROS 2 node",
        description="Play held-out synthetic RGB-T sequences (night, glare, thermal crossover, occlusion, "
        "distractors) as ROS 2 topics into the ckd_tracker node with the shipped model; print PR/SR, FPS "
        "and latency; write an annotated video and precision/success plots. --bag plays your own bag.",
    )
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--checkpoint", help="model file (default: the shipped model); e.g. converted official ViT-B weights")
    p.add_argument("--bag", help="replay this bag instead (initialised from its ground truth topic)")
    p.add_argument("--length", type=int, default=120, help="frames per sequence")
    p.add_argument("--rate", type=float, default=30.0, help="input rate in Hz (default 30)")
    p.add_argument(
        "--lockstep",
        action="store_true",
        help="send the next pair only after the previous detection "
        "(every frame processed; use it for slow models, e.g. ViT-B on a CPU)",
    )
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--precision", default="auto", choices=("auto", *PRECISIONS))
    p.add_argument("--no-video", action="store_true")
    p.add_argument(
        "--transport-profile",
        default="",
        metavar="NAME|XML",
        help="Fast DDS profile for this process and its children: large_images (shipped) or a path",
    )
    p.set_defaults(func=_demo)


def _launch(args: argparse.Namespace) -> int:
    from ckd_ros.ros.launch_args import check_params_file
    from ckd_ros.ros.launcher import node_command, run
    from ckd_ros.ros.transport import describe_environment, transport_environment

    if args.params_file:
        check_params_file(args.params_file, args.namespace or "")
    cmd = node_command(args.params_file, args.rgb_topic, args.thermal_topic, args.param or [], args.namespace)
    env = transport_environment(args.transport_profile)  # a bad profile: one line, exit 2, nothing started
    print(describe_environment({**os.environ, **env}), flush=True)
    print("starting: " + " ".join(cmd), flush=True)
    return run(cmd, env)


def _add_launch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "launch",
        help="start the ckd_tracker ROS 2 node (what ckd_tracker.launch.py does)",
        description="Start the ckd_tracker node with config/ckd_tracker.yaml, topic remaps and "
        "parameter overrides; for environments without the ROS launch packages.",
    )
    p.add_argument("--params-file", help="parameter YAML (default: config/ckd_tracker.yaml)")
    p.add_argument("--rgb-topic", default="rgb/image")
    p.add_argument("--thermal-topic", default="thermal/image")
    p.add_argument("--namespace", default="")
    p.add_argument("-p", "--param", action="append", metavar="NAME:=VALUE", help="parameter override (repeatable)")
    p.add_argument(
        "--transport-profile",
        default="",
        metavar="NAME|XML",
        help="Fast DDS profile for the node process: large_images (shipped: shared memory for large best-effort "
        "images) or a path (default: the one FASTRTPS_DEFAULT_PROFILES_FILE names, if any; README 'Large images over DDS')",
    )
    p.set_defaults(func=_launch)


def _topics(args: argparse.Namespace):
    from ckd_ros.ros.bags import Topics

    return Topics(rgb=args.rgb_topic, thermal=args.thermal_topic, gt=args.gt_topic)


def _bag_from_sequence(args: argparse.Namespace) -> int:
    from ckd_ros.data.datasets import read_dataset
    from ckd_ros.ros.bags import check_rate, write_sequence_bag

    folder = Path(os.path.abspath(args.sequence))  # "." and "seq/" name their folder too
    if not folder.is_dir():
        raise InputError(f"{args.sequence}: sequence folder {'is not a folder' if folder.exists() else 'not found'}")
    check_rate(args.rate)
    (seq,) = read_dataset(args.dataset, folder.parent, [folder.name])
    out = write_sequence_bag(
        seq, args.out, args.rate, args.storage, _topics(args), progress=_progress(), compressed=args.compressed
    )
    kind = "compressed: RGB jpeg, thermal png" if args.compressed else "raw images"
    print(f"wrote {out}: {len(seq)} frames at {args.rate} Hz ({args.storage}, {kind})")
    return 0


def _bag_from_dataset(args: argparse.Namespace) -> int:
    from ckd_ros.data.datasets import read_dataset
    from ckd_ros.ros.bags import check_rate, write_sequence_bag

    check_rate(args.rate)
    seqs = read_dataset(args.dataset, args.root, args.sequences)
    out = output_dir(args.out, "folder for the bags")
    for seq in seqs:
        if (out / seq.name).exists():  # a bag is removed when its writing fails, so one that exists is whole
            continue
        write_sequence_bag(
            seq, out / seq.name, args.rate, args.storage, _topics(args), progress=_progress(), compressed=args.compressed
        )
    print(f"{len(seqs)} bags under {out}")
    return 0


def _bag_export(args: argparse.Namespace) -> int:
    """A recorded bag → a training sequence folder (``data.kind: folder``)."""
    from ckd_ros.ros.bags import export_bag

    report = export_bag(args.bag, args.out, _topics(args), args.slop, progress=_progress())
    note = "" if report.boxes else "; the bag has no ground truth: annotate groundtruth.txt (x,y,w,h per frame) to train on it"
    skipped = f", {report.skipped} pairs that did not decode left out" if report.skipped else ""
    print(f"wrote {report.out}: {report.frames} frame pairs, {report.boxes} with a box{skipped}{note}")
    return 0


def _bag_replay(args: argparse.Namespace) -> int:
    """--out is checked before the bag plays: a replay can take as long as the recording."""
    from ckd_ros.ros.replay import replay

    if not (math.isfinite(args.rate_scale) and args.rate_scale > 0):
        raise ConfigError(f"--rate-scale {args.rate_scale}: must be a positive factor")
    out = [Path(args.out)] if args.out else []
    with removed_on_error(*out):  # a folder made for --out goes again if the replay fails
        result = output_file(out[0] / f"{Path(os.path.abspath(args.bag)).name}.txt", "result file") if out else None
        report = replay(
            args.bag,
            args.checkpoint,
            _topics(args),
            "lockstep" if args.lockstep else "realtime",
            args.rate_scale,
            args.init,
            progress=_progress(),
        )
    print(report.text())
    if result is not None:
        from ckd_ros.eval.runner import write_result

        write_result(result, [tuple(b) for b in report.boxes], [0.0] * len(report.boxes), True)
        print(f"boxes: {result}")
    return 0


def _add_bag(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bag", help="ROS 2 bags: write RGB-T sequences as bags, replay a bag through the node")
    bsub = p.add_subparsers(dest="bag_command", required=True, metavar="ACTION")

    def topic_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--rgb-topic", default="/rgb/image")
        q.add_argument("--thermal-topic", default="/thermal/image")
        q.add_argument("--gt-topic", default="/ground_truth", help="vision_msgs/Detection2D ground truth")

    seq = bsub.add_parser("from-sequence", help="one sequence folder → one bag")
    seq.add_argument("sequence", help="a sequence folder in its dataset's layout")
    seq.add_argument("out", help="the bag folder to create")
    seq.add_argument("--dataset", default="lasher", help="layout of the sequence (default: lasher / synthetic)")
    ds = bsub.add_parser("from-dataset", help="every sequence of a dataset → one bag each")
    ds.add_argument("--dataset", required=True)
    ds.add_argument("--root", required=True)
    ds.add_argument("--sequences", nargs="+")
    ds.add_argument("out", help="folder for the bags")
    for q in (seq, ds):
        q.add_argument("--rate", type=float, default=25.0, help="frames per second of the stamps (default 25)")
        q.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
        q.add_argument(
            "--compressed",
            action="store_true",
            help="CompressedImage on <topic>/compressed (RGB jpeg, thermal png), as image_transport records them",
        )
        topic_args(q)
    seq.set_defaults(func=_bag_from_sequence)
    ds.set_defaults(func=_bag_from_dataset)
    rp = bsub.add_parser(
        "replay",
        help="play a bag through the ckd_tracker node; accuracy, latency, drops",
        description="Play a bag into a ROS 2 graph running the ckd_tracker node (initialised from the "
        "first ground-truth box or --init) and report PR/NPR/SR, latency and processed/dropped pairs.",
    )
    rp.add_argument("bag")
    rp.add_argument("--checkpoint", help="model file (default: the shipped model)")
    rp.add_argument("--init", type=_parse_box, help="x,y,w,h when the bag has no ground truth")
    rp.add_argument("--lockstep", action="store_true", help="wait for each detection (every frame processed)")
    rp.add_argument("--rate-scale", type=float, default=1.0, help="realtime mode: play this many times faster")
    rp.add_argument("--out", help="write the boxes as a result file here")
    topic_args(rp)
    rp.set_defaults(func=_bag_replay)
    ex = bsub.add_parser(
        "export",
        help="a recorded bag → a training sequence folder (rgb/, thermal/, groundtruth.txt)",
        description="Write the bag's RGB/thermal pairs (raw or compressed, paired by stamp) as PNGs and its "
        "Detection2D ground truth as groundtruth.txt (NaN rows where none): train on it with data.kind=folder.",
    )
    ex.add_argument("bag")
    ex.add_argument("out", help="the sequence folder to create")
    ex.add_argument("--slop", type=float, default=0.02, help="seconds between paired stamps (default 0.02)")
    topic_args(ex)
    ex.set_defaults(func=_bag_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ckd-ros", description="RGB + thermal tracking with CKD, for ROS 2")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_track,
    _add_launch,
    _add_bag,
    _add_eval,
    _add_train,
    _add_convert,
    _add_export,
]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CKDError as exc:
        print(f"ckd-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ckd-ros {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
