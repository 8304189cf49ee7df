"""Hand-to-body assembly: exact hand rotation, twist carried by the forearm, no flips."""

from __future__ import annotations

import math

import pytest
import roma
import torch

from fullcap.bodymodel.assemble import TWIST_LIMIT, attach_hand, forearm_axis
from fullcap.bodymodel.lbs import world_rotation, world_rotations
from fullcap.bodymodel.model import BodyModel


@pytest.fixture(scope="module")
def bm() -> BodyModel:
    return BodyModel.load()


def _body(bm, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    pose = roma.rotvec_to_rotmat(torch.randn(n, bm.num_bones - 1, 3, generator=g) * 0.15)
    go = roma.rotvec_to_rotmat(torch.randn(n, 3, generator=g))
    return go, pose


def _wrist_world(bm, go, pose, side):
    world = world_rotations(torch.cat([go[:, None], pose], 1), bm.parents, bm._levels)
    return world[:, bm.bone_names.index(f"wrist.{side}")]


def test_one_bone_world_rotation_matches_all_bones(bm):
    go, pose = _body(bm, seed=3)
    full = torch.cat([go[:, None], pose], 1)
    world = world_rotations(full, bm.parents, bm._levels)
    for name in ("root", "lowerarm01.L", "wrist.R", "toe1-1.L"):
        j = bm.bone_names.index(name)
        torch.testing.assert_close(world_rotation(full, bm.bone_parents, j), world[:, j])
    j = bm.bone_names.index("lowerarm01.L")
    assert not torch.allclose(world[:, j], full[:, j])  # the chain does matter here


def test_reference_offset_matches_the_forward_pass(bm):
    betas = torch.randn(3, 40, generator=torch.Generator().manual_seed(1))
    joints = bm(betas=betas, return_vertices=False).joints
    for name in ("wrist.L", "wrist.R", "lowerarm01.L", "upperleg01.R", "pelvis.L"):
        j = bm.bone_names.index(name)
        want = joints[:, j] - joints[:, bm.bone_parents[j]]
        torch.testing.assert_close(bm.reference_offset(betas, j), want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(  # and forearm_axis takes that path when no joints are given
        forearm_axis(bm, betas, "L"), forearm_axis(bm, betas, "L", joints), atol=1e-5, rtol=1e-4
    )
    with pytest.raises(ValueError, match="root"):
        bm.reference_offset(betas, 0)


def _twist_about_axis(rot, axis):
    return (roma.rotmat_to_rotvec(rot) * axis).sum(-1)


@pytest.mark.parametrize("side", ["L", "R"])
def test_hand_rotation_is_reached_and_wrist_has_no_twist(bm, side):
    go, pose = _body(bm)
    a = forearm_axis(bm, None, side).expand(4, 3)
    g = torch.Generator().manual_seed(1)
    bend = torch.linalg.cross(a, torch.randn(4, 3, generator=g))
    bend = bend / bend.norm(dim=-1, keepdim=True) * 0.5
    lower = bm.bone_names.index(f"lowerarm01.{side}")
    world = world_rotations(torch.cat([go[:, None], pose], 1), bm.parents, bm._levels)
    # Wanted: below lowerarm01, twist 60 degrees then bend 0.5 rad.
    c = roma.rotvec_to_rotmat(bend) @ roma.rotvec_to_rotmat(a * math.radians(60))
    target = world[:, lower] @ c
    new_pose = attach_hand(bm, go, pose, target, side)
    got = _wrist_world(bm, go, new_pose, side)
    assert torch.rad2deg(roma.rotmat_geodesic_distance(got, target)).max() < 0.05
    wrist_local = new_pose[:, bm.bone_names.index(f"wrist.{side}") - 1]
    assert _twist_about_axis(wrist_local, a).abs().max() < 1e-4
    twist_local = new_pose[:, bm.bone_names.index(f"lowerarm02.{side}") - 1]
    half = torch.full((4,), math.radians(30))
    torch.testing.assert_close(_twist_about_axis(twist_local, a), half, atol=1e-4, rtol=0)


def _wrist_section_radius(bm, vertices, joints, side):
    """Mean distance of skin vertices near the wrist joint to the forearm axis (B,)."""
    i_twist, i_wrist = (bm.bone_names.index(f"{b}.{side}") for b in ("lowerarm02", "wrist"))
    ids = bm.part_vertex_ids("body")
    axis = joints[:, i_wrist] - joints[:, i_twist]
    axis = axis / axis.norm(dim=-1, keepdim=True)
    rel = vertices[:, ids] - joints[:, i_wrist, None]
    along = (rel * axis[:, None]).sum(-1)
    radial = (rel - along[..., None] * axis[:, None]).norm(dim=-1)
    near = (along.abs() < 0.015) & (radial < 0.05)
    return (radial * near).sum(1) / near.sum(1)


def test_twist_does_not_collapse_the_wrist(bm):
    side = "L"
    go = torch.eye(3)[None]
    pose = torch.eye(3).expand(1, bm.num_bones - 1, 3, 3).clone()
    a = forearm_axis(bm, None, side)
    target = _wrist_world(bm, go, pose, side) @ roma.rotvec_to_rotmat(a * math.radians(90))
    rest = bm(global_orient=go, pose=pose)
    assembled = attach_hand(bm, go, pose, target, side)
    naive = pose.clone()
    naive[:, bm.bone_names.index(f"wrist.{side}") - 1] = roma.rotvec_to_rotmat(a * math.radians(90))
    r0 = _wrist_section_radius(bm, rest.vertices, rest.joints, side)
    out_a = bm(global_orient=go, pose=assembled)
    out_n = bm(global_orient=go, pose=naive)
    r_a = _wrist_section_radius(bm, out_a.vertices, out_a.joints, side)
    r_n = _wrist_section_radius(bm, out_n.vertices, out_n.joints, side)
    # Both reach the same hand rotation; only the naive one pinches the wrist.
    torch.testing.assert_close(_wrist_world(bm, go, assembled, side), target, atol=1e-4, rtol=0)
    assert r_a / r0 > 0.93, (r_a / r0, r_n / r0)
    assert r_n / r0 < r_a / r0 - 0.1


def test_upside_down_hand_does_not_flip_the_forearm(bm):
    side = "R"
    go, pose = _body(bm, n=2, seed=3)
    a = forearm_axis(bm, None, side).expand(2, 3)
    lower = bm.bone_names.index(f"lowerarm01.{side}")
    world = world_rotations(torch.cat([go[:, None], pose], 1), bm.parents, bm._levels)
    target = world[:, lower] @ roma.rotvec_to_rotmat(a * math.radians(179))
    new_pose = attach_hand(bm, go, pose, target, side)
    twist = _twist_about_axis(new_pose[:, bm.bone_names.index(f"lowerarm02.{side}") - 1], a)
    assert torch.isfinite(new_pose).all()
    assert twist.abs().max() <= TWIST_LIMIT / 2 + 1e-5
    with pytest.raises(ValueError, match="side must be"):
        attach_hand(bm, go, pose, target, "left")
