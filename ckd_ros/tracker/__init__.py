"""Online tracking on numpy RGB-T frame pairs (docs/tracker.md).

>>> trk = CKDTracker(model, device="cpu")
>>> trk.initialize(rgb, tir, (x, y, w, h))
>>> res = trk.track(rgb, tir)      # res.box (x, y, w, h) px, res.score in [0, 1], res.lost
"""

from ckd_ros.tracker.geometry import Box, clip_box, crop_numpy, crop_torch, crop_window, hann_window, map_back
from ckd_ros.tracker.tracker import CKDTracker, TrackerConfig, TrackResult, check_box, check_pair

__all__ = [
    "Box",
    "CKDTracker",
    "TrackResult",
    "TrackerConfig",
    "check_box",
    "check_pair",
    "clip_box",
    "crop_numpy",
    "crop_torch",
    "crop_window",
    "hann_window",
    "map_back",
]
