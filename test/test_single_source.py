"""Each convention or list of names has one definition, and every reader of it agrees."""

from __future__ import annotations

import math
from types import SimpleNamespace

from ckd_ros.benchmark import Timing
from ckd_ros.data.datasets import DATASETS, READERS, dataset_key
from ckd_ros.eval import protocol_of
from ckd_ros.model.config import CE_MODES
from ckd_ros.preprocess.align import ALIGN_MODES
from ckd_ros.preprocess.thermal import AGC_MODES
from ckd_ros.ros.bbox import bbox_box, box_center
from ckd_ros.ros.params import BY_NAME, yaml_text
from ckd_ros.ros.worker import LatencyStats
from ckd_ros.stats import percentile
from ckd_ros.viz import LAYOUTS


def test_node_parameters_offer_the_modes_the_code_implements():
    assert BY_NAME["ce_mode"].choices == ("", *CE_MODES)
    assert BY_NAME["thermal_agc"].choices == AGC_MODES
    assert BY_NAME["alignment"].choices == ALIGN_MODES
    assert BY_NAME["debug_layout"].choices == LAYOUTS
    assert f"# 16-bit thermal AGC ({', '.join(AGC_MODES)})" in yaml_text()


def test_dataset_names_are_the_readers_and_the_protocols():
    assert DATASETS == tuple(READERS)
    for spelling, key in (("LasHeR", "lasher"), ("RGBT-234", "rgbt234"), ("synthetic", "lasher"), ("gt_ot", "gtot")):
        assert dataset_key(spelling) == protocol_of(spelling) == key


def test_benchmarks_and_the_node_report_the_same_percentile():
    samples = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 7.0]
    stats = LatencyStats()
    for s in samples:
        stats.add(s)
    for q in (0, 50, 95, 99, 100):
        assert Timing(tuple(samples)).pct(q) == stats.pct(q) == percentile(samples, q)
        assert percentile(samples, q) in samples  # nearest rank: a latency some frame really had
    assert percentile(samples, 50) == 4.0
    assert math.isnan(LatencyStats().pct(50))


def test_bounding_box_centre_and_corner_round_trip():
    box = (10.0, -4.0, 30.0, 21.0)
    cx, cy, w, h = box_center(box)
    assert (cx, cy, w, h) == (25.0, 6.5, 30.0, 21.0)
    msg = SimpleNamespace(center=SimpleNamespace(position=SimpleNamespace(x=cx, y=cy)), size_x=w, size_y=h)
    assert bbox_box(msg) == box
