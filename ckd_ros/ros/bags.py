"""ROS 2 bags of RGB-T sequences with the pure-Python ``rosbags`` library (no rosbag2 needed).

A bag holds ``sensor_msgs/Image`` RGB (rgb8) and thermal (mono8) topics with per-frame header
stamps (or, written with ``compressed=True`` or recorded from a robot's ``image_transport``,
``sensor_msgs/CompressedImage`` on ``<topic>/compressed``: RGB as jpeg, thermal as png), and the
ground truth as ``vision_msgs/Detection2D`` on its own topic (frames without a
valid box are skipped there). mcap by default, sqlite3 on request. vision_msgs types are registered
from the installed interface definitions, so the bags carry the real type names and hashes.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ckd_ros.data.datasets import Sequence
from ckd_ros.data.files import output_dir, removed_on_error
from ckd_ros.errors import ConfigError, InputError
from ckd_ros.ros.bbox import bbox_box, box_center

VISION_MSGS = (
    "Point2D",
    "Pose2D",
    "BoundingBox2D",
    "ObjectHypothesis",
    "ObjectHypothesisWithPose",
    "Detection2D",
    "Detection2DArray",
)


@dataclass(frozen=True)
class Topics:
    rgb: str = "/rgb/image"
    thermal: str = "/thermal/image"
    gt: str = "/ground_truth"
    frame_id: str = "camera_rgb"


DEFAULT_TOPICS = Topics()
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
JPEG_QUALITY = 90  # what image_transport's compressed plugin uses by default (80) or better
DETECTION = "vision_msgs/msg/Detection2D"


def check_rate(rate: float) -> float:
    """A stamp rate in Hz: positive and finite (inf would stamp every frame alike, NaN fails late)."""
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigError(f"rate must be a positive number of frames per second, got {rate}")
    return rate


def _vision_msgs_dir() -> Path:
    prefixes = [sys.prefix] + [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates = [Path(p, "share", "vision_msgs", "msg") for p in prefixes]
    candidates.append(Path(__file__).resolve().parents[2] / "interfaces" / "vision_msgs" / "msg")
    for c in candidates:
        if (c / "Detection2D.msg").is_file():
            return c
    raise ConfigError("vision_msgs interface definitions not found (run scripts/setup_env.sh or install vision_msgs)")


def typestore():
    """A Jazzy typestore with vision_msgs registered from its .msg files."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    folder = _vision_msgs_dir()
    types = {}
    for name in VISION_MSGS:
        types.update(get_types_from_msg((folder / f"{name}.msg").read_text(), f"vision_msgs/msg/{name}"))
    store.register(types)
    return store


def _stamp(store, t_ns: int):
    Time = store.types["builtin_interfaces/msg/Time"]
    return Time(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)


def _image(store, arr: np.ndarray, encoding: str, t_ns: int, frame_id: str):
    T = store.types
    arr = np.ascontiguousarray(arr)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    return T["sensor_msgs/msg/Image"](
        header=T["std_msgs/msg/Header"](stamp=_stamp(store, t_ns), frame_id=frame_id),
        height=arr.shape[0],
        width=arr.shape[1],
        encoding=encoding,
        is_bigendian=0,
        step=arr.shape[1] * channels,
        data=arr.reshape(-1).view(np.uint8),
    )


def _compressed(store, arr: np.ndarray, encoding: str, codec: str, t_ns: int, frame_id: str):
    from ckd_ros.ros.conversions import compressed_msg

    ros_msg = compressed_msg(arr, encoding, codec, quality=JPEG_QUALITY)
    T = store.types
    return T[COMPRESSED](
        header=T["std_msgs/msg/Header"](stamp=_stamp(store, t_ns), frame_id=frame_id),
        format=ros_msg.format,
        data=np.frombuffer(bytes(ros_msg.data), np.uint8),
    )


