"""Checkpoint files: own safe format, bare state_dicts, official trainer files, and every bad case."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch
from conftest import random_inputs

from ckd_ros.cli import main as cli_main
from ckd_ros.errors import CheckpointError, ConfigError
from ckd_ros.model import FORMAT, load_model, load_variant, save_checkpoint
from ckd_ros.model.checkpoint import TRAINING_ONLY_PREFIXES


def teacher_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Training-model extras (spec §2.3): teacher branches and single-modality heads."""
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
