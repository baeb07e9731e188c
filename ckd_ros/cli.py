"""The ``ckd-ros`` command: one entry point, a subcommand per job.

Each subcommand is a thin adapter over a core function; every error the core raises on purpose
(``CKDError``) becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ckd_ros.errors import CKDError


def _convert(args: argparse.Namespace) -> int:
    from ckd_ros.model import load_model, save_checkpoint

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


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="official CKD checkpoint (.pth.tar) → the project's safe format",
        description="Open an official CKD trainer file or bare state_dict once (this runs pickle, so only "
        "convert files you trust), drop the teacher keys, check all 394 keys strictly, and write a "
        "tensors-only file that robots load with weights_only=True.",
    )
    p.add_argument("input", help="OSTrack_CKD_epNNNN.pth.tar or a bare state_dict")
    p.add_argument("output", help="output file, e.g. models/ckd_vitb_mce.pt")
    p.add_argument("--variant", help="variant name or YAML for shapes the weights cannot tell (default: official ViT-B)")
    p.add_argument("--ce-mode", choices=["mce", "ce", "none"], help="elimination stored as the file's default")
    p.set_defaults(func=_convert)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="model file (default: the shipped small model in models/)")
    p.add_argument("--variant", help="variant for a bare state_dict (default: inferred, official ViT-B settings)")
    p.add_argument("--ce-mode", choices=["mce", "ce", "none"], help="override token elimination")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--trust-pickle", action="store_true", help="allow official trainer files (runs pickle)")


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
    from tqdm import tqdm

    from ckd_ros.data.frames import FrameSource
    from ckd_ros.preprocess import Aligner
    from ckd_ros.tracker import CKDTracker
    from ckd_ros.tracker.offline import track_sequence, write_boxes
    from ckd_ros.viz import VideoWriter, annotate_pair

    rgb_src, tir_src = FrameSource(args.rgb), FrameSource(args.tir)
    if len(rgb_src) != len(tir_src):
        print(
            f"warning: {len(rgb_src)} RGB and {len(tir_src)} thermal frames; tracking the first "
            f"{min(len(rgb_src), len(tir_src))}",
            file=sys.stderr,
        )
    model = _load_model(args)
    tracker = CKDTracker(model, precision=args.precision)
    align = Aligner(args.align)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    video = None if args.no_video else VideoWriter(str(out / "track.mp4"))
    bar = tqdm(total=min(len(rgb_src), len(tir_src)), unit="frame", desc="tracking")

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
    print(
        f"{len(seq.results)} frames, {seq.fps:.1f} FPS ({model.cfg.name} on {tracker.device}); "
        f"wrote {out}/boxes.txt, scores.txt, times.txt" + ("" if video is None else ", track.mp4")
    )
    return 0


def _add_track(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--align", default="none", choices=["none", "resize"], help="thermal registration")
    p.add_argument("--no-video", action="store_true", help="skip the annotated video")
    _add_model_args(p)
    p.set_defaults(func=_track)


def _train(args: argparse.Namespace) -> int:
    from ckd_ros.train import Trainer, load_train_config, make_sources

    cfg = load_train_config(args.config, args.set or [])
    if args.out:
        cfg.out_dir = args.out
    sources, count = make_sources(cfg)
    trainer = Trainer(cfg, sources, count)
    print(
        f"stage {cfg.stage} ({cfg.name}): {cfg.steps} steps x batch {cfg.batch_size} on {trainer.device}, "
        f"model {cfg.model}, out {cfg.out_dir}"
    )
    final = trainer.run()
    print(f"wrote {final} (inference model) and {Path(cfg.out_dir) / 'last.pt'} (training state)")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ckd-ros", description="RGB + thermal tracking with CKD, for ROS 2")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_convert, _add_track, _add_train]


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
