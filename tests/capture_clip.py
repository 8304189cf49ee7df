"""Test helpers for capture: a small synthetic walking clip with ground truth, and an "oracle"
keypoint stage that returns that ground truth (a stand-in for DetNet; not shipped)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import roma
import torch

from fullcap.bodymodel.model import BodyModel
from fullcap.bodymodel.poses import POSES, pose_tensor
from fullcap.skeletons import BODY33, FACE68, HAND21, joint_map
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


@dataclass
class Clip:
    """frames (T, H, W, 3) uint8 (None when not rendered); times (T,) s; K (3, 3);
    per frame ground truth: body_uv (T, 33, 2), body_cam (T, 33, 3) camera metres,
    hand_uv / hand_cam {"left", "right"} (T, 21, *), face_uv (T, 68, 2); model params:
    betas (T, K), pose (T, J-1, 3, 3), global_orient (T, 3, 3), transl (T, 3)."""

    frames: np.ndarray | None
    times: np.ndarray
    K: np.ndarray
    body_uv: np.ndarray
    body_cam: np.ndarray
    hand_uv: dict[str, np.ndarray]
    hand_cam: dict[str, np.ndarray]
    face_uv: np.ndarray
    betas: np.ndarray
    pose: np.ndarray
    global_orient: np.ndarray
    transl: np.ndarray
    vertices: np.ndarray


def walk_poses(model: BodyModel, n: int, fps: float) -> torch.Tensor:
    """(n, J-1, 3, 3): the synth walk archetype's cycle (4 keyframes per ~1.1 s), relaxed
    fingers from ``POSES['walking']``."""
    from fullcap.synth.joint_limits import default_limits
    from fullcap.synth.poses import ARCHETYPES, BodyPosePrior

    limits = default_limits()
    kf = BodyPosePrior(limits, {"walk": ARCHETYPES["walk"]}).keyframes  # (4, J-1, 3)
    s = torch.arange(n, dtype=torch.float64) / fps * (4 / 1.1)
    k = s.floor().long() % 4
    u = (s - s.floor())[:, None, None].float()
    angles = (1 - u) * kf[k] + u * kf[(k + 1) % 4]
    pose = limits.angles_to_pose(angles)
    fingers = pose_tensor(model, {k: v for k, v in POSES["walking"].items() if "finger" in k})
    is_finger = torch.tensor(["finger" in b or "metacarpal" in b for b in model.bone_names[1:]])
    return torch.where(is_finger[None, :, None, None], fingers, pose)


def make_clip(
    model: BodyModel,
    n: int = 6,
    size: tuple[int, int] = (192, 160),
    fps: float = 25.0,
    render: bool = True,
) -> Clip:
    """A person walking in place while turning (40 deg/s) and drifting sideways (0.5 m/s)."""
    from fullcap.render import Renderer, intrinsics

    w, h = size
    K = intrinsics(w, h, 50.0)
    times = np.arange(n) / fps
    pose = walk_poses(model, n, fps)
    t = torch.as_tensor(times, dtype=torch.float32)
    yaw = torch.deg2rad(-20 + 40 * t)  # turning at 40 deg/s
    zero = torch.zeros(n)
    go = MODEL_TO_CAMERA @ roma.rotvec_to_rotmat(torch.stack([zero, zero, yaw], 1))
    transl = torch.stack([-0.25 + 0.5 * t, zero + 0.05, zero + 2.8], 1)  # drifting at 0.5 m/s
    betas = torch.zeros(n, 16)
    betas[:, 0] = 0.5
    with torch.no_grad():
        out = model(betas=betas, pose=pose, global_orient=go, transl=transl)
    verts = out.vertices.numpy()

    def proj(p: np.ndarray) -> np.ndarray:
        q = p @ K.T
        return (q[..., :2] / q[..., 2:3]).astype(np.float32)

    body = out.keypoints["body33"].numpy()[:, joint_map(model.keypoint_names("body33"), BODY33)]
    hands = {
        s: out.keypoints[f"{s}_hand"].numpy()[
            :, joint_map(model.keypoint_names("right_hand"), HAND21)
        ]
        for s in ("left", "right")
    }
    face = out.keypoints["face68"].numpy()[:, joint_map(model.keypoint_names("face68"), FACE68)]
    frames = None
    if render:
        faces = model.faces.numpy()
        colors = np.full((len(verts[0]), 3), 0.8, np.float32)
        colors[model.part_labels.numpy() == model.part_names.index("head")] = (0.9, 0.7, 0.6)
        yy = np.linspace(90, 40, h, dtype=np.float32)[:, None, None]
        bg = np.broadcast_to(yy, (h, w, 3)).astype(np.uint8)
        with Renderer(w, h) as r:
            frames = np.stack([r.render(v, faces, K, colors, background=bg).rgb for v in verts])
    return Clip(
        frames=frames,
        times=times,
        K=K,
        body_uv=proj(body),
        body_cam=body,
        hand_uv={s: proj(v) for s, v in hands.items()},
        hand_cam=hands,
        face_uv=proj(face),
        betas=betas.numpy(),
        pose=pose.numpy(),
        global_orient=go.numpy(),
        transl=transl.numpy(),
        vertices=verts,
    )


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
