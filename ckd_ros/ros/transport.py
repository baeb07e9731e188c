"""Fast DDS transport profiles for camera images: which file, whether Fast DDS would really use it,
and the environment that makes the node's process load it.

Why this exists (measured on ROS 2 Jazzy wheels, Fast DDS 2.14; README "Large images over DDS"):
Fast DDS's default shared-memory segment (512 KB per process) is smaller than one 640x480 rgb8
image, so best-effort images between two processes on one machine arrive one time in two or worse.
A profile with a larger segment fixes it, but Fast DDS treats a bad profile leniently: a file that
is missing, not XML, has an unknown transport type, a non-numeric size or an unknown element is
logged as an ``XMLPARSER Error`` and then *ignored as a whole*, and a file without a participant
profile marked ``is_default_profile="true"`` is ignored without any message (rmw_fastrtps only reads
the default participant profile). Either way the node would start with default transports and lose
frames while everyone believes the profile is in place. So every way of starting the node (the
launch file through ``launch_plan``, ``ckd-ros launch``, the node's own start-up through
``check_transport_environment``) checks the file first and refuses a bad one in one line.

The check mirrors Fast DDS 2.14's XML parser where it rejects a file (root element, transport
descriptor elements and types, unsigned fields, transport ids the participant refers to) and is
stricter where Fast DDS accepts nonsense: ``<segment_size>20MiB</segment_size>`` is read by Fast DDS
(``sscanf("%u")``) as a 20-byte segment; here it is an error.

Plain Python (no rclpy), so the launch file and the tests use it without a ROS graph.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ckd_ros.errors import ConfigError
from ckd_ros.resources import find_resource, resource_dirs

# Fast DDS 2.x (Jazzy) reads the first, Fast DDS 3.x (Kilted and later) the second: set both.
PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
# Profiles in config/ that a launch argument or option may name instead of a path.
SHIPPED_PROFILES = {"large_images": "fastdds_large_images.xml"}
NO_PROFILE_WORDS = ("", "none")

TRANSPORT_TYPES = ("SHM", "UDPv4", "UDPv6", "TCPv4", "TCPv6")
# Every element Fast DDS 2.14 accepts inside <transport_descriptor> (XMLParser::validateXMLTransportElements);
# any other is an error that discards the whole file.
DESCRIPTOR_ELEMENTS = frozenset(
    "transport_id type sendBufferSize receiveBufferSize maxMessageSize maxInitialPeersRange interfaceWhiteList "
    "netmask_filter interfaces TTL non_blocking_send output_port wan_addr keep_alive_frequency_ms "
    "keep_alive_timeout_ms max_logical_port logical_port_range logical_port_increment listening_ports "
    "calculate_crc check_crc keep_alive_thread accept_thread enable_tcp_nodelay tcp_negotiation_timeout tls "
    "segment_size port_queue_capacity healthy_check_timeout_ms rtps_dump_file default_reception_threads "
    "reception_threads dump_thread port_overflow_policy segment_overflow_policy".split()
)
# Descriptor fields Fast DDS reads as unsigned integers, with their largest value.
UINT_FIELDS = {
    "segment_size": 2**32 - 1,
    "port_queue_capacity": 2**32 - 1,
    "healthy_check_timeout_ms": 2**32 - 1,
    "maxMessageSize": 2**32 - 1,
    "maxInitialPeersRange": 2**32 - 1,
    "sendBufferSize": 2**32 - 1,
    "receiveBufferSize": 2**32 - 1,
    "TTL": 255,
    "output_port": 65535,
    "max_logical_port": 65535,
    "logical_port_range": 65535,
    "logical_port_increment": 65535,
}
SHM_DEFAULT_SEGMENT = 512 * 1024  # Fast DDS's default: what a profile without <segment_size> gets
_UINT = re.compile(r"\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*")


@dataclass(frozen=True)
class Transport:
    """One transport descriptor the default participant uses."""

    transport_id: str
    kind: str  # SHM, UDPv4, ...
    segment_size: int | None = None  # SHM only: bytes per process in /dev/shm (None or 0: the 512 KB default)

    def text(self) -> str:
        if self.kind != "SHM":
            return self.kind
        size = self.segment_size or SHM_DEFAULT_SEGMENT
        return f"SHM (segment {size / 2**20:g} MiB)"


@dataclass(frozen=True)
class Profile:
    """A Fast DDS XML profile file that passed ``validate_profile``: what its default participant uses."""

    path: Path
    participant: str  # the profile_name of the default participant profile
    transports: tuple[Transport, ...]  # its user transports, in order
    builtin_transports: bool  # whether Fast DDS's default SHM (512 KB) + UDPv4 stay on as well

    def text(self) -> str:
        """One line for logs: ``fastdds_large_images.xml: SHM (segment 32 MiB) + UDPv4, builtin transports off``."""
        used = " + ".join(t.text() for t in self.transports) or "no user transports"
        builtin = "builtin transports on" if self.builtin_transports else "builtin transports off"
        return f"{self.path.name}: {used}, {builtin}"


def _local(tag: object) -> str:
    """An element's name without its XML namespace (Fast DDS ignores the namespace)."""
    return tag.split("}", 1)[-1] if isinstance(tag, str) else ""