def _detection(store, box: np.ndarray, t_ns: int, frame_id: str):
    T = store.types
    cx, cy, w, h = box_center(box)
    bbox = T["vision_msgs/msg/BoundingBox2D"](
        center=T["vision_msgs/msg/Pose2D"](position=T["vision_msgs/msg/Point2D"](x=cx, y=cy), theta=0.0),
        size_x=w,
        size_y=h,
    )
    return T["vision_msgs/msg/Detection2D"](
        header=T["std_msgs/msg/Header"](stamp=_stamp(store, t_ns), frame_id=frame_id), results=[], bbox=bbox, id="gt"
    )


def write_sequence_bag(
    seq: Sequence,
    out: str | Path,
    rate: float = 25.0,
    storage: str = "mcap",
    topics: Topics = DEFAULT_TOPICS,
    start_ns: int = 1_700_000_000_000_000_000,
    progress: bool = False,
    with_gt: bool = True,
    compressed: bool = False,
) -> Path:
    """One sequence → one bag; frame i is stamped start + i / rate (``with_gt=False``: images only,
    like a robot's recording; ``compressed``: CompressedImage on ``<topic>/compressed``, RGB jpeg
    and thermal png, as a robot records image_transport's compressed streams). A bag that fails
    half-way (an unreadable frame, Ctrl-C) is removed: ``from-dataset`` skips bags that exist, so a
    partial one would pass for complete."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    check_rate(rate)
    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ConfigError(f"storage {storage!r} is not mcap or sqlite3")
    out = Path(out)
    if out.exists():
        raise InputError(f"{out}: already exists (a bag is a new folder)")
    output_dir(out.parent, "folder for the bag")
    store = typestore()
    gt = seq.gt.get("aligned", seq.gt.get("visible"))
    writer = Writer(out, version=9, storage_plugin=plugins[storage])
    with removed_on_error(out):
        try:
            writer.open()
        except OSError as exc:
            raise InputError(f"{out}: cannot create the bag: {exc.strerror or exc}") from None
        try:
            _write_frames(writer, store, seq, gt if with_gt else None, rate, topics, start_ns, progress, compressed)
        except BaseException:
            with suppress(Exception):  # the original error is the one to report
                writer.abort()
            raise
        writer.close()
    return out


def _write_frames(
    writer, store, seq: Sequence, gt, rate: float, topics: Topics, start_ns: int, progress: bool, compressed: bool = False
) -> None:
    from tqdm import tqdm

    suffix, kind = ("/compressed", COMPRESSED) if compressed else ("", IMAGE)
    c_rgb = writer.add_connection(topics.rgb + suffix, kind, typestore=store)
    c_tir = writer.add_connection(topics.thermal + suffix, kind, typestore=store)
    c_gt = writer.add_connection(topics.gt, DETECTION, typestore=store)
    for i, (rgb, tir) in enumerate(tqdm(seq.pairs(), total=len(seq), desc=seq.name, unit="frame", disable=not progress)):
        t = start_ns + round(i * 1e9 / rate)
        if compressed:
            msgs = (
                _compressed(store, rgb, "rgb8", "jpeg", t, topics.frame_id),
                _compressed(store, tir[:, :, 0], "mono8", "png", t, topics.frame_id),
            )
        else:
            msgs = (_image(store, rgb, "rgb8", t, topics.frame_id), _image(store, tir[:, :, 0], "mono8", t, topics.frame_id))
        writer.write(c_rgb, t, store.serialize_cdr(msgs[0], kind))
        writer.write(c_tir, t, store.serialize_cdr(msgs[1], kind))
        if gt is not None and i < len(gt) and gt[i][2] > 0 and gt[i][3] > 0:
            writer.write(c_gt, t, store.serialize_cdr(_detection(store, gt[i], t, topics.frame_id), DETECTION))


@dataclass
class BagFrames:
    """The bag's synchronized frames: raw CDR bytes per topic keyed by header stamp (ns), and the
    (height, width) each RGB message declares (to check an init box before playing)."""

    rgb: list[tuple[int, bytes]]
    thermal: list[tuple[int, bytes]]
    gt: dict[int, tuple[float, float, float, float]]
    rgb_sizes: dict[int, tuple[int, int] | None] = field(default_factory=dict)  # None: not a readable image
    transports: tuple[str, str] = ("raw", "raw")  # per stream: raw Image, or CompressedImage on <topic>/compressed
    topics: tuple[str, str] = ("", "")  # the bag topics the RGB and thermal frames came from


def read_bag(path: str | Path, topics: Topics) -> BagFrames:
    """All image and ground-truth messages of a bag. Whatever the bag library cannot read (a
    corrupt ``metadata.yaml``, a missing or truncated storage file, a message that does not
    deserialize) is an InputError naming the bag, on one line; wrong message types name the topic."""
    from rosbags.rosbag2 import Reader, ReaderError
    from rosbags.serde import SerdeError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such bag")
    store = typestore()
    rgb, tir, gt, sizes = [], [], {}, {}
    try:
        with Reader(path) as reader:
            types = {c.topic: c.msgtype for c in reader.connections}
            (rgb_topic, rgb_kind), (tir_topic, tir_kind) = (_image_topic(path, t, types) for t in (topics.rgb, topics.thermal))
            if topics.gt in types and types[topics.gt] != DETECTION:
                raise InputError(f"{path}: topic {topics.gt} carries {types[topics.gt]}, not {DETECTION}")
            conns = [c for c in reader.connections if c.topic in (rgb_topic, tir_topic, topics.gt)]
            for conn, _t, raw in reader.messages(connections=conns):
                msg = store.deserialize_cdr(raw, conn.msgtype)
                stamp = _ns(msg.header.stamp)
                if conn.topic == topics.gt:
                    gt[stamp] = bbox_box(msg.bbox)
                elif conn.topic == rgb_topic:
                    rgb.append((stamp, bytes(raw)))
                    sizes[stamp] = _declared_size(msg, rgb_kind)
                else:
                    tir.append((stamp, bytes(raw)))
    except (ReaderError, SerdeError, OSError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())  # YAML errors span lines; the CLI prints one
        raise InputError(f"{path}: not a readable ROS 2 bag: {reason}") from None
    rgb.sort(key=lambda x: x[0])
    tir.sort(key=lambda x: x[0])
    transports = tuple("compressed" if kind == COMPRESSED else "raw" for kind in (rgb_kind, tir_kind))
    return BagFrames(rgb, tir, gt, sizes, transports, (rgb_topic, tir_topic))


def _image_topic(path: Path, topic: str, types: dict[str, str]) -> tuple[str, str]:
    """The bag topic that carries ``topic``'s frames and its type: ``topic`` itself (an Image, or a
    CompressedImage named directly), else image_transport's ``<topic>/compressed``."""
    for name in (topic, topic + "/compressed"):
        if name in types:
            if types[name] not in (IMAGE, COMPRESSED):
                raise InputError(f"{path}: topic {name} carries {types[name]}, not {IMAGE} or {COMPRESSED}")
            return name, types[name]
    raise InputError(f"{path}: no topic {topic} (nor {topic}/compressed); the bag has {sorted(types)}")


