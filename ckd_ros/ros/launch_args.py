"""Launch arguments → what ``launch/ckd_tracker.launch.py`` starts, as plain Python.

The launch file only declares ``launch_arguments()`` and, in an OpaqueFunction, turns the
``launch_plan()`` of the evaluated arguments into Node actions; every conversion and check is here,
importable and testable without the ``launch`` packages (which are not on PyPI). ``ckd-ros
launch`` converts its ``-p`` overrides with the same ``parse_argument``.

* Parameters: launch-argument text → the declared type through ``Param.coerce``, so
  ``homography:=[1,0,0,0,1,0,0,0,1]`` reaches the node as doubles (launch_ros would pass the integer
  list on, and rclpy refuses it); string parameters are taken as typed (``stack_branches:=on`` stays
  ``'on'``, where YAML would make it a boolean). A parameter argument left empty (its default) is not
  passed, so ``params_file`` decides it: a file's value is not overwritten by the shipped default.
* Booleans (``lifecycle``, ``rviz``, boolean parameters): the words launch's ``IfCondition`` takes
  (launch 3.4.3 ``evaluate_condition_expression``: stripped, lower-cased, ``true``/``1`` or
  ``false``/``0``), anything else is an error rather than a silent false.
* ``params_file`` must name the node where it is started: rclpy matches the file's node names
  (nested keys are namespace levels) against the node's full name, so a file keyed
  ``ckd_tracker:`` is silently ignored once ``namespace:=robot`` makes the node
  ``/robot/ckd_tracker``. The shipped file is keyed ``/**/ckd_tracker`` (any namespace); a file none
  of whose node names match is an error.
* ``rviz:=true`` without rviz2 installed is an error raised before anything is started: launch
  prints it as one line and exits 1, and no node is left running.
* ``transport_profile`` (a Fast DDS XML profile: a shipped name such as ``large_images``, or a path)
  is validated here and becomes the node process's ``FASTRTPS_DEFAULT_PROFILES_FILE`` /
  ``FASTDDS_DEFAULT_PROFILES_FILE``; left empty, the profile the launch's own environment names is
  validated instead. Fast DDS itself would log a bad profile and run on its defaults, losing large
  best-effort images (``ckd_ros.ros.transport``), so a bad one stops the launch in one line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ckd_ros.errors import ConfigError
from ckd_ros.ros.params import BY_NAME, PARAMS, Param, yaml_value
from ckd_ros.ros.transport import SHIPPED_PROFILES, transport_environment

TRUE_WORDS = ("true", "1")
FALSE_WORDS = ("false", "0")
NODE_NAME = "ckd_tracker"
EXECUTABLES = {False: "ckd_tracker_node", True: "ckd_tracker_lifecycle_node"}


def node_fqn(namespace: str, name: str = NODE_NAME) -> str:
    """The node's fully qualified name in ``namespace`` ("", "robot", "/robot/" alike)."""
    ns = namespace.strip().strip("/")
    return f"/{ns}/{name}" if ns else f"/{name}"


def launch_namespace(args: Mapping[str, str]) -> str:
    """The namespace launch_ros gives the node: the ``namespace`` argument, under the namespace an
    including launch file pushed (``PushRosNamespace`` sets ``ros_namespace``) unless it is absolute."""
    namespace, pushed = args.get("namespace", "").strip(), str(args.get("ros_namespace", "") or "").strip("/")
    if namespace.startswith("/") or not pushed:
        return namespace
    return f"/{pushed}/{namespace}" if namespace else f"/{pushed}"


def params_node_names(data: Mapping[Any, Any], above: str = "") -> Iterator[str]:
    """The node names a parameter file gives parameters to: rcl reads nested keys above a
    ``ros__parameters`` as namespace levels (``robot: {ckd_tracker: {ros__parameters: …}}`` is
    ``robot/ckd_tracker``)."""
    for key, value in data.items():
        if not isinstance(value, Mapping):
            continue
        name = f"{above}/{str(key).strip('/')}" if above else str(key)
        if "ros__parameters" in value:
            yield name
        yield from params_node_names({k: v for k, v in value.items() if k != "ros__parameters"}, name)


def node_key_matches(key: str, fqn: str) -> bool:
    """Whether a parameter file's node name ``key`` applies to the node ``fqn`` as rclpy matches it:
    a leading slash is implied, ``/*`` stands for one namespace level and ``/**`` for any number
    (rclpy turns ``/*`` into the regex ``(/\\w+)``, so ``/**`` becomes ``(/\\w+)*``)."""
    key = key if key.startswith("/") else "/" + key
    pattern = re.escape(key).replace(r"/\*", r"(/\w+)").replace(r"\*", "*")
    return re.fullmatch(pattern, fqn) is not None


def check_params_file(path: str, namespace: str = "") -> None:
    """A parameter file the node will read: UTF-8 YAML mapping node names to parameters, with a node
    name that applies to this node in ``namespace``. rcl would otherwise print a C stack of parse
    errors, run with defaults on undecodable bytes, or skip a file keyed for another namespace."""
    from ckd_ros.data.files import read_text

    text = read_text(path, "parameter file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping (/**/{NODE_NAME}: ros__parameters: ...), got {type(data).__name__}")
    fqn, names = node_fqn(namespace), list(params_node_names(data))
    if not any(node_key_matches(name, fqn) for name in names):
        found = ", ".join(repr(n) for n in names[:4]) or "none with ros__parameters"
        raise ConfigError(
            f"{path}: none of its node names ({found}) applies to the node {fqn}, which would run on its defaults; "
            f"key the parameters under '/**/{NODE_NAME}:' (any namespace) or '{fqn}:'"
        )


