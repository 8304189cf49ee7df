"""Frame validation and pixel rescaling of results (the capture pipeline's edges)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from fullcap.types import Keypoints, PersonResult

__all__ = ["scale_person", "validate_frame"]


def validate_frame(frame: Any) -> tuple[np.ndarray, list[str]]:
    """``frame`` as (H, W, 3) uint8 RGB (converted if needed) and notes on what was converted.

    Accepts (H, W, 3) RGB, (H, W) or (H, W, 1) grey, (H, W, 4) RGBA (alpha dropped), in
    uint8, uint16 (scaled to 8 bits) or float in [0, 1]. Raises TypeError / ValueError that
    say what was given and what is expected.
    """
    if not isinstance(frame, np.ndarray):
        raise TypeError(
            f"frame must be a numpy array (H, W, 3) uint8 RGB, got {type(frame).__name__}"
        )
    if frame.size == 0 or frame.ndim not in (2, 3) or min(frame.shape[:2]) == 0:
        raise ValueError(
            f"frame is empty or has no pixels (shape {frame.shape}); expected (H, W, 3) RGB"
        )
    notes = []
    if frame.ndim == 3 and frame.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"frame has {frame.shape[2]} channels (shape {frame.shape}); expected 3 (RGB), "
            "1 (grey) or 4 (RGBA)"
        )
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
        notes.append("16-bit image converted to 8 bits")
    elif frame.dtype.kind == "f":
        if not np.isfinite(frame).all():
            raise ValueError("frame has NaN or infinite values")
        frame = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
        notes.append("float image in [0, 1] converted to 8 bits")
    elif frame.dtype != np.uint8:
        raise ValueError(f"frame dtype {frame.dtype} is not supported; use uint8 (or uint16)")
    if frame.ndim == 2 or frame.shape[2] == 1:
        frame = np.repeat(frame.reshape(*frame.shape[:2], 1), 3, axis=2)
        notes.append("grey image converted to RGB")
    elif frame.shape[2] == 4:
        frame = frame[..., :3]
        notes.append("alpha channel dropped")
    return np.ascontiguousarray(frame), notes


def _scale_keypoints(k: Keypoints | None, f: float) -> Keypoints | None:
    return None if k is None else replace(k, uv=(k.uv * f).astype(np.float32))


def scale_person(p: PersonResult, f: float) -> PersonResult:
    """Pixels (uv, boxes) multiplied by f."""
    hands = {}
    for side in ("left_hand", "right_hand"):
        h = getattr(p, side)
        hands[side] = (
            None
            if h is None
            else replace(h, bbox=h.bbox * f, keypoints=_scale_keypoints(h.keypoints, f))
        )
    face = p.face
    if face is not None:
        face = replace(face, bbox=face.bbox * f, landmarks=_scale_keypoints(face.landmarks, f))
    return replace(p, bbox=p.bbox * f, body=_scale_keypoints(p.body, f), face=face, **hands)
