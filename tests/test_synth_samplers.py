"""Tests of the synthetic-data parameter samplers: limits, pose prior, hands, face, collisions."""

from __future__ import annotations

import math
import time

import pytest
import torch

from fullcap.bodymodel.model import BodyModel
from fullcap.synth.collisions import CapsuleCollider, segment_distance
from fullcap.synth.hands import HandPosePrior
from fullcap.synth.joint_limits import JointLimits, clamp_to_limits, mirror_pose, within_limits
from fullcap.synth.poses import ARCHETYPES, BodyPosePrior, sample_body_pose
from fullcap.synth.samplers import (
    ARKIT_NAMES,
    ExpressionStyle,
    ParamSampler,
    SampleParams,
    remove_yaw,
    sample_expression,
)


@pytest.fixture(scope="module")
def model() -> BodyModel:
    return BodyModel.load()


@pytest.fixture(scope="module")
def limits(model) -> JointLimits:
    return JointLimits.from_model(model)


@pytest.fixture(scope="module")
def sampler(model) -> ParamSampler:
    return ParamSampler(model)


@pytest.fixture(scope="module")
def params(sampler) -> SampleParams:
    return sampler.sample(96, torch.Generator().manual_seed(7))


def _angles(limits: JointLimits, named: dict[str, tuple[float, float, float]]) -> torch.Tensor:
    """Reference-pose angles (1, J-1, 3) with some bones set (degrees)."""
    eye = torch.eye(3).expand(1, len(limits.bone_names) - 1, 3, 3)
    a = limits.pose_to_angles(eye)
    for bone, v in named.items():
        a[0, limits.index[bone]] = torch.tensor(v) * math.pi / 180
    return a


def _global_rotations(model: BodyModel, pose: torch.Tensor) -> torch.Tensor:
    """A_c (B, J, 3, 3) = A_parent @ D_c, root identity."""
    b, n = pose.shape[0], model.num_bones
    rot = [torch.eye(3).expand(b, 3, 3)]
    for c in range(1, n):
        rot.append(rot[model.bone_parents[c]] @ pose[:, c - 1])
    return torch.stack(rot, dim=1)


def _hinge_angles(model, limits, pose, chain: dict[str, tuple[str, str, str]]) -> torch.Tensor:
    """Signed flexion (B, len(chain)) degrees of hinges from posed keypoints: the angle from
    the proximal segment to the distal one about the joint's posed flexion axis."""
    with torch.no_grad():
        kp = model(pose=pose, return_vertices=False).keypoints["body33"]
    names = model.keypoint_names("body33")
    glob = _global_rotations(model, pose)
    out = []
    for bone, (a, b, c) in chain.items():
        i = limits.index[bone]
        g = limits.frames[i]
        axis = torch.det(g) * g[:, 0]  # improper (right-side) frames flip the axis
        parent = model.bone_parents[i + 1]
        h = glob[:, parent] @ axis
        p, q, r = (kp[:, names.index(x)] for x in (a, b, c))
        t, s = q - p, r - q
        ang = torch.atan2((torch.linalg.cross(t, s) * h).sum(-1), (t * s).sum(-1))
        out.append(torch.rad2deg(ang))
    return torch.stack(out, dim=1)


_HINGES = {
    "lowerleg01.L": ("left_hip", "left_knee", "left_ankle"),
    "lowerleg01.R": ("right_hip", "right_knee", "right_ankle"),
    "lowerarm01.L": ("left_shoulder", "left_elbow", "left_wrist"),
    "lowerarm01.R": ("right_shoulder", "right_elbow", "right_wrist"),
}


# ------------------------------------------------------------------ joint limits
def test_angle_round_trip_and_reference_within(limits):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(32, limits.lower.shape[0], 3, generator=g)
    a = limits.clamp_angles(limits.lower + a * (limits.upper - limits.lower))
    pose = limits.angles_to_pose(a)
    assert torch.allclose(limits.pose_to_angles(pose), a, atol=1e-4)
    assert limits.within(pose).all()
    reference = torch.eye(3).expand(1, a.shape[1], 3, 3)
    assert limits.within(reference).all()


