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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ckd-ros", description="RGB + thermal tracking with CKD, for ROS 2")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_convert]


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
