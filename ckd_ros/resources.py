"""Where the package's data files live: a source checkout, a pip install or a colcon/ROS install.

``config/`` and ``models/`` sit at the repository root in a checkout and under
``<prefix>/share/ckd_ros/`` once installed (setup.py data_files); on a ROS install the prefix is an
``AMENT_PREFIX_PATH`` entry.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ckd_ros.errors import ConfigError

SHIPPED_MODEL = "ckd_small_synth.pt"


def resource_dirs(*parts: str) -> list[Path]:
    """Candidate folders for ``parts`` (e.g. "config", "models"), first match wins."""
    dirs: list[Path] = []
    env = os.environ.get("CKD_ROS_SHARE_DIR")
    if env:
        dirs.append(Path(env).joinpath(*parts))
    dirs.append(Path(__file__).resolve().parents[1].joinpath(*parts))
    prefixes = [sys.prefix] + [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    dirs += [Path(p, "share", "ckd_ros", *parts) for p in prefixes]
    return dirs


def find_resource(*parts: str) -> Path | None:
    for d in resource_dirs(*parts[:-1]):
        if (d / parts[-1]).exists():
            return d / parts[-1]
    return None


def shipped_model() -> Path:
    """The small CKD model trained by this project on synthetic RGB-T data (models/README.md)."""
    path = find_resource("models", SHIPPED_MODEL)
    if path is None:
        raise ConfigError(
            f"the shipped model models/{SHIPPED_MODEL} was not found (looked in "
            f"{', '.join(str(d) for d in resource_dirs('models'))}); pass a checkpoint explicitly"
        )
    return path