def _children(elem: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in elem if _local(c.tag) == name]


def _text(elem: ET.Element | None) -> str:
    return (elem.text or "").strip() if elem is not None else ""


def _shown(text: str) -> str:
    """User text inside a one-line message: its whitespace (newlines included) collapsed."""
    return " ".join(text.split())


def _bool(word: str) -> bool | None:
    """A boolean as tinyxml2's ToBool reads it for Fast DDS: true/True/TRUE, false/False/FALSE or a
    whole number (non-zero is true); None for anything else."""
    if word in ("true", "True", "TRUE"):
        return True
    if word in ("false", "False", "FALSE"):
        return False
    return int(word) != 0 if re.fullmatch(r"[+-]?[0-9]+", word) else None


def _uint(where: str, elem: ET.Element) -> int:
    """An unsigned field as Fast DDS reads it (decimal, or hex with 0x), but whole: no trailing units."""
    name = _local(elem.tag)
    text = elem.text or ""
    match = _UINT.fullmatch(text)
    digits = match.group(1) if match else ""
    value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits) if digits else None
    if value is None or value > UINT_FIELDS[name]:
        raise ConfigError(f"{where}: <{name}>{_shown(text)}</{name}> is not a whole number from 0 to {UINT_FIELDS[name]}")
    return value


def _descriptor(where: str, elem: ET.Element) -> Transport:
    """A <transport_descriptor>, checked as Fast DDS parses it (and its sizes more strictly)."""
    for child in elem:
        name = _local(child.tag)
        if name and name not in DESCRIPTOR_ELEMENTS:
            raise ConfigError(f"{where}: <transport_descriptor> has an element Fast DDS does not know: <{name}>")
    transport_id = _text(next(iter(_children(elem, "transport_id")), None))
    if not transport_id:
        raise ConfigError(f"{where}: a <transport_descriptor> has no <transport_id>")
    kind = _text(next(iter(_children(elem, "type")), None))
    if kind not in TRANSPORT_TYPES:
        raise ConfigError(f"{where}: transport {transport_id!r} has type {kind!r}; Fast DDS knows {', '.join(TRANSPORT_TYPES)}")
    values = {_local(c.tag): _uint(f"{where}: transport {transport_id!r}", c) for c in elem if _local(c.tag) in UINT_FIELDS}
    segment = values.get("segment_size")
    if kind == "SHM":  # a segment of 0 is Fast DDS's default, 512 KB
        message = values.get("maxMessageSize")
        if message is not None and message > (segment or SHM_DEFAULT_SEGMENT):
            raise ConfigError(
                f"{where}: transport {transport_id!r} has maxMessageSize {message} larger than its segment "
                f"({segment or SHM_DEFAULT_SEGMENT} bytes); Fast DDS refuses to create it"
            )
    return Transport(transport_id, kind, segment if kind == "SHM" else None)


