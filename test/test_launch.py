"""Launch arguments and start-up parameters (issue 11): what ``ros2 launch`` and the node do with the
values people type. The ``launch`` packages are not on PyPI, so the launch file's conversion is
tested as the plain function it calls (``ckd_ros.ros.launch_args.launch_plan``), and the node with
integer and invalid parameters through real rclpy, in-process and as its own process."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ckd_ros.cli import main as cli_main
from ckd_ros.errors import ConfigError
from ckd_ros.ros.launch_args import EXECUTABLES, launch_arguments, launch_bool, launch_plan, ros_package_found
from ckd_ros.ros.params import PARAMS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_YAML = str(ROOT / "config" / "ckd_tracker.yaml")
IDENTITY_INTS = "[1,0,0,0,1,0,0,0,1]"


def plan_for(rviz2_installed: bool = False, **given: str):
    """launch_plan for the launch-argument values ``given``, with every other argument at the default
    the launch file declares, as ``context.launch_configurations`` holds them."""
    args = {name: default for name, default, _ in launch_arguments(SHIPPED_YAML)}
    args.update(given)
    return launch_plan(args, package_found=lambda name: rviz2_installed)


def test_integers_typed_for_doubles_reach_the_node_as_doubles():
    plan = plan_for(
        homography=IDENTITY_INTS, init_box="[50,39,40,30]", slop="1", score_threshold="1", debug_rate="30", agc_ema="1e-1"
    )
    p = plan.parameters
    assert p["homography"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert p["init_box"] == [50.0, 39.0, 40.0, 30.0]
    assert (p["slop"], p["score_threshold"], p["debug_rate"], p["agc_ema"]) == (1.0, 1.0, 30.0, 0.1)
    # launch_ros writes these into the node's parameter file: a float stays a YAML double
    values = [p["slop"], p["score_threshold"], p["debug_rate"], *p["homography"], *p["init_box"]]
    assert all(type(v) is float for v in values)


def test_string_booleans_and_integers_keep_their_declared_types():
    p = plan_for(
        stack_branches="on", class_id="007", qos_depth="8", debug_image="False", checkpoint="''", cpu_threads="2.0"
    ).parameters
    assert p["stack_branches"] == "on"  # YAML would have made it True, and the node would refuse a boolean
    assert p["class_id"] == "007"  # text as typed
    assert p["qos_depth"] == 8 and p["cpu_threads"] == 2 and type(p["cpu_threads"]) is int
    assert p["debug_image"] is False
    assert p["checkpoint"] == ""  # the quoted empty string; an empty argument means "the file's value"


def test_only_given_arguments_override_the_parameter_file():
    plan = plan_for()
    assert plan.parameters == {}  # every parameter argument at its default: params_file decides
    assert plan.params_file == SHIPPED_YAML
    assert plan_for(slop="0.2").parameters == {"slop": 0.2}


@pytest.mark.parametrize("text", ["true", "True", "TRUE", " true ", "1"])
def test_lifecycle_takes_every_word_launch_reads_as_true(text):
    assert plan_for(lifecycle=text).executable == EXECUTABLES[True] == "ckd_tracker_lifecycle_node"


@pytest.mark.parametrize("text", ["false", "False", "0"])
def test_lifecycle_false_words_start_the_plain_node(text):
    assert plan_for(lifecycle=text).executable == "ckd_tracker_node"


@pytest.mark.parametrize(
    ("name", "text"),
    [(n, t) for n in ("lifecycle", "rviz", "debug_image") for t in ("yes", "on", "maybe")] + [("lifecycle", ""), ("rviz", "")],
)
def test_words_launch_does_not_read_as_booleans_are_refused(name, text):
    """launch 3.4.3's IfCondition accepts only true/1/false/0 (any case); anything else would
    otherwise be a silent false (lifecycle) or a launch error after the node was started (rviz).
    (An empty parameter argument is not a value: it leaves the parameter to params_file.)"""
    with pytest.raises(ConfigError, match=rf"^{name}='{text}' is not a boolean: use true or false"):
        plan_for(**{name: text})


def test_launch_bool_matches_ifcondition_words():
    assert [launch_bool("x", w) for w in ("true", "1", "TrUe", "false", "0", "FALSE")] == [True, True, True, False, False, False]


def test_rviz_without_rviz2_is_one_error_before_anything_is_started():
    with pytest.raises(ConfigError, match="rviz:=true, but the rviz2 package is not installed") as info:
        plan_for(rviz="true", rviz2_installed=False)
    assert "\n" not in str(info.value) and "Nothing was started" in str(info.value)
    assert plan_for(rviz="true", rviz2_installed=True).rviz
    assert not plan_for(rviz="false", rviz2_installed=False).rviz  # rviz2 is looked for only when asked


def test_rviz2_is_looked_up_in_the_ament_index(tmp_path, monkeypatch):
    pytest.importorskip("ament_index_python")
    index = tmp_path / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert not ros_package_found("rviz2")
    (index / "rviz2").write_text("")
    assert ros_package_found("rviz2")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("qos_reliability", "reliabel", "qos_reliability='reliabel' is not one of: best_effort, reliable"),
        ("stack_branches", "maybe", "stack_branches='maybe' is not one of: auto, on, off"),
        ("init_box", "[1.0, 2.0]", "init_box=[1.0, 2.0] needs 4 numbers, got 2"),
        ("init_box", "[10, 10, 30, 0]", "init_box=[10, 10, 30, 0] needs w >= 0 and h >= 0, and h > 0 when w > 0"),
        ("init_point_box_size", "[64.0]", "init_point_box_size=[64.0] needs 2 numbers, got 1"),
        ("init_point_box_size", "[0, 64]", "init_point_box_size=[0, 64] needs every number in [1.0, 10000.0]"),
        ("homography", "[1, 0]", "homography=[1, 0] needs 9 numbers, got 2"),
        ("slop", "abc", "slop='abc' is not a number"),
        ("slop", "true", "slop=True is not a number"),
        ("debug_rate", "0", "debug_rate=0 is outside [0.1, 1000.0]"),
        ("queue_size", "2.5", "queue_size=2.5 is not a whole number"),
        ("slop", "[1,", "slop='[1,' is not a valid value (for example slop:=0.05)"),
    ],
)
def test_bad_arguments_are_refused_in_one_line_naming_what_is_allowed(name, text, message):
    with pytest.raises(ConfigError) as info:
        plan_for(**{name: text})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_missing_parameter_file_or_empty_topic_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="params_file=.* is not a file"):
        plan_for(params_file=str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="rgb_topic is empty"):
        plan_for(rgb_topic=" ")


def test_launch_arguments_are_the_plan_inputs_and_every_parameter():
    declared = {name: default for name, default, _ in launch_arguments(SHIPPED_YAML)}
    assert set(declared) == {
        "params_file",
        "namespace",
        "rgb_topic",
        "thermal_topic",
        "lifecycle",
        "rviz",
        "transport_profile",
    } | {p.name for p in PARAMS}
    assert all(declared[p.name] == "" for p in PARAMS)
    plan = plan_for(namespace="/robot", rgb_topic="/cam/rgb", thermal_topic="/cam/tir")
    assert plan.namespace == "/robot"
    assert plan.remappings == [("rgb/image", "/cam/rgb"), ("thermal/image", "/cam/tir")]


PARAMS_FILE_KEYS = {  # node key(s) → the file's text (one parameter, v)
    "ckd_tracker": "ckd_tracker:\n  ros__parameters:\n    v: 1\n",
    "/robot/ckd_tracker": "/robot/ckd_tracker:\n  ros__parameters:\n    v: 1\n",
    "/**/ckd_tracker": "/**/ckd_tracker:\n  ros__parameters:\n    v: 1\n",
    "/*/ckd_tracker": "/*/ckd_tracker:\n  ros__parameters:\n    v: 1\n",
    "/**": "/**:\n  ros__parameters:\n    v: 1\n",
    "robot: ckd_tracker (nested)": "robot:\n  ckd_tracker:\n    ros__parameters:\n      v: 1\n",
    "/robot: ckd_tracker (nested)": "/robot:\n  ckd_tracker:\n    ros__parameters:\n      v: 1\n",
    "other_node + /robot/ckd_tracker": (
        "other:\n  ros__parameters:\n    v: 2\n/robot/ckd_tracker:\n  ros__parameters:\n    v: 1\n"
    ),
    "ckd_trackr": "ckd_trackr:\n  ros__parameters:\n    v: 1\n",
}


def rclpy_applies(path, namespace: str) -> bool:
    """Whether rclpy gives the node ckd_tracker in ``namespace`` the file's parameter."""
    rclpy = ros()
    from rclpy.node import Node

    ctx = rclpy.context.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(path)], context=ctx)
    try:
        node = Node("ckd_tracker", namespace=namespace, context=ctx, automatically_declare_parameters_from_overrides=True)
        found = node.has_parameter("v")
        node.destroy_node()
        return found
    finally:
        rclpy.shutdown(context=ctx)


