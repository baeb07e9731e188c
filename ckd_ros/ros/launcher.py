"""``ckd-ros launch``: start the ckd_tracker node from config/ckd_tracker.yaml where the ROS launch
packages are missing (a PyPI venv). Same parameters, remaps and YAML as the launch file; SIGINT
and SIGTERM are forwarded and the node's exit status is returned."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from ckd_ros.errors import ConfigError
from ckd_ros.resources import find_resource
from ckd_ros.ros.params import BY_NAME


def node_command(
    params_file: str | None, rgb_topic: str, thermal_topic: str, overrides: list[str], namespace: str = ""
) -> list[str]:
    params_file = params_file or str(find_resource("config", "ckd_tracker.yaml") or "")
    if not params_file or not Path(params_file).is_file():
        raise ConfigError(f"parameter file {params_file or 'config/ckd_tracker.yaml'} not found")
    cmd = [
        sys.executable,
        "-m",
        "ckd_ros.ros.node",
        "--ros-args",
        "--params-file",
        params_file,
        "-r",
        f"rgb/image:={rgb_topic}",
        "-r",
        f"thermal/image:={thermal_topic}",
    ]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    for item in overrides:
        name, sep, _ = item.partition(":=")
        if not sep or name not in BY_NAME:
            raise ConfigError(f"parameter override {item!r} is not NAME:=VALUE with a ckd_tracker parameter name")
        cmd += ["-p", item]
    return cmd


def run(cmd: list[str]) -> int:
    proc = subprocess.Popen(cmd)

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    return proc.wait()
