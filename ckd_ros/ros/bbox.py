"""vision_msgs' BoundingBox2D (centre and size) ↔ the core's top-left (x, y, w, h).

Free of ROS imports on purpose: the node converts rclpy's messages and the bag tools convert
rosbags' message classes, and both have the same field names, so one pair of functions keeps the
corner/centre convention in a single place for the live and the recorded paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the geometry module imports torch; the bag tools need only the alias
    from ckd_ros.tracker.geometry import Box


def centered_box(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
    """The (x, y, w, h) box of size ``w`` x ``h`` centred on (``cx``, ``cy``): the inverse of ``box_center``."""
    w, h = float(w), float(h)
    return float(cx) - w / 2, float(cy) - h / 2, w, h


def bbox_box(bbox: Any) -> Box:
    """(x, y, w, h) of any object shaped like vision_msgs/BoundingBox2D (``center.position``, ``size_x/y``)."""
    return centered_box(bbox.center.position.x, bbox.center.position.y, bbox.size_x, bbox.size_y)


def box_center(box: Any) -> tuple[float, float, float, float]:
    """(centre x, centre y, w, h) of an (x, y, w, h) box: the fields a BoundingBox2D is built from."""
    x, y, w, h = (float(v) for v in box)
    return x + w / 2, y + h / 2, w, h
