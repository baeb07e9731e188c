"""Error types shared by the core and the ROS layer.

Every mistake a user can make (a bad checkpoint, a malformed image, a box outside the frame) is
raised as one of these, with a message that names what was wrong, so the CLI can print one line
and exit non-zero, and the node can count and log it without crashing.
"""

from __future__ import annotations


class CKDError(Exception):
    """Base class of every error ckd_ros raises on purpose."""


class ConfigError(CKDError, ValueError):
    """A model variant, a YAML file or a parameter value is invalid."""


class CheckpointError(CKDError):
    """A checkpoint file cannot be read or does not fit the model."""


class InputError(CKDError, ValueError):
    """An image, a box or a tensor given to the model or tracker is malformed."""
