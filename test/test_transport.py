"""Fast DDS transport profiles (issue 15): the shipped profile for large images is valid, installed
and really applied by Fast DDS; a profile Fast DDS would reject or ignore is refused in one line by
every way of starting the node (launch_plan, ``ckd-ros launch``, the node's start-up check) before
anything starts; and the profile's variables reach the node's process.

Why the refusal matters: Fast DDS logs a bad profile and carries on with its default transports
(``test_fastdds_runs_on_defaults_after_a_bad_profile``), where best-effort 640x480 images between
processes arrive one time in two or worse, while everyone believes the profile is in place.
Delivery figures per transport and QoS come from ``bench/bench_node.py``, not from tests.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ckd_ros.cli import main
from ckd_ros.errors import ConfigError
from ckd_ros.ros.launch_args import launch_arguments, launch_plan
from ckd_ros.ros.transport import (
    PROFILE_VARIABLES,
    check_transport_environment,
    describe_environment,
    resolve_profile,
    transport_environment,
    validate_profile,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "fastdds_large_images.xml"
SHIPPED_YAML = str(ROOT / "config" / "ckd_tracker.yaml")
FRAME_1080P_RGB8 = 1920 * 1080 * 3

GOOD = """<?xml version="1.0" encoding="UTF-8"?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>shm</transport_id>
      <type>SHM</type>
      <segment_size>{segment}</segment_size>{extra}
    </transport_descriptor>
    <transport_descriptor>
      <transport_id>udp</transport_id>
      <type>{udp_type}</type>
    </transport_descriptor>
  </transport_descriptors>
  <participant profile_name="p" {default}>
    <rtps>
      <userTransports>
        <transport_id>shm</transport_id>
        <transport_id>{second_id}</transport_id>
      </userTransports>
      <useBuiltinTransports>{builtin}</useBuiltinTransports>
    </rtps>
  </participant>
</profiles>
"""


def profile_text(**change: str) -> str:
    """A valid profile (SHM 32 MiB + UDPv4, default participant) with one field changed."""
    fields = {
        "segment": "33554432",
        "extra": "",
        "udp_type": "UDPv4",
        "default": 'is_default_profile="true"',
        "second_id": "udp",
        "builtin": "false",
    }
    return GOOD.format(**{**fields, **change})


# (case name, file content or None for a missing file, what the one line must say)
BAD_PROFILES = [
    ("missing", None, "no such file"),
    ("not_xml", "segment_size = 20971520\n", "not valid XML"),
    ("truncated", profile_text()[:300], "not valid XML"),
    ("no_profiles_root", "<config><segment_size>1</segment_size></config>", "not a Fast DDS profile file (root <config>"),
    ("empty_profiles", "<profiles/>", 'no <participant is_default_profile="true">'),
    ("no_default_participant", profile_text(default=""), "would ignore this file"),
    ("unknown_type", profile_text(udp_type="UDP"), "has type 'UDP'; Fast DDS knows SHM, UDPv4"),
    ("segment_not_a_number", profile_text(segment="abc"), "<segment_size>abc</segment_size> is not a whole number"),
    ("segment_with_unit", profile_text(segment="20MiB"), "<segment_size>20MiB</segment_size> is not a whole number"),
    ("segment_negative", profile_text(segment="-1"), "<segment_size>-1</segment_size> is not a whole number"),
    ("segment_too_big", profile_text(segment=str(2**32)), "is not a whole number from 0 to 4294967295"),
    ("segment_over_lines", profile_text(segment="20\n  MiB"), "<segment_size>20 MiB</segment_size> is not a whole number"),
    ("unknown_element", profile_text(extra="\n      <segmentSize>1</segmentSize>"), "does not know: <segmentSize>"),
    ("message_over_segment", profile_text(extra="\n      <maxMessageSize>40000000</maxMessageSize>"), "larger than its segment"),
    ("undeclared_transport", profile_text(second_id="tcp"), "uses transport 'tcp', which is not declared"),
    ("bad_builtin_flag", profile_text(builtin="no"), "<useBuiltinTransports>no</useBuiltinTransports> is not true or false"),
]


@pytest.fixture
def bad_profile(tmp_path, request) -> tuple[str, str]:
    """(path, expected fragment of the one-line refusal) for the BAD_PROFILES case named by the test's param."""
    name, text, expected = request.param
    path = tmp_path / f"{name}.xml"
    if text is not None:
        path.write_text(text)
    return str(path), expected


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}: {text!r}"
    return lines[0]


