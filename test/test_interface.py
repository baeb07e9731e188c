"""The networks the tracker runs all provide the members ``TrackedModel`` declares."""

from __future__ import annotations

import pytest

from ckd_ros.errors import ConfigError
from ckd_ros.model import TrackedModel, build_model, load_variant
from ckd_ros.tracker import CKDTracker
from ckd_ros.train.network import CKDTrainingNet, TeacherNet

METHODS = ("stack_branches", "quantize_int8", "__call__", "parameters", "to", "eval")


def test_ckdnet_and_the_teachers_have_every_declared_member():
    declared = set(TrackedModel.__annotations__)
    assert declared == {"cfg", "fused_attention"}
    net = CKDTrainingNet(load_variant("ckd_tiny"))
    for model in (build_model("ckd_tiny"), TeacherNet(net, "rgb"), TeacherNet(net, "tir")):
        assert all(callable(getattr(model, name, None)) for name in METHODS), type(model).__name__
        assert model.cfg.search_feat > 0
        CKDTracker(model)  # sets fused_attention, the one declared attribute the tracker writes
        assert model.fused_attention is False


def test_a_switch_a_network_cannot_honour_is_refused_in_one_line():
    teacher = TeacherNet(CKDTrainingNet(load_variant("ckd_tiny")), "tir")
    with pytest.raises(ConfigError, match="TIR teacher"):
        teacher.quantize_int8()
    teacher.stack_branches(False)  # switching a fast path off is always possible