def test_clamp_to_limits(limits):
    wild = torch.rand(16, limits.lower.shape[0], 3, generator=torch.Generator().manual_seed(1))
    pose = limits.angles_to_pose(3 * (wild - 0.5))  # far outside the limits
    assert not limits.within(pose).all()
    clamped = clamp_to_limits(pose, limits)
    assert within_limits(clamped, limits).all()
    assert torch.allclose(clamp_to_limits(clamped, limits), clamped, atol=1e-5)


def test_mirror_involution_and_arm_raise(model, limits):
    raise_left = limits.angles_to_pose(_angles(limits, {"upperarm01.L": (0, 0, 90)}))
    mirrored = mirror_pose(raise_left, model.bone_names)
    assert torch.allclose(mirror_pose(mirrored, model.bone_names), raise_left, atol=1e-6)
    assert torch.allclose(limits.mirror(raise_left), mirrored, atol=1e-6)
    rotvec = torch.randn(2, limits.lower.shape[0], 3, generator=torch.Generator().manual_seed(2))
    twice = mirror_pose(mirror_pose(rotvec, model.bone_names), model.bone_names)
    assert torch.equal(twice, rotvec)
    with torch.no_grad():
        ref = model(return_vertices=False).keypoints["body33"][0]
        a = model(pose=raise_left, return_vertices=False).keypoints["body33"][0]
        b = model(pose=mirrored, return_vertices=False).keypoints["body33"][0]
    names = model.keypoint_names("body33")
    lw, rw = names.index("left_wrist"), names.index("right_wrist")
    assert a[lw, 2] > ref[lw, 2] + 0.3 and abs(a[rw, 2] - ref[rw, 2]) < 1e-3  # left raised
    assert b[rw, 2] > ref[rw, 2] + 0.3 and abs(b[lw, 2] - ref[lw, 2]) < 1e-3  # right raised
    flip = torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(b[rw], a[lw] * flip, atol=0.01)  # the mirror image, within 1 cm


