"""``ckd-ros launch``: start the ckd_tracker node from config/ckd_tracker.yaml where the ROS launch
packages are missing (a PyPI venv). Same parameters, remaps and YAML as the launch file, and the
same conversion of ``NAME:=VALUE`` (``launch_args.parse_argument``): a bad value is refused here, in
one line, before a process starts, and the node gets typed YAML (``slop:=1`` as 1.0,
``stack_branches:=on`` as the string 'on', ``[50, 39.5, 40, 30]`` as doubles where rcl would refuse a
mixed list). ``--transport-profile`` gives the node's process a Fast DDS profile (validated first,
``ckd_ros.ros.transport``), as the launch file's ``transport_profile`` does. SIGINT and SIGTERM are
forwarded and the node's exit status is returned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ckd_ros.errors import ConfigError
from ckd_ros.resources import find_resource
from ckd_ros.ros.launch_args import parse_argument
from ckd_ros.ros.params import BY_NAME, yaml_value


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
    if namespace.strip("/"):  # rcl takes only a fully qualified namespace remap: robot → /robot
        cmd += ["-r", f"__ns:=/{namespace.strip('/')}"]
    for item in overrides:
        name, sep, text = item.partition(":=")
        if not sep or name not in BY_NAME:
            raise ConfigError(f"parameter override {item!r} is not NAME:=VALUE with a ckd_tracker parameter name")
        cmd += ["-p", f"{name}:={yaml_value(parse_argument(BY_NAME[name], text))}"]
    return cmd


def run(cmd: list[str], env: Mapping[str, str] | None = None) -> int:
    """Run the node command with ``env`` added to this environment (the transport profile's
    variables: Fast DDS reads them when the node's participant is created)."""
    proc = subprocess.Popen(cmd, env={**os.environ, **env} if env else None)

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    return proc.wait()
