"""Malformed ``sensor_msgs/Image`` messages, seeded: what a broken driver, a truncated bag or a
bit flip on the wire sends. Used by the node's fuzz test and by bench/bench_node_faults.py."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from ckd_ros.ros.conversions import image_msg


def broken_image(rng: np.random.Generator, good: np.ndarray) -> Image:
    """``good`` (HxWx3 uint8) as an rgb8 or mono8 message with one or two fields broken at random:
    encoding, width/height, step, data length, endianness, or a well-formed image of another size."""
    gray = rng.random() < 0.5
    msg = image_msg(good[:, :, 0] if gray else good, "mono8" if gray else "rgb8")
    for _ in range(int(rng.integers(1, 3))):
        field = rng.choice(["encoding", "size", "step", "data", "endian", "valid_other_size"])
        if field == "encoding":
            msg.encoding = str(rng.choice(["", "yuv422", "rgb8\x00", "bayer_rggb8", "32FC1", "16UC3", "jpeg"]))
        elif field == "size":
            msg.width, msg.height = int(rng.choice([0, 1, 7, 100000, 2**31 - 1])), int(rng.choice([0, 1, 3, 99999]))
        elif field == "step":
            msg.step = int(rng.choice([0, 1, max(0, msg.step - 1), msg.step + 1, 2**31]))  # uint32 on the wire
        elif field == "data":
            cut = int(rng.integers(0, len(msg.data) + 1))
            msg.data = bytes(msg.data)[:cut] if rng.random() < 0.7 else bytes(msg.data) + bytes(int(rng.integers(1, 99)))
        elif field == "endian":
            msg.is_bigendian = 1
            msg.encoding = "16UC1"
        else:  # well-formed, but not the size the target was initialised on
            h, w = int(rng.integers(1, 90)), int(rng.integers(1, 90))
            msg = image_msg(np.ascontiguousarray(good[:h, :w, 0] if gray else good[:h, :w]), "mono8" if gray else "rgb8")
    return msg
