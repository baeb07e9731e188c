"""Checkpoint I/O: the one boundary where foreign weights are adapted (spec §2).

Three kinds of file are read:

* the project's own format (``save_checkpoint``): a plain dict of tensors, strings and numbers,
  opened with ``torch.load(weights_only=True)`` and so never executing code;
* a bare ``state_dict`` (what the official tracker falls back to), also opened weights-only;
* an official trainer file ``{'net': …, 'settings': <pickled lib.* objects>, …}``. Those hold
  pickled classes of the original code base, so they can only be opened by running pickle. That is
  done only when the caller says ``trust_pickle=True`` (``ckd-ros convert`` does), with an
  unpickler that turns unknown classes into inert dicts. Convert once, offline; robots load the
  converted file.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import types
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ckd_ros.errors import CheckpointError
from ckd_ros.model.config import ModelConfig

FORMAT = "ckd_ros/1"
TRAINING_ONLY_PREFIXES = ("teacher_rgb.", "teacher_tir.", "box_head_v.", "box_head_i.")
OFFICIAL_VITB = ModelConfig()  # the released ViT-B/16 shape, MCE at blocks 3, 6, 9
_SHOW = 5  # how many offending keys an error message lists


class _ForeignObject(dict):
    """Stand-in for a class of the original code base (Settings, AverageMeter, EasyDict …)."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state


class _PermissiveUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_ForeignObject,), {"__module__": module})


_permissive_pickle = types.SimpleNamespace(
    Unpickler=_PermissiveUnpickler,
    load=lambda f, **kw: _PermissiveUnpickler(f, **kw).load(),
    __name__="ckd_ros_permissive_pickle",
)


def _unpickling_detail(message: str) -> str:
    """The informative line of torch's long weights-only error (what it refused, or why)."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.startswith("WeightsUnpickler error"):
            rest = ln.removeprefix("WeightsUnpickler error:").strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else ln)
    return lines[0] if lines else "unreadable"


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickling_detail(str(exc))
        if "Unsupported global" not in detail:  # garbage bytes fail the same reader, differently
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or another format): {detail}") from None
        if not trust_pickle:
            raise CheckpointError(
                f"{path}: holds pickled Python objects (an official CKD trainer file?), which ckd_ros "
                "only opens on request because unpickling runs code. Convert it once with "
                f"`ckd-ros convert {path} OUT.pt` (or pass trust_pickle=True) and load OUT.pt. "
                f"Detail: {detail}"
            ) from None
    except Exception as exc:  # zip/pickle readers raise many types on a truncated or foreign file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or another format): {exc}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_permissive_pickle)
    except Exception as exc:
        raise CheckpointError(f"{path}: could not be unpickled even permissively: {exc}") from None


def _as_state_dict(obj: Any, path: Path) -> tuple[dict[str, Tensor], ModelConfig | None]:
    config = None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        config = ModelConfig.from_dict(dict(obj["config"]), source=f"{path} (embedded config)")
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and "net" in obj:
        obj = obj["net"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state_dict (a mapping of names to tensors)")
    not_tensors = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: not a state_dict: {len(not_tensors)} entries are not tensors, e.g. {not_tensors[:_SHOW]}")
    state = {}
    for key, value in obj.items():
        key = key.removeprefix("module.")
        if not key.startswith(TRAINING_ONLY_PREFIXES):
            state[key] = value
    return state, config


def read_checkpoint(path: str | os.PathLike[str], trust_pickle: bool = False) -> tuple[dict[str, Tensor], ModelConfig | None]:
    """The inference state_dict (teacher keys dropped) and, for our own files, the embedded config."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file")
    if not p.is_file():
        raise CheckpointError(f"{p}: is not a file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: is empty")
    return _as_state_dict(_torch_load(p, trust_pickle), p)


def infer_config(state: dict[str, Tensor], base: ModelConfig | None = None) -> ModelConfig:
    """Recover the network shape from tensor shapes (a bare state_dict carries no config).

    ``base`` supplies what weights cannot tell (head count, elimination policy); by default the
    official ViT-B settings, i.e. MCE at blocks 3/6/9 — the released best model.
    """
    base = base or OFFICIAL_VITB
    required = [
        "rgb_branch.pos_embed_z",
        "rgb_branch.pos_embed_x",
        "rgb_branch.patch_embed.proj.weight",
        "rgb_branch.pos_embed",
        "rgb_branch.blocks.0.mlp.fc1.weight",
        "box_head.conv1_ctr.0.weight",
    ]
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"not a CKD state_dict: missing {missing[:_SHOW]} (found keys such as {list(state)[:_SHOW]})")
    dim = state["rgb_branch.pos_embed_x"].shape[-1]
    patch = state["rgb_branch.patch_embed.proj.weight"].shape[-1]
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"rgb_branch\.blocks\.(\d+)\.", k)))
    heads = base.num_heads if dim == base.embed_dim else max(1, dim // 64)
    side = {key: math.isqrt(state[f"rgb_branch.{key}"].shape[1]) for key in ("pos_embed_z", "pos_embed_x")}
    same_shape = (dim, depth, patch) == (base.embed_dim, base.depth, base.patch_size)
    return base.replace(
        name=base.name if same_shape else "custom",
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=state["rgb_branch.blocks.0.mlp.fc1.weight"].shape[0] / dim,
        patch_size=patch,
        template_size=side["pos_embed_z"] * patch,
        search_size=side["pos_embed_x"] * patch,
        ce_loc=tuple(i for i in base.ce_loc if i < depth),
        head_channels=state["box_head.conv1_ctr.0.weight"].shape[0],
        legacy_pos_tokens=state["rgb_branch.pos_embed"].shape[1],
    )


def check_state_dict(expected: dict[str, Tensor], state: dict[str, Tensor], source: str) -> None:
    """Strict key and shape match, with a message that lists the first few offenders."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} (model expects {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            more = f" and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
            problems.append(f"{len(items)} {label} keys: {', '.join(items[:_SHOW])}{more}")
    if problems:
        raise CheckpointError(f"{source}: does not fit the model: " + "; ".join(problems))


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write the project's safe format: tensors, the variant config and plain metadata only."""
    cfg: ModelConfig = model.cfg
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {"format": FORMAT, "config": cfg.to_dict(), "state_dict": state}
    if extra:
        payload["meta"] = extra
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, p)  # a crash mid-write never leaves a truncated checkpoint behind
    return p
