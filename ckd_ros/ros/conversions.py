"""ROS messages ↔ the core's plain types. No cv_bridge: image buffers are read with NumPy directly
(zero copy), which also works where cv_bridge is missing or broken."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesisWithPose

from ckd_ros.preprocess import RawImage, encode
from ckd_ros.preprocess.compressed import decode_compressed
from ckd_ros.ros.bbox import bbox_box, box_center
from ckd_ros.tracker.geometry import Box


def raw_image(msg: Image | CompressedImage) -> RawImage:
    """An ``Image``'s buffer as is (a view), or a ``CompressedImage`` decoded: called in the worker
    thread, so decoding never holds up the executor."""
    if isinstance(msg, CompressedImage):
        image, encoding = decode_compressed(msg.data, msg.format)
        return RawImage(
            image,
            image.shape[0],
            image.shape[1],
            encoding,
            image.shape[1] * image.itemsize * (image.size // image.shape[0] // image.shape[1]),
        )
    return RawImage(msg.data, msg.height, msg.width, msg.encoding, msg.step, bool(msg.is_bigendian))


def compressed_msg(
    array: np.ndarray, encoding: str, codec: str = "jpeg", header: Header | None = None, quality: int = 90
) -> CompressedImage:
    """A CompressedImage as image_transport's compressed plugin writes it (``format`` "<encoding>;
    <codec> compressed <target>"), from an (H, W[, C]) array in ``encoding`` (rgb8, mono8, mono16...)."""
    import cv2

    if codec not in ("jpeg", "png"):
        raise ValueError(f"codec {codec!r} is not jpeg or png")
    image = array[:, :, ::-1] if encoding == "rgb8" else array  # OpenCV writes BGR
    target = "bgr8" if encoding in ("rgb8", "bgr8") else encoding
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if codec == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if codec == "jpeg" else ".png", np.ascontiguousarray(image), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {array.shape} {array.dtype} image as {codec}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f"{encoding}; {codec} compressed {target}"
    msg.data = buf.tobytes()
    return msg


def stamp_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def image_msg(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An Image from an (H, W[, C]) array; ``data`` is set from bytes (setting an ndarray is ~1000x slower)."""
    data, step = encode(array, encoding)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding, msg.step, msg.is_bigendian = encoding, step, 0
    msg.data = data
    return msg


def box_to_bbox(box: Box) -> BoundingBox2D:
    bbox = BoundingBox2D()
    bbox.center.position.x, bbox.center.position.y, bbox.size_x, bbox.size_y = box_center(box)
    return bbox


def bbox_to_box(bbox: BoundingBox2D) -> Box:
    return bbox_box(bbox)


def detection(header: Header, box: Box, score: float, class_id: str, track_id: str) -> Detection2D:
    """A vision_msgs 4.x Detection2D: bbox centre/size in RGB pixels, one hypothesis, a track id."""
    det = Detection2D()
    det.header = header
    det.bbox = box_to_bbox(box)
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = class_id
    hyp.hypothesis.score = float(score)
    hyp.pose.pose.position.x = det.bbox.center.position.x  # the box centre, for consumers that read the pose
    hyp.pose.pose.position.y = det.bbox.center.position.y
    det.results = [hyp]
    det.id = track_id
    return det


def detection_array(header: Header, detections: Sequence[Detection2D]) -> Detection2DArray:
    arr = Detection2DArray()
    arr.header = header
    arr.detections = list(detections)
    return arr
