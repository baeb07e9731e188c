"""Shared fixtures. ROS tests get an isolated DDS domain so parallel runs never cross-talk."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helpers (reference_ckd)

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def sharpen(model: torch.nn.Module, factor: float = 3.0, seed: int = 0) -> torch.nn.Module:
    """Random weights scaled up so attention is peaked and elimination choices are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and "pos_embed" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * p.std().clamp_min(1e-3) * factor)
            elif "pos_embed" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def random_inputs(cfg, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.template_size, cfg.search_size
    return (
        torch.randn(batch, 3, t, t, generator=g),
        torch.randn(batch, 3, t, t, generator=g),
        torch.randn(batch, 3, s, s, generator=g),
        torch.randn(batch, 3, s, s, generator=g),
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A seeded ckd_tiny model file in the project's format (node and launch tests start nodes on it)."""
    from ckd_ros.model import build_model, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(build_model("ckd_tiny"), path)
    return str(path)


@pytest.fixture
def tiny_model():
    from ckd_ros.model import build_model

    torch.manual_seed(0)
    return sharpen(build_model("ckd_tiny"))


@pytest.fixture(scope="session")
def vitb_model():
    from ckd_ros.model import build_model

    torch.manual_seed(0)
    return sharpen(build_model("ckd_vitb_mce"))