def _declared_size(msg, kind: str) -> tuple[int, int] | None:
    """(height, width) of an RGB frame: the Image's fields, or the compressed file's header; None
    where the data is not an image (the node counts it as malformed when it arrives)."""
    if kind == IMAGE:
        height, width = int(msg.height), int(msg.width)
    else:
        from ckd_ros.preprocess.compressed import header_size

        try:
            _, width, height = header_size(memoryview(np.asarray(msg.data, np.uint8)))
        except InputError:
            return None
    return (height, width) if height > 0 and width > 0 else None


def _ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def pairs_by_stamp(frames: BagFrames, slop_ns: int) -> Iterator[tuple[int, bytes, bytes]]:
    """RGB frames with the thermal frame of nearest stamp within ``slop_ns``."""
    stamps = np.array([s for s, _ in frames.thermal], dtype=np.int64)
    for s, raw in frames.rgb:
        if not len(stamps):
            return
        k = int(np.argmin(np.abs(stamps - s)))
        if abs(int(stamps[k]) - s) <= slop_ns:
            yield s, raw, frames.thermal[k][1]


def _bag_frame(store, raw: bytes, kind: str, thermal: bool, agc) -> np.ndarray:
    """One frame of a bag as HxWx3 uint8 RGB: an Image's buffer or a CompressedImage decoded; a
    16-bit thermal camera through the node's AGC, so the export is what the node would have seen."""
    from ckd_ros.preprocess import decode, thermal_to_rgb8, to_rgb8
    from ckd_ros.preprocess.compressed import decode_compressed
    from ckd_ros.preprocess.encodings import ENCODINGS

    msg = store.deserialize_cdr(raw, kind)
    if kind == COMPRESSED:
        image, encoding = decode_compressed(np.asarray(msg.data, np.uint8), msg.format)
        enc = ENCODINGS[encoding]
        image = image.reshape(image.shape[0], image.shape[1], -1)
    else:
        image, enc = decode(np.asarray(msg.data, np.uint8), msg.height, msg.width, msg.encoding, msg.step, bool(msg.is_bigendian))
    if thermal or image.dtype != np.uint8:
        return thermal_to_rgb8(image, enc, agc)
    return to_rgb8(image, enc)


