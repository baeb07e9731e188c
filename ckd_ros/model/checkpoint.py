"""Checkpoint I/O: the one boundary where foreign weights are adapted (docs/checkpoints.md).

Three kinds of file are read:

* the project's own format (``save_checkpoint``): a plain dict of tensors, strings and numbers,
  opened with ``torch.load(weights_only=True)`` and so never executing code;
* a bare ``state_dict`` (what the official tracker falls back to), also opened weights-only;
* an official trainer file ``{'net': …, 'settings': <pickled lib.* objects>, …}``. Those hold
  pickled classes of the original code base, which torch's weights-only reader refuses. When the
  caller asks (``trust_pickle=True``; ``ckd-ros convert`` does), they are read with an allowlist
  unpickler (``_AllowlistUnpickler``): the few torch and collections names that rebuild tensors are
  resolved, every other global becomes an inert stand-in without its module being imported, and no
  pickle opcode can call anything else. So a file from anywhere can be converted: its tensors come
  out, its code does not run.

Whatever the file, its config and tensor shapes are checked against bounds and against each other
before the network is built (``check_loadable``), so a bad file costs one line, not a traceback or
an allocation of hundreds of GB.
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch._tensor
import torch._utils
from torch import Tensor

from ckd_ros.errors import CheckpointError
from ckd_ros.model import head
from ckd_ros.model.config import ModelConfig, _show

FORMAT = "ckd_ros/1"
TRAINING_ONLY_PREFIXES = ("teacher_rgb.", "teacher_tir.", "box_head_v.", "box_head_i.")
OFFICIAL_VITB = ModelConfig()  # the released ViT-B/16 shape, MCE at blocks 3, 6, 9
_SHOW = 5  # how many offending keys an error message lists
_MAX_STAND_INS = 10_000  # distinct foreign globals in one file; a trainer file has a few dozen
_UNREADABLE = "not a readable PyTorch checkpoint (truncated or another format)"


# ---------------------------------------------------------------------------------------------
# The allowlist unpickler
#
# Safety argument: pickle can only call what is on its stack, and every callable reaches the stack
# through ``find_class`` (GLOBAL, STACK_GLOBAL, INST; EXT is refused) or as the result of a call.
# ``find_class`` resolves exactly the (module, name) pairs below, from modules already imported,
# and turns every other pair into a fresh ``_Inert`` subclass. The opcodes that call or mutate
# (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ, BUILD, APPEND(S), SETITEM(S), ADDITEMS) are replaced so
# that they call only ``_CALLABLE`` entries or stand-ins, build only stand-ins and OrderedDicts,
# and append or set items only on real lists, sets, dicts and stand-ins. Each ``_CALLABLE`` entry,
# given any mix of these objects, only builds tensors, containers or raises.
# ---------------------------------------------------------------------------------------------


class _Refused(pickle.UnpicklingError):
    """The allowlist unpickler declined an opcode (as opposed to bytes that are not a pickle)."""


def _existing(module: Any, *names: str) -> dict[tuple[str, str], Any]:
    """(module name, attribute) → object for the names this torch has (``_rebuild_tensor_v3`` and
    ``_rebuild_parameter_with_state`` are newer than torch 2.1's oldest builds)."""
    return {(module.__name__, n): getattr(module, n) for n in names if hasattr(module, n)}


# Called by REDUCE: what torch.save writes to rebuild a tensor, a parameter or a state_dict.
_CALLABLE: dict[tuple[str, str], Any] = {
    # Views on a storage that torch's persistent_load already read from the archive; set_() checks
    # the offset, sizes and strides against the storage's length.
    **_existing(torch._utils, "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3"),
    # nn.Parameter(data) over such a tensor; the ``state`` variant setattr()s pickled attributes.
    **_existing(torch._utils, "_rebuild_parameter", "_rebuild_parameter_with_state"),
    # A tensor with Python attributes: calls one of the above (its first argument comes off the same
    # stack), then as_subclass() to a Tensor type, which only torch.Tensor here satisfies.
    **_existing(torch._tensor, "_rebuild_from_type_v2"),
    ("collections", "OrderedDict"): collections.OrderedDict,  # every state_dict is one
    ("torch", "Size"): torch.Size,  # a tuple of ints
    ("torch", "device"): torch.device,  # parses a device string; allocates nothing
}
# Resolved but never called, instantiated or built: values torch's loader or the rebuild functions
# compare against. ``torch.save`` names a storage's class in each tensor record; torch's own
# ``find_class`` wrapper maps the typed ones (``FloatStorage`` …) to dtype markers before we see
# them, and compares the untyped one by identity, so it must be the real class.
_VALUE: dict[tuple[str, str], Any] = {
    ("torch", "UntypedStorage"): torch.UntypedStorage,
    ("torch.storage", "UntypedStorage"): torch.UntypedStorage,
    ("torch", "Tensor"): torch.Tensor,  # the type argument of _rebuild_from_type_v2
    ("torch._tensor", "Tensor"): torch.Tensor,
    # dtypes (torch.float16 …) are immutable, uncallable constants; vars() never triggers torch's
    # lazy submodule imports the way getattr() on dir() names would.
    **{("torch", n): v for n, v in vars(torch).items() if isinstance(v, torch.dtype)},
}
_ALLOWED = {**_VALUE, **_CALLABLE}


class _Inert(dict):
    """Stand-in for every global outside the allowlist: ``lib.train.admin.settings.Settings``,
    EasyDict, numpy scalars — and ``os.system`` or ``builtins.exec``.

    Its class is made from the pickled name alone; the named module is never imported. Calling it,
    NEWOBJ, REDUCE (also on an instance) and BUILD only record their arguments; dict state is also
    copied in, so a foreign object reads as a plain dict of its attributes. ``__slots__`` leaves
    instances without a ``__dict__``, so no opcode can plant an attribute that shadows a method
    (``extend``, ``__setstate__`` …) and reach a callable that way. Identity hash and equality let a
    stand-in be a dict key or set member, as the objects it replaces can be.
    """

    __slots__ = ("pickle_args", "pickle_items", "pickle_state")
    pickle_global = "<call of an inert object>"  # per class: "module.name" it stands in for

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self)
        self.pickle_args = (args, kwargs)
        self.pickle_state: Any = None
        self.pickle_items: list[Any] = []

    def __setstate__(self, state: Any) -> None:
        self.pickle_state = state
        for part in state if isinstance(state, tuple) else (state,):  # (dict state, slot state)
            if isinstance(part, dict):
                dict.update(self, part)

    def _extend(self, items: Any) -> None:  # APPEND(S) / ADDITEMS on a stand-in list or set subclass
        self.pickle_items.extend(items)

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def __repr__(self) -> str:
        return f"<inert {self.pickle_global}>"