def _profiles_element(where: str, root: ET.Element) -> ET.Element:
    """``<profiles>``, the root or under a ``<dds>`` root: where Fast DDS looks for profiles."""
    if _local(root.tag) == "profiles":
        return root
    if _local(root.tag) == "dds":
        found = _children(root, "profiles")
        if found:
            return found[0]
    raise ConfigError(f"{where}: not a Fast DDS profile file (root <{_local(root.tag)}>, expected <profiles> or <dds><profiles>)")


def validate_profile(path: str | os.PathLike, require_participant: bool = True) -> Profile:
    """The profile at ``path`` as Fast DDS would apply it, or ConfigError with one line naming what
    Fast DDS would reject, or ignore without a word (no default participant profile)."""
    where = str(path)
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{where}: {'is not a file' if file.exists() else 'no such file'}")
    try:
        root = ET.fromstring(file.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    except ET.ParseError as exc:
        raise ConfigError(f"{where}: not valid XML ({exc})") from None
    profiles = _profiles_element(where, root)
    transports: dict[str, Transport] = {}
    for group in _children(profiles, "transport_descriptors"):
        for elem in _children(group, "transport_descriptor"):
            transport = _descriptor(where, elem)
            if transport.transport_id in transports:
                raise ConfigError(f"{where}: transport id {transport.transport_id!r} is declared twice")
            transports[transport.transport_id] = transport
    defaults = [p for p in _children(profiles, "participant") if p.get("is_default_profile") == "true"]
    if not defaults and not require_participant:  # e.g. only default data_writer/data_reader settings: applied as such
        return Profile(file.resolve(), "", (), True)
    if not defaults:
        raise ConfigError(
            f'{where}: no <participant is_default_profile="true">: rmw_fastrtps reads only the default '
            "participant profile, so Fast DDS would ignore this file without a message"
        )
    if len(defaults) > 1:
        names = ", ".join(repr(p.get("profile_name", "")) for p in defaults)
        raise ConfigError(f"{where}: {len(defaults)} participant profiles are marked default ({names}); keep one")
    participant = defaults[0]
    rtps = next(iter(_children(participant, "rtps")), None)
    used: list[Transport] = []
    builtin = True
    if rtps is not None:
        for group in _children(rtps, "userTransports"):
            for ref in _children(group, "transport_id"):
                name = _text(ref)
                if name not in transports:
                    known = ", ".join(repr(t) for t in transports) or "none"
                    raise ConfigError(
                        f"{where}: the default participant uses transport {name!r}, which is not declared (declared: {known})"
                    )
                used.append(transports[name])
        flag = next(iter(_children(rtps, "useBuiltinTransports")), None)
        if flag is not None:
            word = _text(flag)
            value = _bool(word)
            if value is None:
                raise ConfigError(f"{where}: <useBuiltinTransports>{_shown(word)}</useBuiltinTransports> is not true or false")
            builtin = value
    if not builtin and not used:
        raise ConfigError(
            f"{where}: useBuiltinTransports is false and the default participant has no userTransports: no transport at all"
        )
    return Profile(file.resolve(), participant.get("profile_name", ""), tuple(used), builtin)


def shipped_profile(name: str) -> Path:
    """The path of the shipped profile ``name`` (``large_images``), in a checkout or an install."""
    found = find_resource("config", SHIPPED_PROFILES[name])
    if found is None:
        looked = ", ".join(str(d) for d in resource_dirs("config"))
        raise ConfigError(f"the shipped transport profile config/{SHIPPED_PROFILES[name]} was not found (looked in {looked})")
    return found


def resolve_profile(spec: str) -> Path | None:
    """``spec`` as a launch argument or option gives it: empty or ``none`` for no profile, a shipped
    name (``large_images``) or a path."""
    spec = spec.strip()
    if spec.lower() in NO_PROFILE_WORDS:
        return None
    if spec in SHIPPED_PROFILES:
        return shipped_profile(spec)
    if os.sep not in spec and not spec.endswith(".xml") and not Path(spec).exists():
        names = ", ".join(SHIPPED_PROFILES)
        raise ConfigError(f"transport profile {spec!r} is neither a shipped profile ({names}) nor a file")
    return Path(spec).expanduser()


def _uses_fastdds(environ: Mapping[str, str]) -> bool:
    """Whether the RMW the process will load is Fast DDS (the default RMW of Jazzy and Kilted)."""
    return environ.get("RMW_IMPLEMENTATION", "").strip() in ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def check_transport_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The node's start-up check: None when the Fast DDS profile files named in ``environ`` (default
    ``os.environ``) are ones Fast DDS would apply, else one line naming the variable, the file and
    what is wrong. Unset or empty variables, and another RMW than Fast DDS (which does not read
    them), are fine. Call it before ``rclpy.init``: the participant is created from the profile then."""
    environ = os.environ if environ is None else environ
    if not _uses_fastdds(environ):
        return None
    for var in PROFILE_VARIABLES:
        value = environ.get(var, "")
        if not value:
            continue
        try:  # a file the robot exports for other reasons may set only writer/reader defaults
            validate_profile(value, require_participant=False)
        except ConfigError as exc:
            return f"{var}: {exc}"
    return None


def transport_environment(spec: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables to add to the node process's environment for the profile ``spec`` (see
    ``resolve_profile``): both profile variables set to the validated file's absolute path. An empty
    ``spec`` adds nothing, and the profile the environment already names (exported in the shell that
    starts the launch) is checked instead. Raises ConfigError, before anything starts, for a bad
    file, or for a profile given while ``RMW_IMPLEMENTATION`` is another RMW, which would ignore it."""
    environ = os.environ if environ is None else environ
    path = resolve_profile(spec)
    if path is None:
        problem = check_transport_environment(environ)
        if problem:
            raise ConfigError(problem)
        return {}
    if not _uses_fastdds(environ):
        raise ConfigError(
            f"transport profile {spec!r} is a Fast DDS profile, but RMW_IMPLEMENTATION={environ['RMW_IMPLEMENTATION']} "
            "does not read it; see README 'Large images over DDS' for other RMWs"
        )
    profile = validate_profile(path)
    return {var: str(profile.path) for var in PROFILE_VARIABLES}


