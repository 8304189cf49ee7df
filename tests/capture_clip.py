"""Test helpers for capture: the synthetic clips of :mod:`fullcap.synth.clip`, and an "oracle"
keypoint stage that returns their ground truth (a stand-in for DetNet; not shipped)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np
import torch

from fullcap.bodymodel.model import BodyModel
from fullcap.skeletons import BODY33, FACE68, HAND21, joint_map
from fullcap.synth.clip import Clip, make_clip
from fullcap.train.ik_data import MODEL_TO_CAMERA
from fullcap.types import Keypoints, PartKeypoints


@lru_cache(maxsize=1)
def body_model() -> BodyModel:
    """The packaged body model, loaded once per test session."""
    torch.set_num_threads(1)
    return BodyModel.load()


def random_iknet(model: BodyModel, part: str):
    """An untrained (initial) IKNet of ``part``: identity rotations, mean shape. For testing
    the plumbing where trained weights are absent."""
    from fullcap.models.iknet import IKNet, preset
    from fullcap.skeletons import BODY33_SET, HAND21_SET
    from fullcap.train.ik_data import normalise

    kp_set = BODY33_SET if part == "body" else HAND21_SET
    name = "body33" if part == "body" else "right_hand"
    with torch.no_grad():
        kp = model(return_vertices=False).keypoints[name][0]
    kp = kp[joint_map(model.keypoint_names(name), kp_set.names)] @ MODEL_TO_CAMERA.T
    ref = normalise(kp[None], part, kp_set.names)[0]
    return IKNet(preset(part, ref, kp_set.parents, width=64, depth=2)).eval()


def nearest_frame(frames: np.ndarray, max_diff: float = 12.0) -> Callable[[np.ndarray], int | None]:
    """Lookup: which clip frame an image is (mean absolute difference of 32x32 grey
    thumbnails, robust to video compression); None if none is close (e.g. a blank frame)."""

    def thumb(img: np.ndarray) -> np.ndarray:
        g = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        return cv2.resize(g, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)

    thumbs = np.stack([thumb(f) for f in frames])

    def lookup(image: np.ndarray) -> int | None:
        d = np.abs(thumbs - thumb(image)).mean((1, 2))
        i = int(d.argmin())
        return i if d[i] < max_diff else None

    return lookup


class OracleEstimator:
    """Keypoint stage returning the clip's ground truth (+ optional Gaussian noise, seeded by
    the frame so repeated calls on one frame agree): a test stand-in for DetNet.

    Args:
        clip: the ground truth; lookup: image -> frame index or None (nobody there).
        noise_px / noise_m: std of the noise on uv (pixels) and body xyz (metres).
    """

    parts = ("body", "hands", "face")

    def __init__(
        self,
        clip: Clip,
        lookup: Callable[[np.ndarray], int | None],
        noise_px: float = 0.0,
        noise_m: float = 0.0,
        seed: int = 0,
    ):
        self.clip, self.lookup = clip, lookup
        self.noise_px, self.noise_m, self.seed = noise_px, noise_m, seed
        self.calls = 0

    def __call__(self, image: np.ndarray, box: np.ndarray) -> PartKeypoints | None:
        self.calls += 1
        i = self.lookup(image)
        if i is None:
            return None
        c, rng = self.clip, np.random.default_rng([self.seed, i])
        f = image.shape[1] / c.K[0, 2] / 2  # the image may be a rescaled clip frame

        def n2(x):
            return (f * x + rng.normal(0, self.noise_px, x.shape)).astype(np.float32)

        body_xyz = c.body_cam[i] - c.body_cam[i][BODY33.index("pelvis")]
        body_xyz = body_xyz + rng.normal(0, self.noise_m, body_xyz.shape)
        body_xyz -= body_xyz[BODY33.index("pelvis")]
        out = {
            "body": Keypoints(
                BODY33, n2(c.body_uv[i]), body_xyz.astype(np.float32), np.ones(33, np.float32)
            )
        }
        for side in ("left", "right"):
            p = c.hand_cam[side][i]
            m = p[HAND21.index("middle1")]
            norm = (p - m) / np.linalg.norm(p[HAND21.index("wrist")] - m)
            uv = n2(c.hand_uv[side][i])
            out[f"{side}_hand"] = Keypoints(
                HAND21, uv, norm.astype(np.float32), np.ones(21, np.float32)
            )
            box_ = np.concatenate([uv.min(0) - 4, uv.max(0) + 4])
            out[f"{side}_hand_box"] = box_
        out["face"] = Keypoints(FACE68, n2(c.face_uv[i]), None, np.ones(68, np.float32))
        return PartKeypoints(**out)


def counter_lookup() -> Callable[[np.ndarray], int | None]:
    """Lookup for clips without images: the frame index is the number of distinct calls
    (the pipeline calls the estimator once per frame when tracking)."""
    state = {"i": -1}

    def lookup(_image: np.ndarray) -> int:
        state["i"] += 1
        return state["i"]

    return lookup


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Geodesic angle in degrees between rotation matrices (..., 3, 3)."""
    cos = (np.trace(np.swapaxes(a, -1, -2) @ b, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


__all__ = [
    "Clip",
    "OracleEstimator",
    "angle_deg",
    "body_model",
    "counter_lookup",
    "make_clip",
    "nearest_frame",
    "random_iknet",
]