@dataclass
class ExportReport:
    out: Path
    frames: int
    boxes: int  # frames with a ground-truth box
    skipped: int  # pairs whose images did not decode (left out with their box)


def export_bag(
    bag: str | Path, out: str | Path, topics: Topics = DEFAULT_TOPICS, slop: float = 0.02, progress: bool = False
) -> ExportReport:
    """A recorded bag → the ``folder`` training layout: ``rgb/NNNNNN.png``, ``thermal/NNNNNN.png``
    (8-bit; 16-bit thermal through the node's default AGC) and ``groundtruth.txt`` with the
    Detection2D box of each RGB stamp (within ``slop`` s), ``NaN,NaN,NaN,NaN`` where there is none.
    RGB and thermal are paired by nearest stamp as the node's synchroniser does, and written in their
    own sizes: training registers them (``data.align``) as the node does. PNG, so a compressed
    recording is not compressed twice. A pair that does not decode is left out and counted."""
    import cv2
    from tqdm import tqdm

    from ckd_ros.preprocess.thermal import ThermalAGC

    frames = read_bag(bag, topics)
    pairs = list(pairs_by_stamp(frames, int(slop * 1e9)))
    if not pairs:
        raise InputError(f"{bag}: no RGB/thermal pairs within {slop} s on {frames.topics[0]} and {frames.topics[1]}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists (the export writes a new folder)")
    store = typestore()
    kinds = [COMPRESSED if t == "compressed" else IMAGE for t in frames.transports]
    gt_stamps = np.array(sorted(frames.gt), dtype=np.int64)
    agc = ThermalAGC()
    rows, skipped = [], 0
    with removed_on_error(out):
        rgb_dir, tir_dir = output_dir(out / "rgb", "RGB image folder"), output_dir(out / "thermal", "thermal image folder")
        for stamp, raw_rgb, raw_tir in tqdm(pairs, desc=Path(bag).name, unit="pair", disable=not progress):
            try:
                rgb = _bag_frame(store, raw_rgb, kinds[0], False, agc)
                tir = _bag_frame(store, raw_tir, kinds[1], True, agc)
            except InputError:
                skipped += 1
                continue
            name = f"{len(rows):06d}.png"
            if not (
                cv2.imwrite(str(rgb_dir / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                and cv2.imwrite(str(tir_dir / name), tir[:, :, 0])
            ):
                raise InputError(f"{out}: cannot write {name}")
            box = None
            if len(gt_stamps):
                k = int(np.argmin(np.abs(gt_stamps - stamp)))
                if abs(int(gt_stamps[k]) - stamp) <= slop * 1e9:
                    box = frames.gt[int(gt_stamps[k])]
            rows.append("NaN,NaN,NaN,NaN" if box is None else ",".join(f"{v:.2f}" for v in box))
        if not rows:
            raise InputError(f"{bag}: none of {len(pairs)} RGB/thermal pairs decodes")
        (out / "groundtruth.txt").write_text("\n".join(rows) + "\n")
    return ExportReport(out, len(rows), sum(not r.startswith("NaN") for r in rows), skipped)
