"""Checkpoint files: own safe format, bare state_dicts, official trainer files, and every bad case."""

from __future__ import annotations

import collections
import copyreg
import os
import pickle
import re
import shlex
import struct
import subprocess
import sys
import textwrap
import types
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from conftest import random_inputs

from ckd_ros.cli import main as cli_main
from ckd_ros.errors import CheckpointError, ConfigError
from ckd_ros.model import FORMAT, CKDNet, ModelConfig, load_model, load_variant, save_checkpoint
from ckd_ros.model.checkpoint import TRAINING_ONLY_PREFIXES, read_checkpoint


def teacher_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Training-model extras (docs/checkpoints.md, The training keys): teacher branches and single-modality heads."""
    extra = {}
    for k, v in state.items():
        if k.startswith("rgb_branch."):
            extra["teacher_rgb." + k.removeprefix("rgb_branch.")] = torch.randn_like(v.float())
            extra["teacher_tir." + k.removeprefix("rgb_branch.")] = torch.randn_like(v.float())
        elif k.startswith("box_head."):
            shape = list(v.shape)
            if k.endswith("conv1_ctr.0.weight") or k.endswith("conv1_offset.0.weight") or k.endswith("conv1_size.0.weight"):
                shape[1] //= 2
            for p in ("box_head_v.", "box_head_i."):
                extra[p + k.removeprefix("box_head.")] = torch.zeros(shape, dtype=v.dtype)
    return extra


def same_outputs(a, b, cfg) -> bool:
    inputs = random_inputs(cfg, seed=1)
    with torch.no_grad():
        return all(torch.equal(x, y) for x, y in zip(a(*inputs).values(), b(*inputs).values()))


def test_own_format_round_trip_loads_weights_only(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)  # no pickle of code: the robot-side guarantee
    assert raw["format"] == FORMAT and raw["config"]["name"] == "ckd_tiny"
    loaded = load_model(path)
    assert loaded.cfg == tiny_model.cfg
    assert same_outputs(tiny_model, loaded, tiny_model.cfg)
    assert not list(tmp_path.glob("*.tmp"))


def test_bare_state_dict_infers_the_variant(tiny_model, tmp_path):
    torch.save(tiny_model.state_dict(), tmp_path / "bare.pth")
    loaded = load_model(tmp_path / "bare.pth", variant="ckd_tiny")
    assert same_outputs(tiny_model, loaded, tiny_model.cfg)
    # Without a variant, shapes alone give the network (heads default to dim // 64).
    guessed = load_model(tmp_path / "bare.pth")
    assert (guessed.cfg.embed_dim, guessed.cfg.depth, guessed.cfg.search_size) == (64, 4, 128)


def test_bare_official_vitb_state_dict_loads_strictly_with_mce_default(tmp_path, vitb_model):
    torch.save(vitb_model.state_dict(), tmp_path / "official.pth.tar")
    model = load_model(tmp_path / "official.pth.tar")
    assert model.cfg.ce_mode == "mce" and model.cfg.ce_loc == (3, 6, 9) and model.cfg.num_heads == 12
    assert load_model(tmp_path / "official.pth.tar", ce_loc=()).cfg.elimination_layers == ()


FOREIGN_LIB = {
    "lib/__init__.py": "",
    "lib/train/__init__.py": "",
    "lib/train/admin/__init__.py": "",
    "lib/train/admin/settings.py": "class Settings:\n    def __init__(self):\n        self.env = None\n",
    "lib/train/admin/stats.py": "class AverageMeter:\n    def __init__(self):\n        self.avg = 0.5\n",
    "lib/train/admin/local.py": "class EnvironmentSettings:\n    def __init__(self):\n        self.workspace_dir = '/x'\n",
}


def write_official_trainer_file(state: dict[str, torch.Tensor], path, tmp_path) -> None:
    """A trainer dict pickling classes of a package that the loading process does not have."""
    lib_root = tmp_path / "foreign"
    for rel, text in FOREIGN_LIB.items():
        f = lib_root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    net = dict(state) | teacher_keys(state)
    torch.save(net, tmp_path / "net.pt")
    script = textwrap.dedent(f"""
        import sys, collections, torch
        sys.path.insert(0, {str(lib_root)!r})
        from lib.train.admin.settings import Settings
        from lib.train.admin.stats import AverageMeter
        from lib.train.admin.local import EnvironmentSettings
        s = Settings(); s.env = EnvironmentSettings()
        net = torch.load({str(tmp_path / "net.pt")!r})
        torch.save({{"epoch": 10, "actor_type": "OSTrack_CKD_Actor", "net_type": "OSTrack_CKD", "net": net,
                    "net_info": None, "constructor": None, "optimizer": {{"state": {{}}, "param_groups": []}},
                    "stats": collections.OrderedDict(train=AverageMeter()), "settings": s}}, {str(path)!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True)


def test_official_trainer_file_needs_explicit_trust_then_loads(tiny_model, tmp_path):
    path = tmp_path / "OSTrack_CKD_ep0010.pth.tar"
    write_official_trainer_file(tiny_model.state_dict(), path, tmp_path)
    with pytest.raises(CheckpointError, match="pickled Python objects.*ckd-ros convert"):
        load_model(path, variant="ckd_tiny")
    loaded = load_model(path, variant="ckd_tiny", trust_pickle=True)
    assert not any(k.startswith(TRAINING_ONLY_PREFIXES) for k in loaded.state_dict())
    assert same_outputs(tiny_model, loaded, tiny_model.cfg)


def test_convert_command_writes_a_weights_only_file(tiny_model, tmp_path, capsys):
    src = tmp_path / "OSTrack_CKD_ep0010.pth.tar"
    write_official_trainer_file(tiny_model.state_dict(), src, tmp_path)
    assert cli_main(["convert", str(src), str(tmp_path / "out.pt"), "--variant", "ckd_tiny"]) == 0
    assert "variant ckd_tiny" in capsys.readouterr().out
    assert torch.load(tmp_path / "out.pt", weights_only=True)["format"] == FORMAT
    assert same_outputs(tiny_model, load_model(tmp_path / "out.pt"), tiny_model.cfg)


def test_convert_command_bad_file_exits_nonzero_with_one_line(tmp_path):
    (tmp_path / "x.pth").write_text("not a checkpoint")
    proc = subprocess.run(
        [sys.executable, "-m", "ckd_ros.cli", "convert", str(tmp_path / "x.pth"), str(tmp_path / "o.pt")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("ckd-ros convert: error:") and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.pt").exists()


def test_nan_weights_are_refused_in_one_line_by_load_and_convert(tmp_path, tiny_model, capsys):
    with torch.no_grad():
        tiny_model.box_head.conv1_ctr[0].weight[0, 0, 0, 0] = float("nan")
        tiny_model.rgb_branch.blocks[0].mlp.fc1.bias[3] = float("inf")
    path = save_checkpoint(tiny_model, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"2 of \d+ tensors hold NaN or infinite values"):
        load_model(path)
    assert cli_main(["convert", str(path), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "box_head.conv1_ctr.0.weight" in err and not (tmp_path / "out.pt").exists()


def corrupt(tmp_path, tiny_model, kind):
    p = tmp_path / f"{kind}.pt"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "garbage":
        p.write_bytes(b"\x00\x01garbage" * 100)
    elif kind == "truncated":
        save_checkpoint(tiny_model, p)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif kind == "not_a_state_dict":
        torch.save([1, 2, 3], p)
    elif kind == "tensors_mixed":
        torch.save({"a": torch.zeros(1), "b": 3}, p)
    elif kind == "not_ckd":
        torch.save({"layer.weight": torch.zeros(2, 2)}, p)
    elif kind == "directory":
        p.mkdir()
    return p


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such checkpoint file"),
        ("empty", "is empty"),
        ("garbage", "not a readable PyTorch checkpoint"),
        ("truncated", "not a readable PyTorch checkpoint"),
        ("not_a_state_dict", "holds a list, not a state_dict"),
        ("tensors_mixed", "entries are not tensors"),
        ("not_ckd", "not a CKD state_dict: missing"),
        ("directory", "is not a file"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, tiny_model, kind, message):
    path = tmp_path / "absent.pt" if kind == "missing" else corrupt(tmp_path, tiny_model, kind)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_key_mismatches_are_listed(tmp_path, tiny_model):
    state = tiny_model.state_dict()
    del state["box_head.conv5_ctr.bias"]
    state["rgb_branch.extra.weight"] = torch.zeros(3)
    state["tir_branch.norm.weight"] = torch.zeros(7)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "bad.pt", variant="ckd_tiny")
    msg = str(err.value)
    assert "1 missing keys: box_head.conv5_ctr.bias" in msg
    assert "1 unexpected keys: rgb_branch.extra.weight" in msg
    assert "tir_branch.norm.weight (7,) (model expects (64,))" in msg


def test_many_missing_keys_are_summarised(tmp_path, tiny_model):
    state = {k: v for k, v in tiny_model.state_dict().items() if not k.startswith("tir_branch.blocks")}
    torch.save(state, tmp_path / "half.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: .* and \d+ more"):
        load_model(tmp_path / "half.pt", variant="ckd_tiny")


def test_zip_of_wrong_content_is_not_a_checkpoint(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.pt", "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(tmp_path / "z.pt")


def test_embedded_config_is_validated(tmp_path, tiny_model):
    save_checkpoint(tiny_model, tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    raw["config"]["depth"] = 0
    torch.save(raw, tmp_path / "m2.pt")
    with pytest.raises(ConfigError, match="embedded config.*depth"):
        load_model(tmp_path / "m2.pt")
    assert load_variant("ckd_tiny").depth == 4


# ---------------------------------------------------------------------------------------------
# Hostile files. ``convert`` must be safe on a file from anywhere: each payload below creates
# MARKER if any of its code runs. They are written by a pickler that emits whatever opcodes it is
# given, next to the real tensors of a trainer file, after a foreign ``stats`` class, as in a real
# trainer file (which is also what sends a permissive loader past torch's weights-only attempt).
# ---------------------------------------------------------------------------------------------


class Global:
    """``module.name`` written as a GLOBAL opcode, whether or not such a thing exists."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class StackGlobal(Global):
    """The protocol-4 form (STACK_GLOBAL), where a real unpickler walks a dotted ``name``."""


class Call:
    """``func(*args)`` as a REDUCE opcode."""

    def __init__(self, func: object, args: tuple) -> None:
        self.func, self.args = func, args


class Raw:
    """Opcode bytes written as they are."""

    def __init__(self, data: bytes) -> None:
        self.data = data


class Seq:
    """Parts written one after the other: one object built by several opcodes."""

    def __init__(self, *parts: object) -> None:
        self.parts = parts


class HostilePickler(pickle._Pickler):
    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _global(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    def _stack_global(self, obj: StackGlobal) -> None:
        self.write(pickle.PROTO + bytes([4]))  # the stream's protocol, from here on, for the reader
        self.save(obj.module)
        self.save(obj.name)
        self.write(pickle.STACK_GLOBAL)

    def _call(self, obj: Call) -> None:
        self.save(obj.func)
        self.save(tuple(obj.args))
        self.write(pickle.REDUCE)

    def _raw(self, obj: Raw) -> None:
        self.write(obj.data)

    def _seq(self, obj: Seq) -> None:
        for part in obj.parts:
            self.save(part)

    dispatch[Global] = _global
    dispatch[StackGlobal] = _stack_global
    dispatch[Call] = _call
    dispatch[Raw] = _raw
    dispatch[Seq] = _seq


def foreign(module: str, name: str, state: dict) -> Seq:
    """An instance of a class the loader lacks, as pickle writes one (NEWOBJ, then BUILD)."""
    return Seq(Global(module, name), (), Raw(pickle.NEWOBJ), state, Raw(pickle.BUILD))


def write_hostile_file(path: Path, net: object, settings: object) -> Path:
    trainer = {
        "epoch": 10,
        "net": net,
        "stats": collections.OrderedDict(train=foreign("lib.train.admin.stats", "AverageMeter", {"avg": 0.5})),
        "settings": settings,
    }
    torch.save(trainer, path, pickle_module=types.SimpleNamespace(Pickler=HostilePickler, __name__="hostile_pickle"))
    return path


def payloads(marker: Path, import_module: str) -> dict[str, object]:
    """Each would create ``marker`` under a pickle loader that resolves or calls what it is told."""
    code = f"open({str(marker)!r}, 'w').close()"
    shell = f"touch {shlex.quote(str(marker))}"
    return {
        "builtins.exec": Call(Global("builtins", "exec"), (code,)),
        "builtins.eval": Call(Global("builtins", "eval"), (code,)),
        "os.system": Call(Global("os", "system"), (shell,)),
        "posix.system": Call(Global("posix", "system"), (shell,)),
        "subprocess.Popen": Call(Global("subprocess", "Popen"), (["touch", str(marker)],)),
        "subprocess.check_call": Call(Global("subprocess", "check_call"), (["touch", str(marker)],)),
        "getattr(__import__('os'), 'system')": Call(
            Call(Global("builtins", "getattr"), (Call(Global("builtins", "__import__"), ("os",)), "system")), (shell,)
        ),
        "dotted name torch.serialization:os.system": Call(StackGlobal("torch.serialization", "os.system"), (shell,)),
        "INST opcode": Seq(Raw(pickle.MARK), shell, Raw(pickle.INST + b"os\nsystem\n")),
        "OBJ opcode": Seq(Raw(pickle.MARK), Global("os", "system"), shell, Raw(pickle.OBJ)),
        "BUILD plants __setstate__ = exec": Seq(
            foreign("lib.train.admin.settings", "Settings", {"__setstate__": Global("builtins", "exec")}),
            code,
            Raw(pickle.BUILD),
        ),
        "import of a module with side effects": Call(Global(import_module, "Thing"), ()),
    }


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """The marker, and the importable module whose import alone would create it."""
    marker = tmp_path / "MARKER"
    module = f"ckd_payload_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker, module
    sys.modules.pop(module, None)


def assert_same_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    assert list(state) == list(expected)
    assert all(torch.equal(state[k], v) for k, v in expected.items())


PAYLOAD_NAMES = list(payloads(Path("m"), "m"))


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_convert_of_a_hostile_trainer_file_runs_none_of_it(tiny_model, tmp_path, hostile, name):
    marker, module = hostile
    net = tiny_model.state_dict() | teacher_keys(tiny_model.state_dict())
    src = write_hostile_file(tmp_path / "OSTrack_CKD_ep0010.pth.tar", net, payloads(marker, module)[name])
    state, _ = read_checkpoint(src, trust_pickle=True)
    assert not marker.exists()
    assert_same_state(tiny_model, state)
    assert cli_main(["convert", str(src), str(tmp_path / "out.pt"), "--variant", "ckd_tiny"]) == 0
    assert not marker.exists() and module not in sys.modules
    assert_same_state(tiny_model, load_model(tmp_path / "out.pt").state_dict())


def test_convert_subprocess_on_a_file_of_every_payload(tiny_model, tmp_path, hostile):
    """The command in a process of its own, with every payload in one file (and their module importable)."""
    marker, module = hostile
    src = write_hostile_file(tmp_path / "all.pth.tar", tiny_model.state_dict(), payloads(marker, module))
    out = tmp_path / "out.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "ckd_ros.cli", "convert", str(src), str(out), "--variant", "ckd_tiny"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))},
    )
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert_same_state(tiny_model, torch.load(out, weights_only=True)["state_dict"])


@pytest.mark.parametrize(
    ("where", "message"),
    [("net", "holds a exec, not a state_dict"), ("tensor", r"1 entries are not tensors, e.g. \['rgb_branch\.cls_token'\]")],
)
def test_payload_where_the_weights_belong_fails_in_one_line(tiny_model, tmp_path, hostile, capsys, where, message):
    marker, module = hostile
    payload = payloads(marker, module)["builtins.exec"]
    net = payload if where == "net" else tiny_model.state_dict() | {"rgb_branch.cls_token": payload}
    src = write_hostile_file(tmp_path / "bad.pth.tar", net, {})
    assert cli_main(["convert", str(src), str(tmp_path / "out.pt"), "--variant", "ckd_tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ckd-ros convert: error: ")
    assert re.search(message, err), err
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_extension_registry_codes_are_refused(tiny_model, tmp_path, hostile):
    """EXT opcodes name a global through copyreg's process-wide registry, past find_class's cache."""
    marker, _ = hostile
    code = 0x7FFF_FF01
    payload = Call(Raw(pickle.EXT4 + struct.pack("<i", code)), (f"touch {shlex.quote(str(marker))}",))
    src = write_hostile_file(tmp_path / "ext.pth.tar", tiny_model.state_dict(), payload)
    copyreg.add_extension("os", "system", code)
    try:
        with pytest.raises(CheckpointError, match="extension-registry"):
            read_checkpoint(src, trust_pickle=True)
    finally:
        copyreg.remove_extension("os", "system", code)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (Call(Global("torch", "UntypedStorage"), (2**40,)), "refused to call the class torch.storage.UntypedStorage"),
        (Call(Global("torch", "Tensor"), (2**40,)), "refused to call the class torch.Tensor"),
        (Seq(Call(Global("torch", "Size"), ([1],)), {"x": 1}, Raw(pickle.BUILD)), "refused to set the state of a torch.Size"),
    ],
    ids=["UntypedStorage(1 TiB)", "Tensor(1 Ti elements)", "BUILD on torch.Size"],
)
def test_allowlisted_values_are_never_called_or_built(tiny_model, tmp_path, payload, message):
    """Storage and tensor classes must resolve (torch compares them) but a call would allocate."""
    src = write_hostile_file(tmp_path / "v.pth.tar", tiny_model.state_dict(), payload)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(src, trust_pickle=True)


def test_foreign_objects_become_inert_dicts_without_imports(tiny_model, tmp_path):
    from ckd_ros.model.checkpoint import _allowlist_pickle

    env = foreign("lib.train.admin.local", "EnvironmentSettings", {"workspace_dir": "/x"})
    settings = {
        "settings": foreign("lib.train.admin.settings", "Settings", {"env": env, "batch": 32}),
        "called": Call(Call(Global("easydict", "EasyDict"), ({"a": 1},)), ("again",)),
        "in_a_set": Seq(Raw(pickle.EMPTY_SET), Raw(pickle.MARK), foreign("lib.x", "Key", {}), Raw(pickle.ADDITEMS)),
        "listlike": Seq(foreign("lib.x", "Bag", {}), Raw(pickle.MARK), 1, 2, Raw(pickle.APPENDS)),
        "ordered": Seq(
            Call(Global("collections", "OrderedDict"), ()),
            {"_metadata": {"": {"version": 1}}, "detach": Global("builtins", "exec")},
            Raw(pickle.BUILD),
        ),
    }
    src = write_hostile_file(tmp_path / "f.pth.tar", tiny_model.state_dict(), settings)
    loaded = torch.load(src, map_location="cpu", weights_only=False, pickle_module=_allowlist_pickle)
    got = loaded["settings"]
    assert type(got["settings"]).__name__ == "Settings" and got["settings"].pickle_global == "lib.train.admin.settings.Settings"
    assert got["settings"]["batch"] == 32 and got["settings"]["env"]["workspace_dir"] == "/x"
    assert repr(got["called"]) == "<inert <call of an inert object>>" and got["called"].pickle_args[0][1:] == ("again",)
    assert [type(k).__name__ for k in got["in_a_set"]] == ["Key"]
    assert got["listlike"].pickle_items == [1, 2]
    assert type(loaded["stats"]) is collections.OrderedDict and loaded["stats"]["train"]["avg"] == 0.5
    # An OrderedDict keeps the ``_metadata`` torch writes and no attribute that could shadow a method.
    assert vars(got["ordered"]) == {"_metadata": {"": {"version": 1}}}
    assert loaded["net"]._metadata == tiny_model.state_dict()._metadata
    assert not any(m == "lib" or m.startswith(("lib.", "easydict")) for m in sys.modules)


SAVE_FORMATS = {
    "zip, protocol 2": {},
    "zip, protocol 4": {"pickle_protocol": 4},  # STACK_GLOBAL, which torch's weights-only reader lacks
    "pre-1.6 format": {"_use_new_zipfile_serialization": False},
}


@pytest.mark.parametrize("how", list(SAVE_FORMATS))
@pytest.mark.parametrize("importable", [False, True], ids=["module gone", "module importable"])
def test_genuine_trainer_file_with_foreign_classes_converts(tiny_model, tmp_path, monkeypatch, importable, how):
    """A real torch.save of a throwaway class. Importable, its __setstate__ must still not run."""
    marker = tmp_path / "MARKER"
    name = "ckd_throwaway_lib_settings"
    module = types.ModuleType(name)

    class Settings:
        def __init__(self) -> None:
            self.env = {"workspace_dir": "/x"}

        def __setstate__(self, state: dict) -> None:
            marker.touch()

    Settings.__module__, Settings.__qualname__ = name, "Settings"
    module.Settings = Settings
    monkeypatch.setitem(sys.modules, name, module)
    src = tmp_path / "OSTrack_CKD_ep0010.pth.tar"
    trainer = {"net": tiny_model.state_dict(), "settings": Settings(), "stats": collections.OrderedDict()}
    torch.save(trainer, src, **SAVE_FORMATS[how])
    if not importable:
        monkeypatch.delitem(sys.modules, name)
    assert cli_main(["convert", str(src), str(tmp_path / "out.pt"), "--variant", "ckd_tiny"]) == 0
    assert not marker.exists()
    assert same_outputs(tiny_model, load_model(tmp_path / "out.pt"), tiny_model.cfg)


def test_older_torch_wording_of_the_weights_only_refusal(tiny_model, tmp_path, monkeypatch):
    """torch 2.1-2.3 say "Unsupported class …" where 2.4+ say "Unsupported global"."""
    src = write_hostile_file(tmp_path / "t.pth.tar", tiny_model.state_dict(), {})
    real_load = torch.load

    def torch_2_1_load(*args, **kwargs):
        if kwargs.get("weights_only"):
            raise pickle.UnpicklingError(
                "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
                "succeed, but it can result in arbitrary code execution.Do it only if you get the file from a trusted "
                "source. WeightsUnpickler error: Unsupported class lib.train.admin.stats.AverageMeter"
            )
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", torch_2_1_load)
    with pytest.raises(CheckpointError, match="pickled Python objects.*Detail: Unsupported class lib.train"):
        read_checkpoint(src)
    assert_same_state(tiny_model, read_checkpoint(src, trust_pickle=True)[0])


# ---------------------------------------------------------------------------------------------
# Bad configs and shapes: one line, exit 2, and the network is never built.
# ---------------------------------------------------------------------------------------------


def _set(key, value):
    return lambda raw: raw["config"].__setitem__(key, value)


def _drop(key):
    return lambda raw: raw.pop(key)


BAD_OWN_FILES = {
    "patch_size 0": (_set("patch_size", 0), "patch_size 0 must be positive"),
    "patch_size not dividing": (_set("patch_size", 24), "template_size 64 is not a positive multiple of patch_size 24"),
    "mlp_ratio NaN": (_set("mlp_ratio", float("nan")), "mlp_ratio must be a finite number, got nan"),
    "mlp_ratio inf": (_set("mlp_ratio", float("inf")), "mlp_ratio must be a finite number, got inf"),
    "mlp_ratio negative": (_set("mlp_ratio", -2.0), "mlp_ratio -2.0 must give an MLP at least one unit wide"),
    "depth 4.5": (_set("depth", 4.5), "depth must be an integer, got 4.5"),
    "embed_dim '64'": (_set("embed_dim", "64"), "embed_dim must be an integer, got '64'"),
    "embed_dim 10**30": (_set("embed_dim", 10**30), "embed_dim 1000000000000000000000000000000 is out of range"),
    "share_student 'yes'": (_set("share_student", "yes"), "share_student must be true or false"),
    "heads not dividing": (_set("num_heads", 3), "embed_dim 64 is not divisible by num_heads 3"),
    "824 GB qkv": (_set("embed_dim", 2**18), r"would have 4\.4e\+03 G parameters, about 1\.76e\+04 GB as float32"),
    "a million blocks": (_set("depth", 10**6), "depth 1000000 is more than 256 blocks"),
    "config a list": (lambda raw: raw.__setitem__("config", list(raw["config"].items())), "expected a mapping.*got list"),
    "no config": (_drop("config"), "a ckd_ros/1 file without its config"),
    "no state_dict": (_drop("state_dict"), "a ckd_ros/1 file without its state_dict"),
    "other format": (
        lambda raw: raw.__setitem__("format", "ckd_ros/train/1"),
        "is a 'ckd_ros/train/1' file, not a ckd_ros model",
    ),
    "small config, tiny tensors": (
        lambda raw: raw.__setitem__("config", load_variant("ckd_small").to_dict()),
        r"does not fit the model: .*rgb_branch\.cls_token \(1, 1, 64\) \(model expects \(1, 1, 128\)\)",
    ),
}


@pytest.fixture
def never_build(monkeypatch):
    """Fails the test if a network is constructed: a bad file must be refused before any allocation."""

    def refuse(cfg):
        raise AssertionError(f"a network was built for a bad file: {cfg}")

    monkeypatch.setattr("ckd_ros.model.CKDNet", refuse)


@pytest.mark.parametrize("case", list(BAD_OWN_FILES))
def test_bad_embedded_config_is_one_line_before_any_allocation(tmp_path, tiny_model, capsys, never_build, case):
    mutate, message = BAD_OWN_FILES[case]
    raw = torch.load(save_checkpoint(tiny_model, tmp_path / "m.pt"), weights_only=True)
    mutate(raw)
    torch.save(raw, tmp_path / "bad.pt")
    assert cli_main(["convert", str(tmp_path / "bad.pt"), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ckd-ros convert: error: "), err
    assert re.search(message, err), err
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize(
    ("key", "tensor", "message"),
    [
        ("rgb_branch.pos_embed_x", torch.zeros(64), r"rgb_branch\.pos_embed_x has shape \(64,\), where .* 3-d tensor"),
        ("rgb_branch.pos_embed_z", torch.zeros(1, 15, 64), r"rgb_branch\.pos_embed_z holds 15 tokens, not a square grid"),
        ("rgb_branch.patch_embed.proj.weight", torch.zeros(64, 3, 16, 0), r"proj\.weight has shape \(64, 3, 16, 0\)"),
    ],
)
def test_bare_state_dict_of_foreign_shapes_is_one_line(tmp_path, tiny_model, capsys, never_build, key, tensor, message):
    torch.save(tiny_model.state_dict() | {key: tensor}, tmp_path / "bare.pth")
    assert cli_main(["convert", str(tmp_path / "bare.pth"), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err


def test_824_gb_config_fails_fast_in_bounded_memory(tmp_path, tiny_model):
    """The issue's file, in a process that may map 4 GiB: a build attempt would die of MemoryError."""
    raw = torch.load(save_checkpoint(tiny_model, tmp_path / "m.pt"), weights_only=True)
    raw["config"]["embed_dim"] = 2**18  # qkv alone: 3 * 2**36 float32 = 824.6 GB
    torch.save(raw, tmp_path / "huge.pt")
    limited_cli = (  # the limit is set inside the child: preexec_fn is unsafe next to torch's threads
        "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30)); "
        "sys.argv = ['ckd-ros', *sys.argv[1:]]; runpy.run_module('ckd_ros.cli', run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", limited_cli, "convert", str(tmp_path / "huge.pt"), str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "GB as float32" in proc.stderr and "Traceback" not in proc.stderr


def test_memory_check_refuses_what_this_machine_cannot_hold(tmp_path, tiny_model, monkeypatch, never_build):
    save_checkpoint(tiny_model, tmp_path / "m.pt")
    monkeypatch.setattr("ckd_ros.model.checkpoint.physical_memory_bytes", lambda: 1_000_000)
    with pytest.raises(CheckpointError, match=r"needs about 0\.00203 GB .* this machine has 0\.001 GB of RAM"):
        load_model(tmp_path / "m.pt")


@pytest.mark.parametrize("variant", ["ckd_tiny", "ckd_small", "ckd_tiny shared"])
def test_state_dict_layout_is_the_built_network(variant):
    """The shapes and count used before building must be the network's own, key for key."""
    cfg = load_variant(variant.split()[0]).replace(share_student=variant.endswith("shared"))
    model = CKDNet(cfg)
    assert cfg.state_dict_shapes() == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(cfg.state_dict_shapes()) == list(model.state_dict())
    assert cfg.parameter_count() == sum(p.numel() for p in model.parameters())


def test_vitb_layout_and_count_match_the_spec(vitb_model):
    cfg = vitb_model.cfg
    assert cfg.state_dict_shapes() == {k: tuple(v.shape) for k, v in vitb_model.state_dict().items()}
    assert len(cfg.state_dict_shapes()) == 394 and cfg.parameter_count() == 183_871_365  # docs/checkpoints.md


def test_config_bounds_hold_for_every_constructor():
    with pytest.raises(ConfigError, match="expected a mapping of model config keys, got list"):
        ModelConfig.from_dict([("depth", 4)])
    with pytest.raises(ConfigError, match=r"unknown model config keys \[1, 2, 3, 4, 5\] and 1 more"):
        ModelConfig.from_dict({i: 0 for i in range(1, 7)})
    with pytest.raises(ConfigError, match="embed_dim <int of more than 4300 digits> is out of range"):
        ModelConfig(embed_dim=10**5000)
    assert ModelConfig(embed_dim=96, num_heads=3, mlp_ratio=4).mlp_ratio == 4.0  # ints accepted as ratios


def test_an_expanded_view_claiming_gigabytes_is_refused_before_any_full_size_work(tmp_path):
    path = tmp_path / "expanded.pt"
    torch.save({"rgb_branch.pos_embed": torch.zeros(1).expand(30000, 30000)}, path)  # 4 bytes stored
    assert path.stat().st_size < 4096
    with pytest.raises(CheckpointError, match=r"claims 3600000000 bytes over 4 stored"):
        read_checkpoint(path)


@pytest.mark.parametrize("target", [b"ctorch\nTensor\n", b"ctorch\nUntypedStorage\n"])
def test_rebuild_from_type_cannot_instantiate_a_class(target):
    import io

    from ckd_ros.model.checkpoint import _AllowlistUnpickler

    data = b"ctorch._tensor\n_rebuild_from_type_v2\n(" + target + b"ctorch\nTensor\n(I3\nI4\nt}tR."
    with pytest.raises(pickle.UnpicklingError, match="not a tensor rebuild"):
        _AllowlistUnpickler(io.BytesIO(data)).load()
