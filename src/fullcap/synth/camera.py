"""Camera and framing sampler: where the camera is, how it is rotated and how it zooms.

World frame = model frame (metres, Z up, -Y is where an unrotated person looks, floor at
z = 0). Cameras are OpenCV pinholes: ``x_cam = R @ X_world + t`` (x right, y down, z forward),
pixels ``(u, v) = (K @ x_cam)[:2] / z`` with the origin at the image's top-left corner.

A *shot* says what the image is about: ``body`` (whole person), ``upper`` (pelvis up),
``hand`` (one hand, close-up) or ``face``. The camera aims at the shot's target keypoints and
zooms so that they fill a random fraction of the image, then the target is shifted off centre
(sometimes far enough to leave part of the person outside the image).

Rigs:
- ``free``: any position around the person; field of view, elevation and roll at random.
- ``dome``: cameras on a fixed sphere around the capture centre (Panoptic/HUMBI-like);
  a close-up is a zoom (a crop of a high-resolution camera), so fields of view get narrow.
- ``fixed``: a few calibrated cameras on the walls of a room (Human3.6M-like); the person walks
  in the capture volume and the image is a crop around them (same R, t; K shifted and scaled).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fullcap.render.camera import orbit_camera

__all__ = ["SHOTS", "Camera", "CameraRig", "sample_camera", "shot_targets"]

SHOTS = ("body", "upper", "hand", "face")
_LOWER = ("knee", "ankle", "foot", "toe")


@dataclass(frozen=True)
class CameraRig:
    """How one source's cameras are placed (angles in degrees, distances in metres)."""

    kind: str = "free"  # free | dome | fixed
    fov_deg: tuple[float, float] = (30.0, 75.0)  # free rig: vertical field of view
    elevation_deg: tuple[float, float] = (-15.0, 35.0)  # positive looks down
    roll_deg: float = 10.0
    fill: tuple[float, float] = (0.6, 0.95)  # target radius / half the image side
    centre_jitter: float = 0.12  # max offset of the target from the centre, fraction of size
    p_truncate: float = 0.12  # zoom past the target and shift it: person partly outside
    face_azimuth_deg: float = 45.0  # std of the face shots' azimuth away from the front
    dome_azimuths: int = 16
    dome_elevations: tuple[float, ...] = (-10.0, 5.0, 20.0, 35.0)
    dome_radius: float = 2.6
    dome_height: float = 1.0  # height of the dome's centre above the floor
    fixed_cameras: int = 4
    fixed_radius: float = 4.5
    fixed_fov_deg: float = 47.0  # of the full (uncropped, square) camera image
    volume: float = 0.0  # half side of the square where the pelvis is placed (fixed rig)

    def __post_init__(self) -> None:
        if self.kind not in ("free", "dome", "fixed"):
            raise ValueError(f"CameraRig.kind must be 'free', 'dome' or 'fixed', got {self.kind!r}")
        lo, hi = self.fov_deg
        if not 0 < lo <= hi < 180:
            raise ValueError(
                f"CameraRig.fov_deg must satisfy 0 < lo <= hi < 180, got {self.fov_deg}"
            )
        if not 0 < self.fill[0] <= self.fill[1]:
            raise ValueError(f"CameraRig.fill must be positive and ordered, got {self.fill}")


@dataclass(frozen=True)
class Camera:
    """One sampled camera: K (3, 3) pixels, R (3, 3), t (3,) metres world -> camera, the shot,
    and the hand side of a hand shot ('left'/'right', else '')."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    shot: str
    side: str = ""
    view: int = -1  # camera index of a dome or fixed rig, -1 for free cameras

    @property
    def center(self) -> np.ndarray:
        """Camera centre (3,) in the world frame, metres."""
        return -self.R.T @ self.t


def shot_targets(
    shot: str, keypoints: dict[str, np.ndarray], body_names: list[str], side: str = "right"
) -> tuple[np.ndarray, float]:
    """World points (N, 3) a shot frames, and a margin (metres) added to their radius.

    ``keypoints`` maps the model's keypoint sets ('body33', 'left_hand', 'right_hand',
    optionally 'face68') to (P, 3) world points; ``body_names`` names the body33 rows.
    """
    body = keypoints["body33"]
    if shot == "body":
        return np.concatenate([body, keypoints["left_hand"], keypoints["right_hand"]]), 0.12
    if shot == "upper":
        keep = [i for i, n in enumerate(body_names) if not any(s in n for s in _LOWER)]
        return body[keep], 0.1
    if shot == "hand":
        return keypoints[f"{side}_hand"], 0.03
    if shot == "face":
        if "face68" in keypoints:
            return keypoints["face68"], 0.03
        idx = [body_names.index(n) for n in ("head_top", "left_eye", "right_eye", "head")]
        return body[idx], 0.05
    raise ValueError(f"unknown shot {shot!r}; shots are {SHOTS}")


def _rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _front_azimuth(facing: np.ndarray) -> float:
    """orbit_camera azimuth (degrees) that puts the camera in front of a person facing
    ``facing`` (3,) (horizontal part used)."""
    return float(np.degrees(np.arctan2(facing[0], -facing[1])))


def _look_at(center_world: np.ndarray, cam_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R, t of a camera at ``cam_pos`` looking at ``center_world`` with world Z as image up."""
    d = center_world - cam_pos
    dist = float(np.linalg.norm(d))
    horiz = np.hypot(d[0], d[1])
    el = np.degrees(np.arctan2(-d[2], horiz))
    az = np.degrees(np.arctan2(-d[0], d[1]))  # orbit_camera's fwd_az = (-sin a, cos a, 0)
    el = float(np.clip(el, -89.0, 89.0))
    return orbit_camera(center_world, dist, az, el)