def plan_for(environ: dict[str, str] | None = None, **given: str):
    """launch_plan for the launch-argument values ``given`` (others at the declared defaults)."""
    args = {name: default for name, default, _ in launch_arguments(SHIPPED_YAML)}
    args.update(given)
    return launch_plan(args, package_found=lambda name: False, environ={} if environ is None else environ)


# -- the shipped profile ------------------------------------------------------------------------------


def test_shipped_profile_validates_and_is_sized_for_1080p():
    profile = validate_profile(SHIPPED)
    kinds = [t.kind for t in profile.transports]
    assert kinds == ["SHM", "UDPv4"], "shared memory for this machine, UDPv4 for the others (a remote rviz)"
    assert not profile.builtin_transports, "the builtin 512 KB segment would stay on next to ours"
    segment = profile.transports[0].segment_size
    assert segment is not None and segment >= 5 * FRAME_1080P_RGB8, "five 1920x1080 rgb8 frames, the sensor-data depth"
    assert profile.text() == "fastdds_large_images.xml: SHM (segment 32 MiB) + UDPv4, builtin transports off"
    assert resolve_profile("large_images") == SHIPPED
    assert resolve_profile("") is None and resolve_profile("none") is None


def test_sizes_are_read_as_fast_dds_reads_them(tmp_path):
    """Decimal with leading zeros or surrounding whitespace, and 0x hex (tinyxml2's ToUnsigned), are
    accepted; a segment of 0 is Fast DDS's 512 KB default."""
    for text, expected in (("033554432", 32 * 2**20), (" 0x2000000\n", 32 * 2**20), ("0", 0)):
        path = tmp_path / "p.xml"
        path.write_text(profile_text(segment=text))
        assert validate_profile(path).transports[0].segment_size == expected
    assert validate_profile(path).text().endswith("SHM (segment 0.5 MiB) + UDPv4, builtin transports off")
    for word, builtin in (("FALSE", False), ("0", False), ("True", True), ("1", True)):
        path.write_text(profile_text(builtin=word))
        assert validate_profile(path).builtin_transports is builtin


def test_setup_installs_the_shipped_profile_into_share_config(monkeypatch):
    """setup.py's data_files (what colcon and pip install into share/ckd_ros) carry config/*.xml."""
    import setuptools

    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(ROOT)
    code = compile((ROOT / "setup.py").read_text(), str(ROOT / "setup.py"), "exec")
    exec(code, {"__name__": "__main__"})
    installed = {src: dest for dest, files in captured["data_files"] for src in files}
    assert installed.get("config/fastdds_large_images.xml") == "share/ckd_ros/config"


def test_an_installed_share_folder_is_where_the_shipped_name_resolves(tmp_path, monkeypatch):
    share = tmp_path / "share" / "ckd_ros"
    (share / "config").mkdir(parents=True)
    (share / "config" / SHIPPED.name).write_bytes(SHIPPED.read_bytes())
    monkeypatch.setenv("CKD_ROS_SHARE_DIR", str(share))
    env = transport_environment("large_images", {})
    assert env == {var: str(share / "config" / SHIPPED.name) for var in PROFILE_VARIABLES}


# -- bad profiles: refused in one line, before anything starts -------------------------------------------


