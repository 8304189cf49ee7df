"""Capture: frames in, typed results out (detector, tracking, keypoints, IK, assembly, 1€
filter). Import :class:`Capture` from here."""

from fullcap.capture.filters import OneEuroConfig
from fullcap.capture.pipeline import Capture, MissingComponent, validate_frame

__all__ = ["Capture", "MissingComponent", "OneEuroConfig", "validate_frame"]