@pytest.mark.ros
@pytest.mark.parametrize("namespace", ["", "/robot", "/fleet/robot"])
@pytest.mark.parametrize("keys", list(PARAMS_FILE_KEYS))
def test_a_params_file_is_refused_exactly_when_rclpy_would_ignore_it(tmp_path, capsys, keys, namespace):
    """rcl silently skips a file keyed for another namespace (ckd_tracker: under namespace:=robot):
    the node then ran on its defaults. The check must agree with rclpy itself, case by case."""
    params = tmp_path / "p.yaml"
    params.write_text(PARAMS_FILE_KEYS[keys])
    applies = rclpy_applies(params, namespace)
    if applies:
        assert plan_for(params_file=str(params), namespace=namespace).params_file == str(params)
        return
    with pytest.raises(ConfigError, match=r"none of its node names \('.*'\) applies to the node /.*ckd_tracker") as err:
        plan_for(params_file=str(params), namespace=namespace)
    assert "'/**/ckd_tracker:'" in str(err.value)
    assert cli_main(["launch", "--params-file", str(params), "--namespace", namespace]) == 2
    assert "applies to the node" in capsys.readouterr().err


def test_a_namespace_pushed_by_an_including_launch_file_counts(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(PARAMS_FILE_KEYS["/robot/ckd_tracker"])
    assert plan_for(params_file=str(params), ros_namespace="/robot").params_file == str(params)  # PushRosNamespace
    with pytest.raises(ConfigError, match="applies to the node /outer/robot/ckd_tracker"):
        plan_for(params_file=str(params), ros_namespace="outer", namespace="robot")
    assert plan_for(params_file=str(params), ros_namespace="outer", namespace="/robot").params_file == str(params)


def test_the_shipped_params_file_applies_in_any_namespace():
    for namespace in ("", "robot", "/a/b/"):
        assert plan_for(namespace=namespace).params_file == SHIPPED_YAML


def test_launch_file_starts_the_node_from_launch_plan():
    """The launch file cannot run here (no launch packages); what it must do is call launch_plan in
    an OpaqueFunction and start what the plan says, with no condition or expression of its own."""
    tree = ast.parse((ROOT / "launch" / "ckd_tracker.launch.py").read_text())
    imported = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("ckd_ros.ros.launch_args", "launch_plan") in imported
    assert ("launch.actions", "OpaqueFunction") in imported
    assert ("launch.actions", "Shutdown") in imported  # the node exiting ends the launch (and rviz2)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"IfCondition", "UnlessCondition", "PythonExpression", "ParameterValue"}
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert {"executable", "parameters", "params_file", "remappings", "namespace", "rviz"} <= attrs


def test_ckd_ros_launch_converts_overrides_like_the_launch_file():
    from ckd_ros.ros.launcher import node_command

    cmd = node_command(
        None, "a", "b", ["slop:=1", "stack_branches:=on", "init_box:=[50,39.5,40,30]", "class_id:=7", "checkpoint:="]
    )
    overrides = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-p"]
    assert overrides == [
        "slop:=1.0",
        "stack_branches:='on'",
        "init_box:=[50.0, 39.5, 40.0, 30.0]",
        "class_id:='7'",
        'checkpoint:=""',
    ]
    with pytest.raises(ConfigError, match="qos_reliability='reliabel' is not one of"):
        node_command(None, "a", "b", ["qos_reliability:=reliabel"])


# -- the node, through real rclpy -----------------------------------------------------------------


def ros():
    rclpy = pytest.importorskip("rclpy", reason="needs the ROS 2 venv (scripts/setup_env.sh)")
    pytest.importorskip("vision_msgs.msg", reason="needs vision_msgs (scripts/setup_env.sh builds it)")
    return rclpy


def node_process(*ros_args: str, lifecycle: bool = False) -> list[str]:
    return [sys.executable, "-m", "ckd_ros.ros.node", *(["--lifecycle"] if lifecycle else []), "--ros-args", *ros_args]


@pytest.mark.ros
def test_node_process_starts_with_integer_parameters_from_the_command_line_and_a_file(checkpoint, tmp_path):
    """Also: rcl applies a file keyed /**/ckd_tracker (the shipped file's key) in a namespace."""
    ros()
    params = tmp_path / "ints.yaml"
    params.write_text("/**/ckd_tracker:\n  ros__parameters:\n    init_box: [50, 39, 40, 30]\n    debug_rate: 30\n")
    cmd = node_process(
        "-r", "__ns:=/robot", "-p", f"checkpoint:={checkpoint}", "-p", f"homography:={IDENTITY_INTS}", "-p", "slop:=1",
        "-p", "score_threshold:=1", "-p", "stack_branches:=on", "--params-file", str(params),
    )  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = ""
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and "ckd_tracker configured" not in out:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
    finally:
        proc.send_signal(signal.SIGINT)
        out += proc.communicate(timeout=30)[0]
    assert "ckd_tracker configured" in out, out
    assert "(50.0, 39.0, 40.0, 30.0)" in out  # init_box from the file's integers, requested at start-up
    assert proc.returncode == 0 and "Traceback" not in out


@pytest.mark.ros
@pytest.mark.parametrize(
    ("lifecycle", "arg", "message"),
    [
        (False, "qos_reliability:=reliabel", "qos_reliability='reliabel' is not one of: best_effort, reliable"),
        (False, "stack_branches:=maybe", "stack_branches='maybe' is not one of: auto, on, off"),
        (False, "init_box:=[1.0, 2.0]", "init_box=[1.0, 2.0] needs 4 numbers, got 2"),
        (True, "init_point_box_size:=[64.0]", "init_point_box_size=[64.0] needs 2 numbers, got 1"),
    ],
)
def test_node_process_refuses_a_bad_start_up_value_in_one_line(lifecycle, arg, message):
    ros()
    proc = subprocess.run(node_process("-p", arg, lifecycle=lifecycle), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"ckd_tracker: error: {message}"  # one line, no traceback


@pytest.mark.ros
def test_node_process_refuses_ros_arguments_rcl_cannot_parse_without_a_traceback():
    ros()
    proc = subprocess.run(node_process("-p", "init_box:=[50,39.5,40,30]"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("ckd_tracker: error:")]
    assert len(ours) == 1 and "init_box:=[50,39.5,40,30]" in ours[0] and "[50.0, 39.5, 40.0, 30.0]" in ours[0]


@pytest.mark.ros
def test_integer_overrides_and_run_time_sets_in_process(checkpoint):
    rclpy = ros()
    from rclpy.parameter import Parameter

    from ckd_ros.ros.node import CKDTrackerLifecycleNode, CKDTrackerNode

    rclpy.init()
    try:
        overrides = [
            Parameter("checkpoint", value=checkpoint),
            Parameter("homography", value=[1, 0, 0, 0, 1, 0, 0, 0, 1]),
            Parameter("init_point_box_size", value=[32, 48]),
            Parameter("slop", value=1),
            Parameter("lost_frames", value=20.0),
        ]
        node = CKDTrackerNode(parameter_overrides=overrides)
        try:
            assert node.get_parameter("slop").type_ == Parameter.Type.DOUBLE and node.p["slop"] == 1.0
            assert node.get_parameter("homography").type_ == Parameter.Type.DOUBLE_ARRAY
            assert node.p["init_point_box_size"] == [32.0, 48.0] and node.p["lost_frames"] == 20
            # ros2 param set with integers: rclpy lets them through to the node's conversion
            assert node.set_parameters([Parameter("score_threshold", value=1)])[0].successful
            assert node.tracker.config.score_threshold == 1.0 and type(node.p["score_threshold"]) is float
            assert node.set_parameters([Parameter("homography", value=[2, 0, 0, 0, 2, 0, 0, 0, 1])])[0].successful
            assert node.p["homography"][0] == 2.0
            r = node.set_parameters([Parameter("init_point_box_size", value=[64.0])])[0]
            assert not r.successful and r.reason == "init_point_box_size=[64.0] needs 2 numbers, got 1"
            r = node.set_parameters([Parameter("score_threshold", value="high")])[0]
            assert not r.successful and r.reason == "score_threshold='high' is not a number"
        finally:
            node.destroy_node()
        with pytest.raises(ConfigError, match="qos_reliability='reliabel' is not one of"):
            CKDTrackerLifecycleNode(parameter_overrides=[Parameter("qos_reliability", value="reliabel")])
    finally:
        rclpy.try_shutdown()


def test_launch_args_imports_without_ros_or_launch():
    code = (
        "import sys\n"
        "for m in ('rclpy', 'rcl_interfaces', 'launch', 'launch_ros', 'ament_index_python'): sys.modules[m] = None\n"
        "from ckd_ros.ros.launch_args import launch_plan, parse_argument\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_ckd_ros_launch_gives_rcl_a_fully_qualified_namespace():
    from ckd_ros.ros.launcher import node_command

    for given in ("robot", "/robot", "/robot/"):  # rcl refuses a relative __ns remap: the node would not start
        cmd = node_command(None, "/rgb", "/tir", [], given)
        assert cmd[cmd.index("__ns:=/robot") - 1] == "-r"
    assert not any(arg.startswith("__ns") for arg in node_command(None, "/rgb", "/tir", [], ""))
