"""From keypoints to the whole-body model: IK networks, hand mirroring, assembly, camera fit.

- BodyIKNet takes DetNet's 33 body keypoints as they are (metres, camera axes, relative to
  the pelvis: the IKNet's input frame) and gives the root rotation (model frame -> camera
  axes), local rotations of ``BODY_IK_BONES`` and the shape.
- HandIKNet takes a RIGHT hand (relative to ``middle1``, in wrist-middle1 lengths, camera
  axes). A left hand is mirrored first (x -> -x in camera axes); its result is mirrored back
  by conjugating every rotation with ``M = diag(-1, 1, 1)``: the camera's x flip on the world
  side and the model's left/right (X) flip on the reference side. The model is left/right
  symmetric, so this turns a right hand's pose into the same pose of the left hand.
- The hand's world rotation is put on the body with :func:`fullcap.bodymodel.assemble.attach_hand`
  (twist shared by the forearm), then the finger rotations replace the body's.
- The model's translation comes from a linear least-squares fit of its keypoints to the 2D
  keypoints through the camera intrinsics.
"""

from __future__ import annotations

import numpy as np
import torch

from fullcap.bodymodel.assemble import attach_hand
from fullcap.bodymodel.model import BodyModel
from fullcap.models.iknet import HAND_IK_BONES, IKNet
from fullcap.skeletons import BODY33, HAND21, joint_map
from fullcap.types import BodyMesh, ModelParams

__all__ = [
    "DEFAULT_HAND_LENGTH_M",
    "MIRROR",
    "ModelSolver",
    "default_intrinsics",
    "mirror_rotations",
    "solve_translation",
]

# |wrist - middle1| of the body model's default shape (betas = 0), metres; used to put hands in
# metres when no body model / shape is available.
DEFAULT_HAND_LENGTH_M = 0.101
MIRROR = np.diag([-1.0, 1.0, 1.0]).astype(np.float32)


def mirror_rotations(rot: np.ndarray) -> np.ndarray:
    """``M @ rot @ M`` with M = diag(-1, 1, 1), for (..., 3, 3): a right hand's rotation as the
    left hand's (or back)."""
    return MIRROR @ rot @ MIRROR


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """(3, 3) float64 pinhole intrinsics when none are given: focal length max(W, H) pixels
    (about 53 degrees across the longer side, a typical webcam/phone), principal point at the
    image centre, corner-origin pixels."""
    f = float(max(width, height))
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)