@pytest.mark.parametrize("bad_profile", BAD_PROFILES, ids=[c[0] for c in BAD_PROFILES], indirect=True)
def test_bad_profile_is_refused_by_launch_plan(bad_profile):
    path, expected = bad_profile
    with pytest.raises(ConfigError) as info:
        plan_for(transport_profile=path)
    assert expected in one_line(str(info.value)) and path in str(info.value)


@pytest.mark.parametrize("bad_profile", BAD_PROFILES, ids=[c[0] for c in BAD_PROFILES], indirect=True)
def test_bad_profile_is_refused_by_ckd_ros_launch(bad_profile, capsys, monkeypatch):
    import ckd_ros.ros.launcher as launcher

    started = []
    monkeypatch.setattr(launcher, "run", lambda cmd, env=None: started.append(cmd) or 0)
    path, expected = bad_profile
    assert main(["launch", "--transport-profile", path]) == 2
    out, err = capsys.readouterr()
    assert one_line(err).startswith("ckd-ros launch: error: ") and expected in err
    assert not started and not out, "nothing may start (or claim to) before the profile is checked"


@pytest.mark.parametrize("bad_profile", BAD_PROFILES, ids=[c[0] for c in BAD_PROFILES], indirect=True)
def test_bad_profile_is_refused_by_the_node_start_up_check(bad_profile, request):
    path, expected = bad_profile
    for var in PROFILE_VARIABLES:
        problem = check_transport_environment({var: path})
        if request.node.callspec.id in ("empty_profiles", "no_default_participant"):
            # exported for other reasons (writer/reader defaults): Fast DDS applies it as such; only
            # a profile given as --transport-profile must configure the participant
            assert problem is None
            continue
        assert problem is not None and one_line(problem).startswith(f"{var}: {path}: ") and expected in problem


def test_a_profile_with_only_writer_defaults_is_accepted_from_the_environment(tmp_path):
    xml = tmp_path / "writers.xml"
    xml.write_text(
        '<?xml version="1.0"?><profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">'
        '<data_writer profile_name="default publisher profile" is_default_profile="true">'
        "<qos><publishMode><kind>ASYNCHRONOUS</kind></publishMode></qos></data_writer></profiles>"
    )
    assert check_transport_environment({"FASTRTPS_DEFAULT_PROFILES_FILE": str(xml)}) is None


def test_a_bad_profile_exported_in_the_shell_stops_the_launch_too(tmp_path, capsys, monkeypatch):
    """With no transport_profile given, the node inherits the launch's environment: its profile is
    checked instead (launch_plan and ckd-ros launch alike)."""
    bad = tmp_path / "bad.xml"
    bad.write_text(profile_text(segment="20MiB"))
    with pytest.raises(ConfigError, match="FASTRTPS_DEFAULT_PROFILES_FILE: .*20MiB"):
        plan_for(environ={"FASTRTPS_DEFAULT_PROFILES_FILE": str(bad)})
    assert plan_for(environ={"FASTRTPS_DEFAULT_PROFILES_FILE": str(SHIPPED)}).env == {}  # inherited as it is
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", str(bad))
    assert main(["launch"]) == 2
    assert "FASTDDS_DEFAULT_PROFILES_FILE: " in one_line(capsys.readouterr().err)


def test_the_demo_refuses_a_bad_profile_before_ros_starts(tmp_path, capsys):
    bad = tmp_path / "bad.xml"
    bad.write_text(profile_text(udp_type="UDP"))
    assert main(["demo", "--transport-profile", str(bad), "--out", str(tmp_path / "demo")]) == 2
    assert "has type 'UDP'" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "demo").exists()


def test_unknown_names_and_other_rmws():
    with pytest.raises(ConfigError, match="neither a shipped profile \\(large_images\\) nor a file"):
        transport_environment("large_image", {})
    cyclone = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    with pytest.raises(ConfigError, match="RMW_IMPLEMENTATION=rmw_cyclonedds_cpp does not read it"):
        transport_environment("large_images", cyclone)
    # another RMW never reads the Fast DDS variables: not the node's business at start-up
    assert check_transport_environment({**cyclone, "FASTRTPS_DEFAULT_PROFILES_FILE": "/nonexistent.xml"}) is None
    assert check_transport_environment({"FASTRTPS_DEFAULT_PROFILES_FILE": ""}) is None  # empty: unset
    assert check_transport_environment({"FASTRTPS_DEFAULT_PROFILES_FILE": str(SHIPPED)}) is None