# ------------------------------------------------------------------ samples
def test_determinism(sampler):
    a = sampler.sample(12, torch.Generator().manual_seed(3))
    b = sampler.sample(12, torch.Generator().manual_seed(3))
    c = sampler.sample(12, torch.Generator().manual_seed(4))
    for field in ("betas", "pose", "global_orient", "expression"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
        assert not torch.equal(getattr(a, field), getattr(c, field)), field
    assert a.archetype == b.archetype and a.hand_archetype == b.hand_archetype


def test_shapes_and_dtypes(model, params):
    n, j = len(params), model.num_bones
    assert params.betas.shape[0] == n and params.betas.shape[1] <= model.num_betas
    assert params.pose.shape == (n, j - 1, 3, 3)
    assert params.global_orient.shape == (n, 3, 3)
    assert params.expression.shape == (n, model.num_expressions)
    for t in (params.betas, params.pose, params.global_orient, params.expression):
        assert t.dtype == torch.float32 and t.device.type == "cpu"
    assert len(params.archetype) == len(params.hand_archetype) == n
    assert {a.split("+")[0] for a in params.archetype} <= set(ARCHETYPES)
    with torch.no_grad():  # the model accepts them as they are
        out = model(betas=params.betas[:2], pose=params.pose[:2], expression=params.expression[:2],
                    global_orient=params.global_orient[:2], return_vertices=False)  # fmt: skip
    assert torch.isfinite(out.joints).all()


def test_poses_within_limits(limits, params):
    assert limits.within(params.pose).all()
    pose, names = sample_body_pose(64, torch.Generator().manual_seed(5), limits)
    assert within_limits(pose, limits).all() and len(names) == 64


def test_rotations_valid(params):
    eye = torch.eye(3)
    for rot in (params.pose.reshape(-1, 3, 3), params.global_orient):
        assert torch.allclose(rot @ rot.transpose(-1, -2), eye.expand_as(rot), atol=1e-5)
        assert torch.allclose(torch.det(rot), torch.ones(rot.shape[0]), atol=1e-5)


def test_global_orient_upright(params):
    up = params.global_orient[:, :, 2]  # where the model's up axis goes
    assert (up[:, 2] > math.cos(math.radians(20))).all()
    heading = remove_yaw(params.global_orient)
    assert (heading[:, 1, 1] > math.cos(math.radians(20))).all()  # -Y stays forward


def test_no_hyperextension(model, limits, params):
    # the measure: a straight reference knee bends ~5 deg, a hyperextended one is negative
    bad = limits.angles_to_pose(_angles(limits, {"lowerleg01.L": (-20, 0, 0)}))
    assert _hinge_angles(model, limits, bad, {"lowerleg01.L": _HINGES["lowerleg01.L"]})[0, 0] < -15
    flex = _hinge_angles(model, limits, params.pose, _HINGES)
    assert (flex[:, :2] > -3 - 2).all(), flex[:, :2].min()  # knees: <= 3 deg, 2 deg slack
    assert (flex[:, 2:] > -5 - 2).all(), flex[:, 2:].min()  # elbows: <= 5 deg
    assert (flex[:, :2] > 60).any() and (flex[:, 2:] > 90).any()  # and they do bend


# ------------------------------------------------------------------ hands
def test_hand_prior_dip_follows_pip(limits):
    prior = HandPosePrior(limits, joint_noise=0.0)
    g = torch.Generator().manual_seed(6)
    angles, names = prior.sample(200, g, [("relaxed",)] * 200)
    assert set(names) == {"relaxed"}
    for f in range(4):  # index..pinky: DIP = 2/3 PIP (clamped at the DIP's limits)
        pip, dip = angles[:, 3 * f + 1, 0], angles[:, 3 * f + 2, 0]
        lo = limits.lower[limits.index[prior.bones[3 * f + 2] + ".L"], 0]
        assert torch.allclose(dip, (2 / 3 * pip).clamp_min(lo), atol=1e-6)
    assert (angles[:, :12, 0] >= -math.radians(20) - 1e-6).all()  # no finger bent backwards


# ------------------------------------------------------------------ face
def test_expressions(model):
    assert ARKIT_NAMES == model.expression_names
    expr = sample_expression(2000, torch.Generator().manual_seed(8))
    assert expr.shape == (2000, 52) and expr.min() >= 0 and expr.max() <= 1
    col = {n: i for i, n in enumerate(ARKIT_NAMES)}
    for a, b in (("jawLeft", "jawRight"), ("mouthLeft", "mouthRight")):
        assert (expr[:, col[a]] * expr[:, col[b]] == 0).all()
        assert (expr[:, col[a]] > 0).any() and (expr[:, col[b]] > 0).any()
    assert (expr[:, col["mouthClose"]] <= expr[:, col["jawOpen"]] + 1e-6).all()
    looks = [i for n, i in col.items() if n.startswith("eyeLook")]
    other = [i for i in range(52) if i not in looks and not ARKIT_NAMES[i].startswith("eyeBlink")]
    active = (expr[:, other] > 0).sum(1)
    assert 0.1 < (active == 0).float().mean() < 0.35  # neutral ~20 %
    assert active.float().mean() < 8  # sparse
    blink = expr[:, col["eyeBlinkLeft"]] > 0
    assert 0.05 < blink.float().mean() < 0.2
    pair = (expr[:, col["mouthSmileLeft"]] > 0) | (expr[:, col["mouthSmileRight"]] > 0)
    both_sides = (expr[:, col["mouthSmileLeft"]] > 0) & (expr[:, col["mouthSmileRight"]] > 0)
    assert both_sides.sum() > 0.6 * pair.sum()  # symmetric pairs usually move together


def test_expression_style_visible_only():
    """The expression-focused style draws only the visible actions, strongly, and more often
    than the broad default (jawOpen above 0.4 at least 1.5x as often)."""
    style = ExpressionStyle(neutral_prob=0.1, max_actions=2, level=(0.4, 1.0), visible_only=True)
    expr = sample_expression(4000, torch.Generator().manual_seed(3), None, style)
    broad = sample_expression(4000, torch.Generator().manual_seed(3))
    col = {n: i for i, n in enumerate(ARKIT_NAMES)}
    for name in ("tongueOut", "jawForward", "mouthDimpleLeft", "mouthRollUpper"):
        assert (expr[:, col[name]] == 0).all() and (broad[:, col[name]] > 0).any()
    base = [i for n, i in col.items() if not n.startswith(("eyeLook", "eyeBlink"))]
    active = expr[:, base] > 0
    assert 0.05 < (~active.any(1)).float().mean() < 0.16  # neutral ~10 %
    # every drawn single action is at 0.4 or more (composites scale their parts)
    jaw = expr[:, col["jawOpen"]]
    assert (jaw > 0.4).float().mean() > 1.5 * (broad[:, col["jawOpen"]] > 0.4).float().mean()
    with pytest.raises(ValueError, match="level"):
        ExpressionStyle(level=(0.8, 0.2))


def test_gaze_converges(model, params):
    with torch.no_grad():
        joints = model(pose=params.pose[:16], return_vertices=False).joints
    glob = _global_rotations(model, params.pose[:16])
    names = model.bone_names
    rays = []
    for side in ("L", "R"):
        c = names.index(f"eye.{side}")
        rays.append((joints[:, c], glob[:, c] @ model.reference_orient[c][:, 1]))
    (p, u), (q, v) = rays
    # closest approach of the two gaze rays lies in front of the face, and the rays nearly meet
    w = p - q
    b, d, e = (u * v).sum(-1), (u * w).sum(-1), (v * w).sum(-1)
    s = (b * e - d) / (1 - b * b).clamp_min(1e-9)
    t = (e - b * d) / (1 - b * b).clamp_min(1e-9)
    gap = ((p + s[:, None] * u) - (q + t[:, None] * v)).norm(dim=-1)
    assert (gap < 0.02).float().mean() > 0.8 and (s > 0).float().mean() > 0.8


# ------------------------------------------------------------------ collisions
def test_segment_distance():
    o, x, y = torch.zeros(3), torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0])
    z = torch.tensor([0, 0, 1.0])
    assert torch.isclose(segment_distance(o, x, y + z, x + y + z), torch.tensor(2**0.5))
    assert torch.isclose(segment_distance(o, x, 0.5 * x - y, 0.5 * x + y), torch.tensor(0.0))
    assert torch.isclose(segment_distance(o, o, 2 * x, 3 * x), torch.tensor(2.0))