def launch_bool(name: str, text: str) -> bool:
    """``text`` read as launch's IfCondition reads a condition, or ConfigError naming the words it takes."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}={text!r} is not a boolean: use true or false (or 1, 0; any case)")


def _unquoted(text: str) -> str:
    """A string argument as typed, except that a YAML-quoted one (``''``, ``"'on'"``) is unquoted: the
    only way to give an empty string, since an empty argument means "the params_file's value"."""
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
        try:
            value = yaml.safe_load(stripped)
        except yaml.YAMLError:
            return text
        if isinstance(value, str):
            return value
    return text


def _number_words(value: Any) -> Any:
    """Numbers written the way rcl and Python read them but PyYAML (YAML 1.1) does not (``1e-3``)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, list):
        return [_number_words(v) for v in value]
    return value


def parse_argument(param: Param, text: str) -> Any:
    """The value of parameter ``param`` given as the launch-argument (or ``-p``) text ``text``,
    converted and validated (ConfigError ``name=value ...`` otherwise)."""
    if isinstance(param.default, bool):
        return launch_bool(param.name, text)
    if isinstance(param.default, str):
        return param.coerce(_unquoted(text))
    example = f"(for example {param.name}:={yaml_value(param.default)})"
    if not text.strip():
        raise ConfigError(f"{param.name} is empty {example}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{param.name}={text!r} is not a valid value {example}") from None
    return param.coerce(_number_words(value))


def launch_arguments(default_params_file: str) -> list[tuple[str, str, str]]:
    """(name, default, description) of every launch argument the launch file declares."""
    args = [
        ("params_file", default_params_file, "node parameter YAML (the launch arguments below override it)"),
        ("namespace", "", "namespace of the node"),
        ("rgb_topic", "rgb/image", "RGB sensor_msgs/Image topic"),
        ("thermal_topic", "thermal/image", "thermal sensor_msgs/Image topic"),
        ("lifecycle", "false", "true: the managed (lifecycle) node, which waits for configure / activate"),
        ("rviz", "false", "true: also start rviz2 with config/ckd_tracker.rviz (an error if rviz2 is not installed)"),
        (
            "transport_profile",
            "",
            f"Fast DDS XML profile for the node process: a shipped one ({', '.join(SHIPPED_PROFILES)}: shared memory "
            "with a 32 MiB segment + UDPv4, for large best-effort images) or a path; empty: the one the environment "
            "names, if any (README 'Large images over DDS')",
        ),
    ]
    for p in PARAMS:
        shipped = yaml_value(p.default)
        args.append((p.name, "", f"{p.help_text()} (empty: the params_file's value; shipped: {shipped})"))
    return args


def ros_package_found(name: str) -> bool:
    """Whether ``name`` is in the ament index, where launch_ros looks for a Node's executable."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix(name)
    except PackageNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class LaunchPlan:
    """What the launch file starts: the node's executable, namespace, remaps, parameter file and
    typed parameter overrides, whether rviz2 comes along, and the variables added to the node's
    environment (the transport profile; empty when none is given)."""

    executable: str
    namespace: str
    remappings: list[tuple[str, str]]
    params_file: str
    parameters: dict[str, Any]
    rviz: bool
    env: dict[str, str] = field(default_factory=dict)


def node_parameters(args: Mapping[str, str]) -> dict[str, Any]:
    """The node parameters given as (non-empty) launch arguments, typed and validated."""
    return {name: parse_argument(BY_NAME[name], text) for name, text in args.items() if name in BY_NAME and text != ""}


def launch_plan(
    args: Mapping[str, str],
    package_found: Callable[[str], bool] = ros_package_found,
    environ: Mapping[str, str] | None = None,
) -> LaunchPlan:
    """The plan for the evaluated launch arguments ``args`` (launch's ``context.launch_configurations``)
    in the launch's environment ``environ`` (default ``os.environ``, which the node inherits).

    Raises ConfigError, before anything is started, for a bad value, a missing parameter file or
    topic, ``rviz:=true`` where rviz2 is not installed, and a transport profile Fast DDS would
    reject or ignore (given as ``transport_profile`` or named by the environment)."""
    params_file = args.get("params_file", "")
    if not os.path.isfile(params_file):
        raise ConfigError(f"params_file={params_file!r} is not a file")
    namespace = launch_namespace(args)
    check_params_file(params_file, namespace)
    remappings = []
    for topic, arg in (("rgb/image", "rgb_topic"), ("thermal/image", "thermal_topic")):
        target = args.get(arg, topic).strip()
        if not target:
            raise ConfigError(f"{arg} is empty: give a topic name")
        remappings.append((topic, target))
    lifecycle = launch_bool("lifecycle", args.get("lifecycle", "false"))
    rviz = launch_bool("rviz", args.get("rviz", "false"))
    parameters = node_parameters(args)
    env = transport_environment(args.get("transport_profile", ""), environ)
    if rviz and not package_found("rviz2"):
        raise ConfigError(
            "rviz:=true, but the rviz2 package is not installed (not in the ament index of AMENT_PREFIX_PATH); "
            "install rviz2 (ros-<distro>-rviz2) or leave rviz false. Nothing was started."
        )
    return LaunchPlan(
        executable=EXECUTABLES[lifecycle],
        namespace=args.get("namespace", ""),
        remappings=remappings,
        params_file=params_file,
        parameters=parameters,
        rviz=rviz,
        env=env,
    )
