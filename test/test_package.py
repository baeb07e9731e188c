"""Packaging and architecture rules: every package is installable; the core never imports rclpy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def colcon_install(prefix: Path, work: Path) -> Path:
    """Install ckd_ros into ``prefix`` the way colcon's ament_python build does (``setup.py egg_info
    build install --prefix --single-version-externally-managed``, so setup.cfg's install_scripts
    applies), from a copy of the sources so that nothing is written into the checkout. Returns the
    prefix's site-packages."""
    import shutil

    src = work / "src"
    for name in ("setup.py", "setup.cfg", "package.xml"):
        src.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    for name in ("resource", "launch", "config", "models", "ckd_ros"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    cmd = [sys.executable, "setup.py", "egg_info", "--egg-base", str(work), "build", "--build-base", str(work / "build")]
    cmd += ["install", "--prefix", str(prefix), "--record", str(work / "files.txt"), "--single-version-externally-managed"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=src)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (site,) = prefix.glob("lib/python3*/site-packages")
    return site


def test_installed_like_colcon_the_launch_file_finds_everything(tmp_path):
    """The layout `ros2 launch ckd_ros ckd_tracker.launch.py` and `ros2 run ckd_ros ...` rely on, and
    what the launch file computes there: the package in the ament index, its share folder (launch
    file, parameter YAML, rviz config), the executables in lib/ckd_ros, and launch_plan run from the
    installed package with the installed YAML (the launch packages themselves are not on PyPI)."""
    prefix = tmp_path / "install"
    site = colcon_install(prefix, tmp_path / "work")
    share = prefix / "share" / "ckd_ros"
    for path in (
        prefix / "share" / "ament_index" / "resource_index" / "packages" / "ckd_ros",
        share / "package.xml",
        share / "launch" / "ckd_tracker.launch.py",
        share / "config" / "ckd_tracker.yaml",
        share / "config" / "ckd_tracker.rviz",
        site / "ckd_ros" / "ros" / "launch_args.py",
    ):
        assert path.is_file(), f"{path.relative_to(prefix)} is not installed"
    for exe in ("ckd_tracker_node", "ckd_tracker_lifecycle_node"):
        assert os.access(prefix / "lib" / "ckd_ros" / exe, os.X_OK), f"lib/ckd_ros/{exe} is not an executable"
    pytest.importorskip("ament_index_python")
    code = (
        "import os, ckd_ros\n"
        "from ament_index_python.packages import get_package_share_directory\n"
        "from ckd_ros.ros.launch_args import launch_arguments, launch_plan\n"
        "share = get_package_share_directory('ckd_ros')\n"
        "args = {n: d for n, d, _ in launch_arguments(os.path.join(share, 'config', 'ckd_tracker.yaml'))}\n"
        "args.update(homography='[1,0,0,0,1,0,0,0,1]', lifecycle='True', init_box='[50,39,40,30]', slop='1')\n"
        "plan = launch_plan(args)\n"
        "print(ckd_ros.__file__, share, plan.executable, plan.params_file, sorted(plan.parameters.items()), sep='\\n')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "AMENT_PREFIX_PATH": str(prefix)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    module, found_share, executable, params_file, parameters = proc.stdout.splitlines()
    assert module.startswith(str(site)) and found_share == str(share)
    assert executable == "ckd_tracker_lifecycle_node" and params_file == str(share / "config" / "ckd_tracker.yaml")
    homography = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert parameters == str([("homography", homography), ("init_box", [50.0, 39.0, 40.0, 30.0]), ("slop", 1.0)])
    pytest.importorskip("rclpy", reason="the installed executable needs the ROS 2 venv")
    exe = prefix / "lib" / "ckd_ros" / "ckd_tracker_node"
    proc = subprocess.run([str(exe), "--ros-args", "-p", "qos_reliability:=reliabel"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("ckd_tracker: error: qos_reliability='reliabel'"), proc.stderr