def _intrinsics(size: int, f: float, jitter: np.ndarray) -> np.ndarray:
    c = size / 2 + jitter * size
    return np.array([[f, 0, c[0]], [0, f, c[1]], [0, 0, 1.0]])


def sample_camera(
    rng: np.random.Generator,
    rig: CameraRig,
    shot: str,
    keypoints: dict[str, np.ndarray],
    body_names: list[str],
    facing: np.ndarray,
    size: int,
    clearance_points: np.ndarray | None = None,
) -> Camera:
    """Sample a camera framing ``shot`` of one posed person.

    Args:
        rng: the sample's generator (the camera is deterministic given it).
        rig: the source's camera rig.
        shot: one of :data:`SHOTS`.
        keypoints: model keypoint sets, (P, 3) world metres (see :func:`shot_targets`).
        body_names: names of the body33 rows.
        facing: (3,) world direction the person faces (the pelvis' -Y axis).
        size: image side in pixels (square images).
        clearance_points: optional (N, 3) world points (e.g. a subsample of the vertices);
            free cameras closer than 10 cm to any of them are re-drawn (up to 6 times).
    Returns:
        :class:`Camera`.
    """
    if shot not in SHOTS:
        raise ValueError(f"unknown shot {shot!r}; shots are {SHOTS}")
    side = ("left", "right")[int(rng.integers(2))] if shot == "hand" else ""
    pts, margin = shot_targets(shot, keypoints, body_names, side or "right")
    lo, hi = pts.min(0), pts.max(0)
    center = (lo + hi) / 2
    radius = float(np.linalg.norm(pts - center, axis=1).max()) + margin
    truncate = rng.random() < rig.p_truncate
    fill = rng.uniform(1.0, 1.8) if truncate else rng.uniform(*rig.fill)
    reach = 0.35 if truncate else rig.centre_jitter
    jitter = rng.uniform(-reach, reach, 2)
    roll = rng.uniform(-rig.roll_deg, rig.roll_deg)
    front = _front_azimuth(facing)
    view = -1

    if rig.kind == "free":
        best = None
        for _ in range(6):
            if shot == "face":
                az = front + float(np.clip(rng.normal(0, rig.face_azimuth_deg), -100, 100))
            else:
                az = rng.uniform(0, 360)
            lo_el, hi_el = rig.elevation_deg
            if shot == "hand":
                lo_el, hi_el = lo_el - 25, hi_el + 25
            el = rng.uniform(lo_el, hi_el)
            fov = rng.uniform(*rig.fov_deg)
            dist = radius / (fill * np.tan(np.radians(fov) / 2))
            R, t = orbit_camera(center, dist, az, el)
            f = 0.5 * size / np.tan(np.radians(fov) / 2)
            clear = np.inf
            if clearance_points is not None:
                cam_pos = -R.T @ t
                clear = float(np.linalg.norm(clearance_points - cam_pos, axis=1).min())
            if best is None or clear > best[0]:
                best = (clear, R, t, f)
            if clear >= 0.1:
                break
        _, R, t, f = best
    elif rig.kind == "dome":
        azs = rng.permutation(rig.dome_azimuths) * (360.0 / rig.dome_azimuths)
        if shot == "face":  # a dome camera that sees the face
            off = np.abs((azs - front + 180) % 360 - 180)
            azs = azs[off < 80] if (off < 80).any() else azs
        az = float(azs[0])
        ie = int(rng.integers(len(rig.dome_elevations)))
        el = rig.dome_elevations[ie]
        view = round(az * rig.dome_azimuths / 360.0) + ie * rig.dome_azimuths
        a, e = np.radians(az), np.radians(el)
        dome_c = np.array([0.0, 0.0, rig.dome_height])
        cam_pos = dome_c + rig.dome_radius * np.array(
            [np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), np.sin(e)]
        )
        R, t = _look_at(center, cam_pos)
        dist = float(np.linalg.norm(center - cam_pos))
        f = fill * 0.5 * size * dist / radius
        roll = np.clip(roll, -2.0, 2.0)
    else:  # fixed: calibrated wall cameras, then a crop around the target
        k = int(rng.integers(rig.fixed_cameras))
        a = np.radians(45.0 + k * 360.0 / rig.fixed_cameras + (7.0 * k) % 11 - 5)
        height = 1.5 + 0.12 * ((k * 3) % 4)
        cam_pos = np.array([rig.fixed_radius * np.cos(a), rig.fixed_radius * np.sin(a), height])
        R, t = _look_at(np.array([0.0, 0.0, 1.0]), cam_pos)
        full = 1000.0
        f_full = 0.5 * full / np.tan(np.radians(rig.fixed_fov_deg) / 2)
        x = pts @ R.T + t
        uv = f_full * x[:, :2] / x[:, 2:3] + full / 2
        c2 = (uv.min(0) + uv.max(0)) / 2
        dist = float(np.linalg.norm(center - cam_pos))
        side_px = 2 * radius * f_full / dist / fill  # crop side in full-image pixels
        s = size / side_px
        K = np.array(
            [
                [f_full * s, 0, (full / 2 - c2[0]) * s + size / 2],
                [0, f_full * s, (full / 2 - c2[1]) * s + size / 2],
                [0, 0, 1.0],
            ]
        )
        K[:2, 2] += jitter * size
        return Camera(K=K, R=R, t=t, shot=shot, side=side, view=k)
    Rz = _rot_z(roll)
    return Camera(
        K=_intrinsics(size, f, jitter), R=Rz @ R, t=Rz @ t, shot=shot, side=side, view=view
    )