def test_collider_rejects_and_accepts(model, limits):
    col = CapsuleCollider(model)
    bad = {  # the arm through the torso: the forearm into the belly, the upper arm into the chest
        "forearm": _angles(limits, {"lowerarm01.L": (90, 0, 0), "upperarm01.L": (0, 90, 0)}),
        "adducted": _angles(limits, {"upperarm01.L": (0, 0, -60), "lowerarm01.L": (10, 0, 0)}),
        "legs": _angles(limits, {"upperleg01.L": (0, 0, -45), "upperleg01.R": (0, 0, -45)}),
    }
    prior = BodyPosePrior(limits, noise=0.0)
    arch = prior.names.index("hands_on_hips")
    good = {
        "reference": _angles(limits, {}),
        "hands_on_hips": prior.keyframes[prior.first[arch]][None],
        "arms_crossed": prior.keyframes[prior.first[prior.names.index("arms_crossed")]][None],
    }
    shapes = model.sample_betas(5, generator=torch.Generator().manual_seed(9))
    shapes = torch.cat([torch.zeros(1, shapes.shape[1]), shapes])
    for name, a in bad.items():
        pose = limits.angles_to_pose(a).expand(len(shapes), -1, -1, -1)
        assert col.intersects(shapes, pose).all(), name
    for name, a in good.items():
        pose = limits.angles_to_pose(a).expand(len(shapes), -1, -1, -1)
        assert not col.intersects(shapes, pose).any(), name


def test_collider_is_cheap(model, sampler):
    col = sampler.collider
    g = torch.Generator().manual_seed(10)
    betas = model.sample_betas(256, generator=g)
    angles, _, _ = sampler.body.sample(256, g)
    pose = sampler.limits.angles_to_pose(angles)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: one thread is faster, and robust to a busy machine
    try:
        with torch.no_grad():
            hit = col.intersects(betas, pose)
            elapsed = math.inf
            for _ in range(3):
                start = time.perf_counter()
                col.intersects(betas, pose)
                elapsed = min(elapsed, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    assert elapsed < 0.256, f"{elapsed * 1000:.0f} ms for 256 samples"  # < 1 ms per sample
    assert 0.0 < hit.float().mean() < 0.4  # it rejects some of the raw prior, not most
