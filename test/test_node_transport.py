"""The camera link through the node: compressed RGB and 16-bit thermal streams, malformed compressed
frames, and frames that never arrived (counted from the stamps, WARN in /diagnostics)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import test_node
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CompressedImage
from test_node import RELIABLE

from ckd_ros.ros.conversions import compressed_msg, image_msg

pytestmark = pytest.mark.ros
Graph, wait_for = test_node.Graph, test_node.wait_for
graph = test_node.graph  # the same fixture as test_node's
INIT = [50.0, 40.0, 40.0, 30.0]


def stamped(msg, sec: int, nanosec: int = 0):
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    return msg


def test_compressed_rgb_and_16_bit_thermal_track_like_the_raw_streams(graph):
    raw = graph(init_box=INIT, qos_reliability="reliable")
    frames = [raw.frame() for _ in range(6)]
    thermal = [(f[:, :, 0].astype(np.uint16) * 200 + 1000) for f in frames]
    for i, (f, t) in enumerate(zip(frames, thermal)):
        raw.publish(image_msg(f, "rgb8"), image_msg(t, "mono16"), stamp=200 + i)
        time.sleep(0.05)
    assert wait_for(lambda: len(raw.dets) >= 6)
    raw_boxes = [(d.bbox.center.position.x, d.bbox.center.position.y) for d in raw.dets]
    raw.close()
    g = graph(init_box=INIT, qos_reliability="reliable", rgb_transport="compressed", thermal_transport="compressed")
    pub_rgb = g.peer.create_publisher(CompressedImage, "rgb/image/compressed", RELIABLE)
    pub_tir = g.peer.create_publisher(CompressedImage, "thermal/image/compressed", RELIABLE)
    assert wait_for(lambda: pub_rgb.get_subscription_count() >= 1 and pub_tir.get_subscription_count() >= 1)
    assert g.pub_rgb.get_subscription_count() == 0  # the raw topics are not subscribed
    for i, (f, t) in enumerate(zip(frames, thermal)):
        pub_rgb.publish(stamped(compressed_msg(f, "rgb8", "png"), 200 + i))
        pub_tir.publish(stamped(compressed_msg(t, "mono16", "png"), 200 + i))
        time.sleep(0.05)
    assert wait_for(lambda: len(g.dets) >= 6)
    got = [(d.bbox.center.position.x, d.bbox.center.position.y) for d in g.dets]
    assert got == raw_boxes  # PNG is lossless: the same boxes as the raw streams
    for i, f in enumerate(frames[:3]):  # JPEG RGB: tracked, boxes near the raw ones
        pub_rgb.publish(stamped(compressed_msg(f, "rgb8", "jpeg"), 300 + i))
        pub_tir.publish(stamped(compressed_msg(thermal[i], "mono16", "png"), 300 + i))
        time.sleep(0.05)
    assert wait_for(lambda: len(g.dets) >= 9) and g.diag().get("malformed", "0") == "0"


def test_malformed_compressed_frames_are_counted_never_fatal(graph):
    g = graph(init_box=INIT, qos_reliability="reliable", rgb_transport="compressed")
    pub_rgb = g.peer.create_publisher(CompressedImage, "rgb/image/compressed", RELIABLE)
    assert wait_for(lambda: pub_rgb.get_subscription_count() >= 1)
    good = g.frame()
    bad = []
    for fmt, data in (
        ("rgb8; jpeg compressed bgr8", b"\xff\xd8 truncated"),
        ("theora", compressed_msg(good, "rgb8").data),
        ("mono16; png compressed mono16", compressed_msg(good[:, :, 0], "mono8", "png").data),
    ):
        m = CompressedImage(format=fmt)
        m.data = bytes(data)
        bad.append(m)
    for i, m in enumerate([*bad, compressed_msg(good, "rgb8")]):
        pub_rgb.publish(stamped(m, 400 + i))
        g.pub_tir.publish(stamped(image_msg(good[:, :, 0], "mono8"), 400 + i))
        time.sleep(0.1)
    assert wait_for(lambda: g.diag().get("malformed") == "3" and len(g.dets) >= 1, 5)
    assert g.node.worker.is_alive() and g.diag()["errors"] == "0"
    assert "theora" in g.diag()["last_failure"] or "mono16" in g.diag()["last_failure"]


def test_frames_that_never_arrived_are_counted_and_warned_about(graph):
    g = graph(init_box=INIT, qos_reliability="reliable", input_loss_warn=0.1)
    period_ns = 33_333_333
    for i in range(61):  # frames 2, 5, ..., 59 dropped; frame 60 shows the last gap
        sec, nanosec = divmod(1_000 * 10**9 + i * period_ns, 10**9)
        f = g.frame()
        if i % 3 != 2:  # the RGB driver drops every third frame
            g.pub_rgb.publish(stamped(image_msg(f, "rgb8"), sec, nanosec))
        g.pub_tir.publish(stamped(image_msg(f[:, :, 0], "mono8"), sec, nanosec))
        time.sleep(0.02)
    assert wait_for(lambda: g.diag().get("rgb_lost_total") == "20", 5), {k: v for k, v in g.diag().items() if "rgb" in k}
    d = g.diag()
    assert abs(float(d["rgb_loss"]) - 1 / 3) < 0.02 and d["thermal_loss"] == "0.000" and d["thermal_lost_total"] == "0"
    assert abs(float(d["rgb_period_ms"]) - 33.3) < 1.0
    status = g.diags[-1].status[0]
    assert status.level == DiagnosticStatus.WARN and "rgb camera's frames never arrived" in status.message
    assert "Large images over DDS" in status.message