def _made(cls: type[_Inert], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Inert:
    obj = dict.__new__(cls)
    _Inert.__init__(obj, *args, **kwargs)
    return obj


def _describe(obj: Any) -> str:
    """Names what a refused opcode met, without calling anything on it but type()."""
    kind = type(obj)
    if kind is type or issubclass(kind, type):
        return f"the class {obj.__module__}.{obj.__qualname__}"
    return f"a {kind.__module__}.{kind.__qualname__}"


class _AllowlistUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be replaced
    """Reads a trainer file's pickle without running any of the file's code (see the note above).

    The C unpickler offers only ``find_class``; its BUILD, APPENDS and ADDITEMS look up methods on
    whatever is on the stack. This one replaces those opcodes too. It is slower, but a trainer
    file's pickle is a few hundred kB: the tensor bytes sit in the archive and reach it through
    torch's ``persistent_load``.
    """

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: Any, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._stand_ins: dict[tuple[str, str], type[_Inert]] = {}

    def find_class(self, module: str, name: str) -> Any:
        """An exact allowlisted pair, else a stand-in class; dotted names are never walked."""
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        cls = self._stand_ins.get((module, name))
        if cls is None:
            if len(self._stand_ins) >= _MAX_STAND_INS:
                raise _Refused(f"more than {_MAX_STAND_INS} distinct foreign classes")
            label = re.sub(r"\W", "_", name.rpartition(".")[2], flags=re.ASCII)[:64] or "_"
            cls = type(label, (_Inert,), {"__slots__": (), "__module__": __name__, "pickle_global": f"{module}.{name}"})
            self._stand_ins[(module, name)] = cls
        return cls

    def _call(self, func: Any, args: Any, kwargs: Any) -> Any:
        if type(args) is not tuple or type(kwargs) is not dict:
            raise _Refused(f"call arguments must be a tuple and a dict, got {_describe(args)}")
        if type(func) is type and issubclass(func, _Inert):
            return _made(func, args, kwargs)
        if issubclass(type(func), _Inert):  # calling a stand-in instance (getattr(os, 'system')(…))
            return _made(_Inert, (func, *args), kwargs)
        if func is getattr(torch._tensor, "_rebuild_from_type_v2", None):
            # it calls its first argument: that must be a tensor rebuild, never a class it would instantiate
            rebuilds = [v for (m, n), v in _CALLABLE.items() if m == "torch._utils"]
            if len(args) < 2 or not any(args[0] is r for r in rebuilds) or args[1] not in (torch.Tensor, torch.nn.Parameter):
                raise _Refused("refused _rebuild_from_type_v2 whose function is not a tensor rebuild")
        if any(func is allowed for allowed in _CALLABLE.values()):
            return func(*args, **kwargs)
        raise _Refused(f"refused to call {_describe(func)}: not a tensor-rebuild function")

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args, {})

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, {}))

    def _load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    def _new(self, cls: Any, args: Any, kwargs: Any) -> _Inert:
        if type(cls) is type and issubclass(cls, _Inert) and type(args) is tuple and type(kwargs) is dict:
            return _made(cls, args, kwargs)
        raise _Refused(f"refused to create an object of {_describe(cls)}")

    def _load_inst(self) -> None:
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        cls = self.find_class(module, name)
        args = tuple(self.pop_mark())  # before self.append is read: pop_mark rebinds it
        self.append(self._call(cls, args, {}))

    def _load_obj(self) -> None:
        args = self.pop_mark()
        cls = args.pop(0)
        self.append(self._call(cls, tuple(args), {}))

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if issubclass(type(inst), _Inert):
            _Inert.__setstate__(inst, state)
        elif type(inst) is collections.OrderedDict:
            # A state_dict carries ``_metadata`` (module versions) as an attribute. Nothing else is
            # kept: an attribute could shadow a method (``detach``, ``keys``) that code later calls.
            if type(state) is dict and "_metadata" in state:
                inst._metadata = state["_metadata"]
        else:
            raise _Refused(f"refused to set the state of {_describe(inst)}")

    def _extend(self, target: Any, items: list[Any], kind: type) -> None:
        if type(target) is list and kind is list:
            target.extend(items)
        elif type(target) is set and kind is set:
            target.update(items)
        elif issubclass(type(target), _Inert):
            _Inert._extend(target, items)
        else:
            raise _Refused(f"refused to add items to {_describe(target)}")

    def _load_append(self) -> None:
        value = self.stack.pop()
        self._extend(self.stack[-1], [value], list)

    def _load_appends(self) -> None:
        items = self.pop_mark()
        self._extend(self.stack[-1], items, list)

    def _load_additems(self) -> None:
        items = self.pop_mark()
        self._extend(self.stack[-1], items, set)

    def _set_items(self, target: Any, items: list[Any]) -> None:
        if len(items) % 2:
            raise _Refused("SETITEMS with an odd number of items")
        if type(target) is dict or type(target) is collections.OrderedDict or issubclass(type(target), _Inert):
            for i in range(0, len(items), 2):
                target[items[i]] = items[i + 1]
        else:
            raise _Refused(f"refused to set items on {_describe(target)}")

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._set_items(self.stack[-1], [key, value])

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        self._set_items(self.stack[-1], items)

    def _load_ext(self) -> None:
        # copyreg's extension registry is process-wide and its cache bypasses find_class.
        raise _Refused("refused an extension-registry reference (EXT1/2/4); torch.save never writes one")