def describe_environment(environ: Mapping[str, str] | None = None) -> str:
    """One line saying which transports a process started with ``environ`` gets, for start-up logs."""
    environ = os.environ if environ is None else environ
    if not _uses_fastdds(environ):
        return f"transport: {environ['RMW_IMPLEMENTATION']} (no Fast DDS profile applies)"
    for var in PROFILE_VARIABLES:
        if environ.get(var):
            try:
                return f"transport: {validate_profile(environ[var]).text()} ({var})"
            except ConfigError as exc:
                return f"transport: {exc}"
    builtin = environ.get("FASTDDS_BUILTIN_TRANSPORTS", "")
    localhost = environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip().upper() == "LOCALHOST"
    if builtin and localhost:
        # rmw_fastrtps turns the builtin transports off for LOCALHOST and adds its own (SHM 512 KB + UDPv4);
        # Fast DDS reads FASTDDS_BUILTIN_TRANSPORTS only while they are on
        return (
            f"transport: Fast DDS defaults; FASTDDS_BUILTIN_TRANSPORTS={builtin} is ignored "
            "under ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST"
        )
    if builtin:
        return f"transport: Fast DDS builtin transports {builtin} (FASTDDS_BUILTIN_TRANSPORTS)"
    return (
        "transport: Fast DDS defaults (SHM segment 512 KB + UDPv4: best-effort images over 512 KB lose frames between processes)"
    )
