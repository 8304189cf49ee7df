"""Pinhole camera helpers in the OpenCV convention used by :mod:`fullcap.render`.

Camera frame: metres, x right, y down, z forward. Pixels: origin at the top-left corner of the
image, pixel (i, j) centred at (i + 0.5, j + 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["intrinsics", "orbit_camera"]


def intrinsics(width: int, height: int, fov_deg: float) -> np.ndarray:
    """Pinhole K (3, 3) float64 with vertical field of view ``fov_deg``, square pixels,
    principal point at the image centre (width / 2, height / 2) in corner-origin pixels."""
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    f = 0.5 * height / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)


def orbit_camera(
    center: Any,
    distance: float,
    azimuth_deg: float,
    elevation_deg: float,
    world_up: Sequence[float] = (0.0, 0.0, 1.0),
) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera pose of a camera orbiting ``center`` and looking at it.

    Args:
        center: (3,) world point (metres) the camera looks at; it lands on the optical axis at
            camera z = ``distance``.
        distance: camera-to-centre distance in metres (> 0).
        azimuth_deg: rotation about ``world_up`` (right-hand rule). 0 puts the camera on the -Y
            side of the centre looking towards +Y (if ``world_up`` is parallel to Y, the
            azimuth-0 camera looks towards -Z instead).
        elevation_deg: angle above the horizontal plane, in (-90, 90); positive looks down.
        world_up: (3,) world direction that appears as image up (negative v).

    Returns:
        (R, t): R (3, 3) rotation and t (3,) metres, float64, with x_cam = R @ X + t in the
        OpenCV camera frame (x right, y down, z forward).
    """
    c = np.asarray(center, dtype=np.float64).reshape(3)
    up = np.asarray(world_up, dtype=np.float64).reshape(3)
    up = up / np.linalg.norm(up)
    if distance <= 0:
        raise ValueError(f"distance must be positive, got {distance}")
    if not -90 < elevation_deg < 90:
        raise ValueError(f"elevation_deg must be in (-90, 90), got {elevation_deg}")
    fwd0 = np.array([0.0, 1.0, 0.0]) - up[1] * up  # +Y made horizontal
    if np.linalg.norm(fwd0) < 1e-6:
        fwd0 = np.array([0.0, 0.0, -1.0]) - (-up[2]) * up
    fwd0 /= np.linalg.norm(fwd0)
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    fwd_az = np.cos(a) * fwd0 + np.sin(a) * np.cross(up, fwd0)  # horizontal viewing direction
    z = np.cos(e) * fwd_az - np.sin(e) * up  # optical axis (camera -> centre)
    x = np.cross(fwd_az, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    cam_pos = c - distance * z
    return R, -R @ cam_pos