# -- the variables reach the node's process --------------------------------------------------------------


def test_launch_plan_gives_the_node_both_profile_variables():
    plan = plan_for(transport_profile="large_images")
    assert plan.env == {"FASTRTPS_DEFAULT_PROFILES_FILE": str(SHIPPED), "FASTDDS_DEFAULT_PROFILES_FILE": str(SHIPPED)}
    assert plan_for().env == {}
    assert "transport_profile" in {name for name, _, _ in launch_arguments(SHIPPED_YAML)}


def test_launch_file_passes_the_plan_env_to_the_node():
    tree = ast.parse((ROOT / "launch" / "ckd_tracker.launch.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node"]
    tracker = [c for c in calls if any(k.arg == "executable" and ast.unparse(k.value) == "plan.executable" for k in c.keywords)]
    assert len(tracker) == 1
    env = {k.arg: ast.unparse(k.value) for k in tracker[0].keywords}.get("additional_env")
    assert env is not None and "plan.env" in env


def test_ckd_ros_launch_starts_the_node_process_with_the_profile(monkeypatch, capfd):
    """The real spawn (launcher.run) with the env ckd-ros launch computes; the "node" here is a
    Python one-liner that prints what its environment says."""
    import ckd_ros.ros.launcher as launcher

    probe = f"import os; print('|'.join(os.environ.get(v, '') for v in {PROFILE_VARIABLES!r}))"
    monkeypatch.setattr(launcher, "node_command", lambda *a, **k: [sys.executable, "-c", probe])
    for var in PROFILE_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    assert main(["launch", "--transport-profile", "large_images"]) == 0
    out = capfd.readouterr().out.splitlines()
    assert (
        out[0]
        == f"transport: {SHIPPED.name}: SHM (segment 32 MiB) + UDPv4, builtin transports off (FASTRTPS_DEFAULT_PROFILES_FILE)"
    )
    assert out[-1] == f"{SHIPPED}|{SHIPPED}"


def test_describe_environment_names_what_a_process_gets():
    assert describe_environment({}).startswith("transport: Fast DDS defaults (SHM segment 512 KB")
    large_data = {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    assert describe_environment(large_data).endswith("LARGE_DATA (FASTDDS_BUILTIN_TRANSPORTS)")
    localhost = describe_environment({**large_data, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    assert "LARGE_DATA is ignored under ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST" in localhost
    assert "rmw_cyclonedds_cpp" in describe_environment({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})


# -- what Fast DDS itself does with the files (real rclpy, one process each) -----------------------------

PARTICIPANT = textwrap.dedent(
    """
    import glob, os, rclpy
    before = set(glob.glob("/dev/shm/fastrtps_*"))
    rclpy.init()
    node = rclpy.create_node("ckd_transport_probe")
    new = set(glob.glob("/dev/shm/fastrtps_*")) - before
    print(max([os.path.getsize(f) for f in new if "port" not in f] or [0]))
    node.destroy_node()
    rclpy.try_shutdown()
    """
)


def participant_segment(profile: Path | None) -> tuple[int, str]:
    """(size of the largest shared-memory segment a new participant created, its output) with
    ``profile`` as FASTRTPS_DEFAULT_PROFILES_FILE. Fast DDS 2.14 logs its errors on stdout."""
    pytest.importorskip("rclpy", reason="needs the ROS 2 venv (scripts/setup_env.sh)")
    env = {k: v for k, v in os.environ.items() if k not in (*PROFILE_VARIABLES, "FASTDDS_BUILTIN_TRANSPORTS")}
    if profile is not None:
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(profile)
    proc = subprocess.run([sys.executable, "-c", PARTICIPANT], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return int(proc.stdout.split()[-1]), proc.stdout + proc.stderr


def test_fastdds_applies_the_shipped_profile():
    """Not only parsed: the participant's shared-memory segment is the profile's 32 MiB."""
    size, err = participant_segment(SHIPPED)
    assert "XMLPARSER" not in err, err
    assert size >= 32 * 2**20


def test_fastdds_runs_on_defaults_after_a_bad_profile(tmp_path):
    """The premise of the whole check: Fast DDS logs the error and starts anyway, on its default
    512 KB segment (the half-configured node the check prevents)."""
    bad = tmp_path / "bad.xml"
    bad.write_text(profile_text(udp_type="UDP"))
    size, err = participant_segment(bad)
    assert "XMLPARSER" in err and "Invalid transport type" in err
    assert 0 < size < 2**20
    with pytest.raises(ConfigError, match="has type 'UDP'"):
        validate_profile(bad)


# -- delivery with the profile, two processes --------------------------------------------------------------

SUBSCRIBER = textwrap.dedent(
    """
    import sys, time, rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    n = int(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("ckd_transport_sub")
    got = set()
    # best effort as a camera; a deep history so that a slow interpreter loses nothing the transport delivered
    qos = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=100)
    node.create_subscription(Image, "ckd_transport_test", lambda m: got.add(m.header.stamp.nanosec), qos)
    deadline = time.monotonic() + 30
    while node.count_publishers("ckd_transport_test") < 1 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    print("ready", flush=True)
    deadline = time.monotonic() + 8
    while len(got) < n and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(len(got), flush=True)
    """
)
PUBLISHER = textwrap.dedent(
    """
    import sys, time, rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    n = int(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("ckd_transport_pub")
    pub = node.create_publisher(Image, "ckd_transport_test", qos_profile_sensor_data)
    msg = Image(height=480, width=640, encoding="rgb8", step=1920)
    msg.data = bytes(range(256)) * 3600
    while pub.get_subscription_count() < 1:
        time.sleep(0.01)
    sys.stdin.readline()  # the subscriber has matched this publisher too
    for i in range(n):
        msg.header.stamp.nanosec = i + 1
        pub.publish(msg)
        time.sleep(0.05)
    sys.stdin.readline()  # keep the writer until the subscriber has counted
    """
)


def test_best_effort_640x480_arrives_complete_between_processes_with_the_profile():
    """The sender's segment is what matters (the camera driver's side), so both ends load it, as the
    README says. Without the profile about half these frames are lost (bench/bench_node.py --raw)."""
    pytest.importorskip("rclpy", reason="needs the ROS 2 venv (scripts/setup_env.sh)")
    n = 20
    env = {**os.environ, "FASTRTPS_DEFAULT_PROFILES_FILE": str(SHIPPED), "FASTDDS_DEFAULT_PROFILES_FILE": str(SHIPPED)}
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(n)], env=env, stdout=subprocess.PIPE, text=True)
    pub = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(n)], env=env, stdin=subprocess.PIPE, text=True)
    try:
        assert sub.stdout.readline().strip() == "ready"
        pub.stdin.write("go\n")
        pub.stdin.flush()
        received = int(sub.stdout.readline())
        pub.stdin.write("done\n")
        pub.stdin.flush()
        assert received == n, f"{received} of {n} best-effort 640x480 frames arrived with the shipped profile"
    finally:
        for proc in (pub, sub):
            try:
                proc.wait(timeout=15)  # a clean exit removes the process's shared-memory segment
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_node_refuses_a_bad_profile_before_ros_starts(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<not-profiles/>")
    env = {**os.environ, "FASTRTPS_DEFAULT_PROFILES_FILE": str(bad)}
    proc = subprocess.run([sys.executable, "-m", "ckd_ros.ros.node"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("ckd_tracker: error: FASTRTPS_DEFAULT_PROFILES_FILE") and str(bad) in proc.stderr