_AllowlistUnpickler.dispatch.update(
    {
        pickle.REDUCE[0]: _AllowlistUnpickler._load_reduce,
        pickle.NEWOBJ[0]: _AllowlistUnpickler._load_newobj,
        pickle.NEWOBJ_EX[0]: _AllowlistUnpickler._load_newobj_ex,
        pickle.INST[0]: _AllowlistUnpickler._load_inst,
        pickle.OBJ[0]: _AllowlistUnpickler._load_obj,
        pickle.BUILD[0]: _AllowlistUnpickler._load_build,
        pickle.APPEND[0]: _AllowlistUnpickler._load_append,
        pickle.APPENDS[0]: _AllowlistUnpickler._load_appends,
        pickle.ADDITEMS[0]: _AllowlistUnpickler._load_additems,
        pickle.SETITEM[0]: _AllowlistUnpickler._load_setitem,
        pickle.SETITEMS[0]: _AllowlistUnpickler._load_setitems,
        pickle.EXT1[0]: _AllowlistUnpickler._load_ext,
        pickle.EXT2[0]: _AllowlistUnpickler._load_ext,
        pickle.EXT4[0]: _AllowlistUnpickler._load_ext,
    }
)

# What torch.load(pickle_module=…) uses: ``Unpickler`` (subclassed by torch's find_class wrapper,
# which then sets ``persistent_load`` to read storages from the archive) and ``load`` (the legacy
# pre-zip format's header records).
_allowlist_pickle = types.SimpleNamespace(
    Unpickler=_AllowlistUnpickler,
    load=lambda f, **kw: _AllowlistUnpickler(f, **kw).load(),
    __name__="ckd_ros_allowlist_pickle",
)


