"""Packaging and architecture rules: every package is installable; the core never imports rclpy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_has_an_init():
    # find_packages() skips folders without __init__.py: an editable install hides that, a wheel does not
    for folder in (ROOT / "ckd_ros").rglob("*"):
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
            assert (folder / "__init__.py").is_file(), f"{folder} has modules but no __init__.py"


def test_core_imports_without_rclpy():
    code = (
        "import sys; sys.modules['rclpy'] = None; sys.modules['vision_msgs'] = None\n"
        "import ckd_ros.model, ckd_ros.tracker, ckd_ros.preprocess, ckd_ros.data.synthetic, ckd_ros.data.datasets\n"
        "import ckd_ros.train, ckd_ros.eval, ckd_ros.eval.runner, ckd_ros.eval.plots, ckd_ros.cli, ckd_ros.demo\n"
        "from ckd_ros.cli import main; assert main(['--help']) == 0\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr  # --help exits 0 after every import succeeded


def test_core_modules_do_not_import_the_ros_layer():
    for path in (ROOT / "ckd_ros").rglob("*.py"):
        if "ros" in path.relative_to(ROOT / "ckd_ros").parts[:1]:
            continue
        text = path.read_text()
        for banned in ("import rclpy", "from rclpy", "from ckd_ros.ros", "import ckd_ros.ros"):
            if banned in text and path.name not in ("cli.py", "demo.py"):
                raise AssertionError(f"{path} imports the ROS layer ({banned})")
