"""Attach a hand rotation (from HandIKNet) to the body's wrist without twist artefacts.

The hand's world rotation fixes the rotation C that the forearm and wrist must make below
the elbow bone (``lowerarm01``). Putting all of C into the wrist bone twists the wrist skin
alone ("candy wrapper"), and a hand estimated upside down would flip the forearm. Instead C
is split as ``C = S @ T(phi)``: T a twist about the forearm's axis and S the smallest rotation
that bends the hand (no twist). The twist is shared half and half by ``lowerarm01`` (added
after its elbow rotation) and the twist bone ``lowerarm02``, as the radius turns about the
ulna along the whole forearm; the wrist carries only the bend. Measured on Anny's skinning
weights, a 90-degree twist then keeps the forearm's cross-section within 6% of its rest
radius at the elbow, mid-forearm and wrist, where twisting one bone pinches it by 14-20%.
The twist is limited to the forearm's pronation/supination range and the bend to the
wrist's range; what a limit removes is not forced onto another bone.
"""

from __future__ import annotations

import math

import roma
import torch

from fullcap.bodymodel.lbs import world_rotation
from fullcap.bodymodel.model import BodyModel

TWIST_LIMIT = math.radians(100.0)  # forearm pronation/supination from the reference pose
BEND_LIMIT = math.radians(85.0)  # wrist flexion/extension and deviation


def _min_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest rotations (B, 3, 3) taking unit vectors a (B, 3) onto b (B, 3)."""
    axis = torch.linalg.cross(a, b)
    sin = axis.norm(dim=-1, keepdim=True)
    cos = (a * b).sum(-1, keepdim=True)
    angle = torch.atan2(sin, cos)
    unit = axis / sin.clamp(min=1e-12)
    return roma.rotvec_to_rotmat(unit * angle)


def forearm_axis(
    model: BodyModel, betas: torch.Tensor | None, side: str, joints: torch.Tensor | None = None
) -> torch.Tensor:
    """Unit forearm direction (B, 3) in the reference pose, from the twist bone to the wrist.
    ``joints``: the model's joints for ``betas`` in the reference pose, when already at hand
    (``model(betas=betas, return_vertices=False).joints``); otherwise the wrist's offset from
    its parent, :meth:`BodyModel.reference_offset`, which needs no forward pass."""
    i_twist = model.bone_names.index(f"lowerarm02.{side}")
    i_wrist = model.bone_names.index(f"wrist.{side}")
    if joints is not None:
        axis = joints[:, i_wrist] - joints[:, i_twist]
    elif model.bone_parents[i_wrist] == i_twist:  # no forward pass needed
        axis = model.reference_offset(betas, i_wrist)
    else:
        joints = model(betas=betas, return_vertices=False).joints
        axis = joints[:, i_wrist] - joints[:, i_twist]
    return axis / axis.norm(dim=-1, keepdim=True)


def attach_hand(
    model: BodyModel,
    global_orient: torch.Tensor,
    pose: torch.Tensor,
    hand_rotation: torch.Tensor,
    side: str,
    betas: torch.Tensor | None = None,
    rest_joints: torch.Tensor | None = None,
) -> torch.Tensor:
    """New pose (B, J-1, 3, 3) whose ``side`` hand has world rotation ``hand_rotation``.

    Args:
        global_orient: (B, 3, 3), pose: (B, J-1, 3, 3): the body's pose (model convention).
        hand_rotation: (B, 3, 3) wanted world rotation A of bone ``wrist.{side}``, in the same
            frame as ``global_orient`` (e.g. camera axes).
        side: "L" or "R".
        betas: shape, for the forearm axis (None: default body).
        rest_joints: the joints for ``betas`` in the reference pose if already computed (see
            :func:`forearm_axis`).
    """
    if side not in ("L", "R"):
        raise ValueError(f"side must be 'L' or 'R', got {side!r}")
    names = model.bone_names
    i_lower, i_twist, i_wrist = (
        names.index(f"{b}.{side}") for b in ("lowerarm01", "lowerarm02", "wrist")
    )
    full = torch.cat([global_orient[:, None], pose], dim=1)
    lower = world_rotation(full, model.bone_parents, i_lower)
    # Wanted combined rotation below lowerarm01: A_lower @ C = hand_rotation.
    c = lower.transpose(-1, -2) @ hand_rotation
    a = forearm_axis(model, betas, side, rest_joints).expand(c.shape[0], 3)
    swing = _min_rotation(a, (c @ a[..., None])[..., 0])
    twist = swing.transpose(-1, -2) @ c  # fixes a: a pure twist about the forearm
    angle = (roma.rotmat_to_rotvec(twist) * a).sum(-1)
    angle = angle.clamp(-TWIST_LIMIT, TWIST_LIMIT)
    swing_vec = roma.rotmat_to_rotvec(swing)
    swing_angle = swing_vec.norm(dim=-1, keepdim=True)
    swing_vec = swing_vec * (swing_angle.clamp(max=BEND_LIMIT) / swing_angle.clamp(min=1e-12))
    swing = roma.rotvec_to_rotmat(swing_vec)
    half = roma.rotvec_to_rotmat(a * (angle[:, None] / 2))
    full_twist = half @ half
    new = pose.clone()
    new[:, i_lower - 1] = pose[:, i_lower - 1] @ half
    new[:, i_twist - 1] = half
    new[:, i_wrist - 1] = full_twist.transpose(-1, -2) @ swing @ full_twist
    return new