def _unpickling_detail(message: str) -> str:
    """The informative line of torch's long weights-only error (what it refused, or why)."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):  # torch 2.1 puts it at the end of its only line
        _, found, rest = ln.partition("WeightsUnpickler error:")
        if found:
            return rest.strip() or (lines[i + 1] if i + 1 < len(lines) else ln)
    for ln in lines[1:]:  # torch >= 2.6 words a blocked module ("os", "posix" …) differently
        if re.search(r"unsupported|global", ln, re.IGNORECASE):
            return ln
    return lines[0] if lines else "unreadable"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickling_detail(str(exc))
        if not trust_pickle:
            if not re.search(r"\bglobal\b|unsupported class", detail, re.IGNORECASE):
                raise CheckpointError(f"{path}: {_UNREADABLE}: {detail}") from None
            raise CheckpointError(
                f"{path}: holds pickled Python objects (an official CKD trainer file?), which ckd_ros "
                "reads only on request, with an allowlist unpickler that runs none of their code. Convert it once "
                f"with `ckd-ros convert {path} OUT.pt` (or pass trust_pickle=True) and load OUT.pt. Detail: {detail}"
            ) from None
    except Exception as exc:  # zip/pickle readers raise many types on a truncated or foreign file
        raise CheckpointError(f"{path}: {_UNREADABLE}: {_first_line(exc)}") from None
    # Weights-only refused something: torch's wording varies by version ("Unsupported global",
    # "Unsupported class", "module … is blocked", an opcode it lacks), so any refusal falls through
    # to the allowlist reader, which is safe on whatever the file holds.
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_allowlist_pickle)
    except _Refused as exc:
        raise CheckpointError(f"{path}: refused by the allowlist unpickler: {exc}") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: {_UNREADABLE}: {_first_line(exc)}") from None


def _as_state_dict(obj: Any, path: Path) -> tuple[dict[str, Tensor], ModelConfig | None]:
    """The state_dict inside whatever was read, as plain tensors, and our files' embedded config.

    Values are re-wrapped with ``Tensor.detach`` (looked up on the class, so no attribute a pickle
    set on the object is consulted): what leaves here carries no Python state from the file.
    """
    config = None
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if isinstance(fmt, str) and fmt.startswith("ckd_ros/"):
        if fmt != FORMAT:
            raise CheckpointError(f"{path}: is a {_show(fmt)} file, not a ckd_ros model checkpoint ({FORMAT})")
        missing = [k for k in ("config", "state_dict") if k not in obj]
        if missing:
            raise CheckpointError(
                f"{path}: a {FORMAT} file without its {' and '.join(missing)} (damaged, or not written by ckd_ros)"
            )
        config = ModelConfig.from_dict(obj["config"], source=f"{path} (embedded config)")
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and "net" in obj:
        obj = obj["net"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state_dict (a mapping of names to tensors)")
    not_tensors = [_show(k, 80) for k, v in obj.items() if type(k) is not str or type(v) not in (Tensor, torch.nn.Parameter)]
    if not_tensors:
        raise CheckpointError(
            f"{path}: not a state_dict: {len(not_tensors)} entries are not tensors, e.g. [{', '.join(not_tensors[:_SHOW])}]"
        )
    state = {}
    for key, value in obj.items():
        key = key.removeprefix("module.")
        if not key.startswith(TRAINING_ONLY_PREFIXES):
            state[key] = Tensor.detach(value)
    _check_backed(state, path)
    _check_finite(state, path)
    return state, config


def _check_backed(state: Mapping[str, Tensor], path: Path) -> None:
    """Every tensor must be backed by bytes the file holds: a stored view may repeat one element
    (stride 0) into billions, which costs a few bytes on disk and any later full-size operation
    (even the NaN check) gigabytes in memory. torch.save never writes such weights."""
    for key, t in state.items():
        needed = t.numel() * t.element_size()
        if needed > t.untyped_storage().nbytes() or any(st == 0 and n > 1 for st, n in zip(t.stride(), t.shape)):
            raise CheckpointError(
                f"{path}: tensor {_show(key, 80)} {tuple(t.shape)} claims {needed} bytes over "
                f"{t.untyped_storage().nbytes()} stored (an expanded view): not a weight file torch.save writes"
            )


def _check_finite(state: Mapping[str, Tensor], path: Path) -> None:
    """Refuse NaN or infinite weights (a diverged training run, a corrupt copy): such a model loads
    and runs, but every output is NaN, which nothing downstream can recognise as a failure."""
    broken = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if broken:
        raise CheckpointError(
            f"{path}: {len(broken)} of {len(state)} tensors hold NaN or infinite values, e.g. "
            f"[{', '.join(_show(k, 80) for k in broken[:_SHOW])}]: the weights are broken (a diverged training run?)"
        )


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


def _shape(state: Mapping[str, Tensor], key: str, ndim: int) -> tuple[int, ...]:
    shape = tuple(state[key].shape)
    if len(shape) != ndim or min(shape) <= 0:
        raise CheckpointError(
            f"not a CKD state_dict: {key} has shape {shape}, where a CKD network has a non-empty {ndim}-d tensor"
        )
    return shape


def infer_config(state: dict[str, Tensor], base: ModelConfig | None = None) -> ModelConfig:
    """Recover the network shape from tensor shapes (a bare state_dict carries no config).

    ``base`` supplies what weights cannot tell (head count, elimination policy); by default the
    official ViT-B settings, i.e. MCE at blocks 3/6/9 — the released best model. Each tensor read
    here is checked for rank first, so a foreign file gets a sentence rather than an IndexError.
    """
    base = base or OFFICIAL_VITB
    head_width_key = "box_head." + head.HEAD.WIDTH_KEY  # its first dimension is head_channels
    required = [
        "rgb_branch.pos_embed_z",
        "rgb_branch.pos_embed_x",
        "rgb_branch.patch_embed.proj.weight",
        "rgb_branch.pos_embed",
        "rgb_branch.blocks.0.mlp.fc1.weight",
        head_width_key,
    ]
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"not a CKD state_dict: missing {missing[:_SHOW]} (found keys such as {list(state)[:_SHOW]})")
    dim = _shape(state, "rgb_branch.pos_embed_x", 3)[2]
    patch = _shape(state, "rgb_branch.patch_embed.proj.weight", 4)[3]
    hidden = _shape(state, "rgb_branch.blocks.0.mlp.fc1.weight", 2)[0]
    head_channels = _shape(state, head_width_key, 4)[0]
    legacy_tokens = _shape(state, "rgb_branch.pos_embed", 3)[1]
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"rgb_branch\.blocks\.(\d+)\.", k)))
    heads = base.num_heads if dim == base.embed_dim else max(1, dim // 64)
    side = {}
    for key in ("pos_embed_z", "pos_embed_x"):
        tokens = _shape(state, f"rgb_branch.{key}", 3)[1]
        side[key] = math.isqrt(tokens)
        if side[key] ** 2 != tokens:
            raise CheckpointError(f"not a CKD state_dict: rgb_branch.{key} holds {tokens} tokens, not a square grid")
    same_shape = (dim, depth, patch) == (base.embed_dim, base.depth, base.patch_size)
    return base.replace(
        name=base.name if same_shape else "custom",
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=hidden / dim,
        patch_size=patch,
        template_size=side["pos_embed_z"] * patch,
        search_size=side["pos_embed_x"] * patch,
        ce_loc=tuple(i for i in base.ce_loc if i < depth),
        head_channels=head_channels,
        legacy_pos_tokens=legacy_tokens,
    )


def check_state_dict(expected: Mapping[str, Tensor | tuple[int, ...]], state: Mapping[str, Tensor], source: str) -> None:
    """Strict key and shape match, with a message that lists the first few offenders.

    ``expected`` maps keys to tensors or to bare shapes (``ModelConfig.state_dict_shapes``), so the
    match can run before the network exists.
    """
    want = {k: tuple(v.shape) if isinstance(v, Tensor) else tuple(v) for k, v in expected.items()}
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    misshaped = [
        f"{k} {tuple(state[k].shape)} (model expects {shape})"
        for k, shape in want.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            more = f" and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
            problems.append(f"{len(items)} {label} keys: {', '.join(items[:_SHOW])}{more}")
    if problems:
        raise CheckpointError(f"{source}: does not fit the model: " + "; ".join(problems))


def physical_memory_bytes() -> int | None:
    """This machine's RAM, or None where the OS does not say (then no memory check is made)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_loadable(cfg: ModelConfig, state: Mapping[str, Tensor], source: str) -> None:
    """Everything that can be known before the network is built, checked before it is.

    ``ModelConfig`` has already bounded the size; here the file's keys and shapes must be exactly
    the config's (so a small file cannot make us build a large network), and building a second,
    float32 copy next to the tensors already read must fit in this machine's RAM.
    """
    check_state_dict(cfg.state_dict_shapes(), state, source)
    need = 4 * cfg.parameter_count()
    held = sum(t.element_size() * t.numel() for t in state.values())
    ram = physical_memory_bytes()
    if ram is not None and need + held > ram:
        raise CheckpointError(
            f"{source}: building {cfg.name!r} needs about {need / 1e9:.3g} GB for its parameters next to the "
            f"{held / 1e9:.3g} GB read from the file; this machine has {ram / 1e9:.3g} GB of RAM"
        )


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
