"""Pure functions of the whole-body model: kinematic chain and linear blend skinning.

Frames and conventions (model frame: metres, Z up, -Y forward, +X the person's left):
- Each bone c has a rest orientation R_c (from the shaped rest mesh) and a fixed reference
  orientation U_c. ``pose[c]`` is the bone's rotation D_c expressed in world-aligned axes of
  the reference pose (like SMPL's axis-angle): the posed world rotation of bone c, relative
  to its reference orientation, is ``A_c = A_parent @ D_c``; the root's is the global rotation.
- Identity poses give the "reference pose", which differs from the rest mesh (Anny's A-pose
  at rest) by the per-bone rotations ``U_c R_c^T``.
"""

from __future__ import annotations

import torch


def kinematic_levels(parents: list[int]) -> list[torch.Tensor]:
    """Bones grouped by depth (root first) so that a level's parents all lie in earlier levels."""
    depth = [0] * len(parents)
    for c, p in enumerate(parents):
        if p >= 0:
            if p >= c:
                raise ValueError("bones must be ordered parents first")
            depth[c] = depth[p] + 1
    n_levels = max(depth) + 1
    return [
        torch.tensor([c for c in range(len(parents)) if depth[c] == d]) for d in range(n_levels)
    ]


def forward_kinematics(
    rest_heads: torch.Tensor,
    rest_rot: torch.Tensor,
    ref_rot: torch.Tensor,
    pose: torch.Tensor,
    transl: torch.Tensor,
    parents: torch.Tensor,
    levels: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posed joints and skinning transforms.

    Args:
        rest_heads: (B, J, 3) bone heads of the shaped rest mesh, metres.
        rest_rot: (B, J, 3, 3) rest orientations R_c.
        ref_rot: (J, 3, 3) reference orientations U_c.
        pose: (B, J, 3, 3) world-aligned bone rotations D_c; pose[:, 0] is the global rotation.
        transl: (B, 3) where the root bone's head (the pelvis) goes.
        parents: (J,) parent index per bone, -1 for the root (index 0).
        levels: output of :func:`kinematic_levels`.
    Returns:
        joints (B, J, 3) posed bone heads; rot (B, J, 3, 3) skinning rotations G_c;
        trans (B, J, 3) skinning translations t_c, with ``x_posed = G_c x_rest + t_c``.
    """
    # Rest-to-reference rotation per bone. Offsets from a parent are turned by the parent's,
    # except for the root's children (the root as a parent counts as the identity).
    to_ref = ref_rot @ rest_rot.transpose(-1, -2)  # (B, J, 3, 3)
    as_parent = to_ref.clone()
    as_parent[:, 0] = torch.eye(3, dtype=pose.dtype, device=pose.device)
    par = parents.clamp(min=0)
    offsets = rest_heads - rest_heads[:, par]
    offsets = (as_parent[:, par] @ offsets[..., None])[..., 0]  # reference-pose bone offsets

    rot = pose.new_empty(pose.shape)
    pos = pose.new_empty(rest_heads.shape)
    root = levels[0]
    rot[:, root] = pose[:, root]
    pos[:, root] = transl[:, None, :]
    for level in levels[1:]:
        p = parents[level]
        rot[:, level] = rot[:, p] @ pose[:, level]
        pos[:, level] = pos[:, p] + (rot[:, p] @ offsets[:, level, :, None])[..., 0]
    skin_rot = rot @ to_ref
    skin_trans = pos - (skin_rot @ rest_heads[..., None])[..., 0]
    return pos, skin_rot, skin_trans


def skin(
    rest_vertices: torch.Tensor,
    skin_weights: torch.Tensor,
    rot: torch.Tensor,
    trans: torch.Tensor,
) -> torch.Tensor:
    """Linear blend skinning.

    Args:
        rest_vertices: (B, V, 3) shaped rest vertices.
        skin_weights: (V, J) dense or sparse (CSR/COO) skinning weights, rows sum to 1.
        rot: (B, J, 3, 3), trans: (B, J, 3) skinning transforms.
    Returns:
        (B, V, 3) posed vertices.
    """
    b, j = rot.shape[:2]
    mats = torch.cat([rot, trans[..., None]], dim=-1).reshape(b, j, 12)  # (B, J, 12)
    flat = mats.permute(1, 0, 2).reshape(j, b * 12)
    blended = (skin_weights @ flat).reshape(-1, b, 3, 4).permute(1, 0, 2, 3)  # (B, V, 3, 4)
    return (blended[..., :3] @ rest_vertices[..., None])[..., 0] + blended[..., 3]
