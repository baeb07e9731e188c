"""The contract between a tracker and the network it runs.

``CKDTracker`` works with more than one network: the two-branch CKD inference model (``CKDNet``)
and the single-modality teachers used as evaluation baselines (``train/network.py``'s
``TeacherNet``). Before this protocol, what the tracker touched on them was implicit, so a new
network learned the contract by failing at run time. It is a structural ``Protocol`` rather than
a base class so that a network defined elsewhere (the trainer's) conforms by having the members,
without importing the inference package's class hierarchy.

A network that cannot honour a switch (a single branch cannot be stacked; a teacher is not
quantised) still implements it and raises ``ConfigError`` naming the reason, so a bad combination
is one line at start-up and never a silent no-op.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from torch import Tensor, nn

from ckd_ros.model.config import ModelConfig
from ckd_ros.model.head import BoxHead


class TrackedModel(Protocol):
    """What ``CKDTracker`` reads from and switches on its network (``torch.nn.Module`` members
    included, since the tracker moves the model and reads its dtype)."""

    cfg: ModelConfig
    """Crop and feature-map sizes (``template_size``, ``search_size``, ``search_feat``) and the name
    the logs show; the tracker's geometry follows them."""

    fused_attention: bool
    """Whether blocks without elimination use the fused SDPA kernel; the tracker sets it from its
    config, and a captured CUDA graph is re-captured when it changes."""

    @property
    def box_head(self) -> BoxHead:
        """The network's box head (``head.py``): the tracker decodes the box and reads the
        confidence from the network's output through it, never by the maps' names."""
        ...

    def stack_branches(self, enable: bool = True) -> None:
        """Run parallel branches as one batched computation, or go back; ConfigError where not possible."""
        ...

    def quantize_int8(self) -> None:
        """Convert for CPU int8 inference, in place and for good; ConfigError where not possible."""
        ...

    def __call__(self, template_rgb: Tensor, template_tir: Tensor, search_rgb: Tensor, search_tir: Tensor) -> dict[str, Tensor]:
        """Normalised crops in; the maps of ``box_head.OUTPUTS`` (at least) out."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...

    def eval(self) -> Any: ...