def solve_translation(
    xyz: np.ndarray, uv: np.ndarray, K: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray | None:
    """Translation t (3,) (camera frame, metres) minimising the weighted linearised
    reprojection error of ``xyz + t`` onto ``uv``.

    Args:
        xyz: (P, 3) points in camera axes, metres, relative to some origin (e.g. the pelvis).
        uv: (P, 2) their pixels; K: (3, 3) intrinsics (no skew); weights: (P,) >= 0.
    Returns:
        t, or None when the fit is degenerate or puts the points behind the camera.
    """
    xyz = np.asarray(xyz, np.float64)
    uv = np.asarray(uv, np.float64)
    w = np.ones(len(xyz)) if weights is None else np.asarray(weights, np.float64)
    ok = np.isfinite(xyz).all(1) & np.isfinite(uv).all(1) & (w > 0)
    if ok.sum() < 2:
        return None
    xyz, uv, w = xyz[ok], uv[ok], np.sqrt(w[ok])
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    n = len(xyz)
    a = np.zeros((2 * n, 3))
    b = np.zeros(2 * n)
    # fx (x + tx) + cx (z + tz) = u (z + tz)  ->  fx tx + (cx - u) tz = u z - fx x - cx z
    a[:n, 0], a[:n, 2] = fx, cx - uv[:, 0]
    b[:n] = uv[:, 0] * xyz[:, 2] - fx * xyz[:, 0] - cx * xyz[:, 2]
    a[n:, 1], a[n:, 2] = fy, cy - uv[:, 1]
    b[n:] = uv[:, 1] * xyz[:, 2] - fy * xyz[:, 1] - cy * xyz[:, 2]
    ww = np.concatenate([w, w])
    t, *_ = np.linalg.lstsq(a * ww[:, None], b * ww, rcond=None)
    if not np.all(np.isfinite(t)) or (xyz[:, 2] + t[2]).min() <= 0:
        return None
    return t


class ModelSolver:
    """IK networks and the body model, for one person at a time (numpy in, numpy out).

    Args:
        model: the body model (its device and dtype are used).
        body_ik / hand_ik: IKNets (``config.part`` "body" / "hand") or None.
    """

    def __init__(self, model: BodyModel, body_ik: IKNet | None, hand_ik: IKNet | None):
        for net, part in ((body_ik, "body"), (hand_ik, "hand")):
            if net is not None and net.config.part != part:
                raise ValueError(f"the {part} IKNet given holds a {net.config.part} IKNet")
        self.model, self.body_ik, self.hand_ik = model, body_ik, hand_ik
        names = model.bone_names
        if body_ik is not None:
            self._body_bones = [names.index(b) for b in body_ik.config.bones]
            self._body_in = joint_map(BODY33, body_ik.config.keypoints)
        self._finger_bones = {
            side: [names.index(b.replace(".R", f".{side}")) for b in HAND_IK_BONES[1:]]
            for side in "LR"
        }
        if hand_ik is not None:
            self._hand_in = joint_map(HAND21, hand_ik.config.keypoints)
            bones = hand_ik.config.bones
            if tuple(bones) != HAND_IK_BONES:
                raise ValueError("the hand IKNet's bones differ from HAND_IK_BONES")
        self._hand_set = model.keypoint_names("right_hand")
        self._body_set = joint_map(model.keypoint_names("body33"), BODY33)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=self.model.dtype, device=self.model.device)

    # ------------------------------------------------------------------ networks
    @torch.no_grad()
    def body(self, xyz: np.ndarray) -> ModelParams:
        """BodyIKNet on BODY33 xyz (33, 3) (metres, camera axes, pelvis-relative)."""
        net = self.body_ik
        dev = next(net.parameters()).device
        x = torch.as_tensor(xyz[self._body_in], dtype=torch.float32, device=dev)[None]
        out = net(x)
        rot = out.rotations[0].to(self.model.device, self.model.dtype)
        pose = torch.eye(3, dtype=rot.dtype, device=rot.device).repeat(self.model.num_bones, 1, 1)
        pose[self._body_bones] = rot
        return ModelParams(
            betas=out.betas[0].float().cpu().numpy(),
            global_orient=pose[0].float().cpu().numpy(),
            pose=pose[1:].float().cpu().numpy(),
        )

    @torch.no_grad()
    def hand(self, xyz: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
        """HandIKNet on one hand's HAND21 xyz (21, 3) (camera axes as seen, middle1-relative,
        wrist-middle1 units); ``side`` "left"/"right". Returns the wrist's world rotation
        (3, 3) (model reference -> camera axes) and the finger rotations (15, 3, 3) of that
        side's ``HAND_IK_BONES[1:]``."""
        net = self.hand_ik
        dev = next(net.parameters()).device
        x = np.asarray(xyz, np.float32)[self._hand_in]
        if side == "left":
            x = x @ MIRROR  # as a right hand
        out = net(torch.as_tensor(x, device=dev)[None])
        rot = out.rotations[0].float().cpu().numpy()
        if side == "left":
            rot = mirror_rotations(rot)
        return rot[0], rot[1:]

    # ------------------------------------------------------------------ assembly
    @torch.no_grad()
    def attach(
        self, params: ModelParams, hands: dict[str, tuple[np.ndarray, np.ndarray]]
    ) -> ModelParams:
        """Params whose pose carries the hands: ``hands[side] = (wrist world rotation,
        finger rotations)`` for "left"/"right"."""
        if not hands:
            return params
        go = self._tensor(params.global_orient)[None]
        pose = self._tensor(params.pose)[None]
        betas = self._tensor(params.betas)[None]
        for side, (wrist, fingers) in hands.items():
            s = "L" if side == "left" else "R"
            pose = attach_hand(self.model, go, pose, self._tensor(wrist)[None], s, betas)
            pose[0, [b - 1 for b in self._finger_bones[s]]] = self._tensor(fingers)
        return ModelParams(
            betas=params.betas,
            global_orient=params.global_orient,
            pose=pose[0].float().cpu().numpy(),
            expression=params.expression,
            transl=params.transl,
        )

    @torch.no_grad()
    def pose_model(
        self,
        params: ModelParams,
        uv: np.ndarray | None = None,
        conf: np.ndarray | None = None,
        K: np.ndarray | None = None,
        observed_xyz: np.ndarray | None = None,
    ) -> tuple[ModelParams, BodyMesh, np.ndarray, float]:
        """Pose the model; fit its translation to the BODY33 pixels ``uv`` (33, 2) with
        weights ``conf`` through ``K`` when given (else keep ``params.transl`` or 0). Where the
        model's keypoints give no valid fit (e.g. behind the camera), the observed
        pelvis-relative keypoints ``observed_xyz`` (33, 3) are fitted instead.

        Returns (params with transl, mesh in the camera frame, BODY33 keypoints (33, 3) in
        the camera frame, hand length |wrist - middle1| in metres).
        """
        expr = None if params.expression is None else self._tensor(params.expression)[None]
        out = self.model(
            betas=self._tensor(params.betas)[None],
            expression=expr,
            pose=self._tensor(params.pose)[None],
            global_orient=self._tensor(params.global_orient)[None],
        )
        verts = out.vertices[0].float().cpu().numpy()
        joints = out.joints[0].float().cpu().numpy()
        body = out.keypoints["body33"][0].float().cpu().numpy()[self._body_set]
        hand = out.keypoints["right_hand"][0].float().cpu().numpy()
        n = self._hand_set
        length = float(np.linalg.norm(hand[n.index("wrist")] - hand[n.index("middle1")]))
        t = params.transl
        if uv is not None and K is not None:
            fit = solve_translation(body, uv, K, conf)
            if fit is None and observed_xyz is not None:
                fit = solve_translation(observed_xyz, uv, K, conf)
            t = fit.astype(np.float32) if fit is not None else t
        t0 = np.zeros(3, np.float32) if t is None else np.asarray(t, np.float32)
        params = ModelParams(
            betas=params.betas,
            global_orient=params.global_orient,
            pose=params.pose,
            expression=params.expression,
            transl=t,
        )
        return params, BodyMesh(vertices=verts + t0, joints=joints + t0), body + t0, length
