"""Anatomical joint limits of the Anny skeleton, as swing-twist angles in per-bone frames.

Pose convention (see :mod:`fullcap.bodymodel.lbs`): ``pose[:, c - 1]`` is bone c's rotation
D_c in world axes of the reference pose (model frame: metres, Z up, -Y forward, +X the
person's left). A rotation is limited in the bone's own frame in the reference pose, the
rig's reference orientation U_c (columns: x = the bone's main bending axis, y = along the
bone towards its child, z = x cross y), so that the local rotation is ``L = U_c^T D_c U_c``.

``L`` is split into swing and twist, ``L = swing @ twist``: twist about the bone (local y),
swing about an axis in the local xz plane. A bone's **angles** are ``(flex, twist, side)``:
the swing's x component, the twist angle and the swing's z component, in radians, each times a
fixed sign (+-1, so that flexion and abduction are positive on the hip as on the shoulder),
plus a constant offset for the hinges, so that zero is the anatomical neutral:

- elbow, knee, finger and thumb joints: ``flex`` is measured from the straight joint (the
  reference pose has bent elbows, ~42 deg, and slightly curled fingers);
- neck and head: ``flex`` is measured from a level head (the reference pose looks up by
  about 8 deg, see :data:`NEUTRAL_FLEX_DEG`);
- upper arm: measured from the arm hanging straight down (the reference pose is an A-pose,
  ~40 deg of abduction): the bone's frame is rotated down by that angle, and its angles are
  those of ``D @ N^T`` with N the rotation from the reference arm to the hanging arm, so that
  flex and side are the swing's components: flex 90 points the arm forward, side 90 sideways.

Signs, left side: spine/neck/head flex > 0 bends forward, twist > 0 turns to the person's
left, side > 0 bends to the person's right; hip flex > 0 is flexion (thigh forward), side > 0
abduction, twist > 0 internal rotation; knee flex > 0 flexion; ankle flex > 0 plantar flexion;
toes flex > 0 curl down; clavicle side > 0 elevation, flex > 0 protraction; shoulder flex > 0
raises the arm forward, side > 0 sideways, twist > 0 internal rotation; elbow flex > 0
flexion; forearm (lowerarm02) twist > 0 pronation; wrist flex > 0 towards the palm, side > 0
radial deviation; fingers flex > 0 towards the palm, side > 0 towards the thumb.

Sides mirror across the YZ plane: the mirror of rotation R is ``S R S`` with
``S = diag(-1, 1, 1)`` (axis-angle: negate y and z). A right-side bone's angles are those of
its mirror image on the left, so equal angles on both sides give a mirror-symmetric pose and
the right side uses the left side's limits.
"""

from __future__ import annotations

import functools
import math

import roma
import torch

__all__ = [
    "LIMITS_DEG",
    "JointLimits",
    "angles_to_local",
    "clamp_to_limits",
    "default_limits",
    "local_to_angles",
    "mirror_pose",
    "rotation_between",
    "within_limits",
]

Range = tuple[float, float]

MAX_SWING_DEG = 170.0  # swings are capped below 180 deg, where swing-twist is singular


def _fingers() -> dict[str, tuple[Range, Range, Range]]:
    out: dict[str, tuple[Range, Range, Range]] = {}
    for f in range(2, 6):
        out[f"finger{f}-1.L"] = ((-20, 90), (-5, 5), (-20, 20))  # MCP
        out[f"finger{f}-2.L"] = ((0, 110), (0, 0), (0, 0))  # PIP: hinge
        out[f"finger{f}-3.L"] = ((-5, 80), (0, 0), (0, 0))  # DIP: hinge
    for m in range(1, 5):  # palm arch: only the ring and little metacarpals move, slightly
        out[f"metacarpal{m}.L"] = ((0, 5 * (m - 1)), (0, 0), (-2 * (m - 1), 2 * (m - 1)))
    out["finger1-1.L"] = ((-30, 45), (-10, 25), (-20, 50))  # thumb CMC
    out["finger1-2.L"] = ((-10, 60), (-5, 5), (-10, 15))  # thumb MCP
    out["finger1-3.L"] = ((-15, 80), (0, 0), (0, 0))  # thumb IP: hinge
    return out


def _toes() -> dict[str, tuple[Range, Range, Range]]:
    out: dict[str, tuple[Range, Range, Range]] = {}
    for t in range(1, 6):
        out[f"toe{t}-1.L"] = ((-50, 30), (0, 0), (-5, 5))
        out[f"toe{t}-2.L"] = ((-5, 40), (0, 0), (0, 0))
        out[f"toe{t}-3.L"] = ((-5, 40), (0, 0), (0, 0))
    return out


# (flex, twist, side) ranges in degrees, in the angle convention of the module docstring, for
# the left-side and centre bones; bones not listed (pelvis.L/R) do not move.
LIMITS_DEG: dict[str, tuple[Range, Range, Range]] = {
    "spine05": ((-15, 30), (-10, 10), (-10, 10)),
    "spine04": ((-15, 25), (-10, 10), (-12, 12)),
    "spine03": ((-15, 25), (-15, 15), (-12, 12)),
    "spine02": ((-12, 20), (-15, 15), (-10, 10)),
    "spine01": ((-10, 15), (-12, 12), (-8, 8)),
    "neck01": ((-20, 25), (-25, 25), (-15, 15)),
    "neck02": ((-15, 15), (-20, 20), (-12, 12)),
    "neck03": ((-15, 15), (-20, 20), (-12, 12)),
    "head": ((-20, 25), (-20, 20), (-12, 12)),
    "eye.L": ((-25, 25), (0, 0), (-30, 30)),
    "upperleg01.L": ((-30, 125), (-50, 40), (-25, 50)),  # hip
    "upperleg02.L": ((0, 0), (-15, 15), (0, 0)),  # thigh twist bone
    "lowerleg01.L": ((-3, 150), (-5, 5), (-2, 2)),  # knee: hinge, <= 3 deg hyperextension
    "lowerleg02.L": ((0, 0), (-10, 10), (0, 0)),  # shin twist bone
    "foot.L": ((-25, 45), (-20, 20), (-20, 20)),  # ankle
    "clavicle.L": ((-15, 20), (-10, 10), (-10, 30)),
    "shoulder01.L": ((-10, 10), (-5, 5), (-10, 20)),
    "upperarm01.L": ((-60, 170), (-80, 80), (-30, 170)),  # glenohumeral, from hanging
    "upperarm02.L": ((0, 0), (-30, 30), (0, 0)),  # upper-arm twist bone
    "lowerarm01.L": ((-5, 150), (0, 0), (0, 0)),  # elbow: hinge, <= 5 deg hyperextension
    "lowerarm02.L": ((0, 0), (-85, 80), (0, 0)),  # forearm twist bone: pronation > 0
    "wrist.L": ((-70, 80), (-10, 10), (-35, 20)),
    **_fingers(),
    **_toes(),
}

# Reference-pose bend (degrees) to remove from the flex angle: the reference head looks up.
NEUTRAL_FLEX_DEG = {"neck01": 2.4, "neck02": 1.6, "neck03": 1.6, "head": 2.4}

# Bones whose (flex, twist, side) signs are flipped from the raw swing-twist angles.
SIGNS = {"upperleg01.L": (-1.0, 1.0, -1.0)}

# Bones whose flex angle is measured from the straight joint (offset from the reference pose).
HINGES = (
    "lowerarm01.L",
    "lowerleg01.L",
    *(f"finger{f}-{k}.L" for f in range(1, 6) for k in (1, 2, 3) if (f, k) != (1, 1)),
)


def mirror_name(name: str) -> str:
    """Name of the mirror-image bone (``x.L`` <-> ``x.R``); centre bones map to themselves."""
    if name.endswith(".L"):
        return name[:-2] + ".R"
    if name.endswith(".R"):
        return name[:-2] + ".L"
    return name


def _left_name(name: str) -> str:
    return name[:-2] + ".L" if name.endswith(".R") else name


# ------------------------------------------------------------------ swing-twist maths
def local_to_angles(rot: torch.Tensor) -> torch.Tensor:
    """Swing-twist angles (..., 3) = (swing x, twist about y, swing z), radians, of local
    rotations (..., 3, 3); twist in [-pi, pi], swing of norm <= pi."""
    q = roma.rotmat_to_unitquat(rot)  # xyzw
    q = torch.where(q[..., 3:] < 0, -q, q)
    twist = 2 * torch.atan2(q[..., 1], q[..., 3])
    half = 0.5 * twist
    zero = torch.zeros_like(half)
    q_twist_inv = torch.stack([zero, -torch.sin(half), zero, torch.cos(half)], dim=-1)
    swing = roma.unitquat_to_rotvec(roma.quat_product(q, q_twist_inv))
    return torch.stack([swing[..., 0], twist, swing[..., 2]], dim=-1)


def angles_to_local(angles: torch.Tensor) -> torch.Tensor:
    """Local rotations (..., 3, 3) from swing-twist angles (..., 3), the inverse of
    :func:`local_to_angles`: ``swing(x, 0, z) @ twist_y``."""
    zero = torch.zeros_like(angles[..., 0])
    swing = roma.rotvec_to_rotmat(torch.stack([angles[..., 0], zero, angles[..., 2]], dim=-1))
    twist = roma.rotvec_to_rotmat(torch.stack([zero, angles[..., 1], zero], dim=-1))
    return swing @ twist


def rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The smallest rotations (..., 3, 3) turning unit vectors a (..., 3) onto b (..., 3)."""
    axis = torch.linalg.cross(a, b, dim=-1)
    norm = axis.norm(dim=-1, keepdim=True)
    angle = torch.atan2(norm, (a * b).sum(-1, keepdim=True))
    return roma.rotvec_to_rotmat(axis / norm.clamp_min(1e-12) * angle)


# ------------------------------------------------------------------ mirroring
def mirror_permutation(bone_names: list[str]) -> list[int]:
    """For each bone, the index of its mirror image (``.L`` <-> ``.R``, centre to itself)."""
    index = {n: i for i, n in enumerate(bone_names)}
    return [index[mirror_name(n)] for n in bone_names]


def mirror_pose(pose: torch.Tensor, bone_names: list[str]) -> torch.Tensor:
    """Mirror image of a pose across the model's YZ plane (the person's left <-> right).

    Args:
        pose: (B, J-1, 3, 3) rotations or (B, J-1, 3) axis-angle of ``bone_names[1:]``.
        bone_names: the model's J bone names (root first).
    Returns:
        The mirrored pose, same shape: bone c takes the rotation of its mirror bone, conjugated
        by ``S = diag(-1, 1, 1)`` (axis-angle: y and z negated). An involution.
    """
    perm = [p - 1 for p in mirror_permutation(bone_names)[1:]]
    p = pose[:, perm]
    if p.shape[-1] == 3 and p.ndim == 3:
        return p * p.new_tensor([1.0, -1.0, -1.0])
    return mirror_rotation(p)


def mirror_rotation(rot: torch.Tensor) -> torch.Tensor:
    """``S rot S`` with S = diag(-1, 1, 1): the mirror image of rotations (..., 3, 3)."""
    s = rot.new_tensor([-1.0, 1.0, 1.0])
    return rot * s[:, None] * s[None, :]


# ------------------------------------------------------------------ limits
class JointLimits:
    """Per-bone limits and the angle parametrisation of poses of one skeleton.

    Built from the model's bone names, parents and reference orientations (the frames do not
    depend on the body shape). All tensors are float32 on the CPU; methods follow the input's
    device and dtype.

    Attributes:
        bone_names: the J bone names; poses cover ``bone_names[1:]``.
        frames: (J-1, 3, 3) per-bone frame G and neutral: (J-1, 3, 3) rotation N, with
            ``pose = G @ angles_to_local(raw) @ G^T @ N``; G = U_c, N = I except for the upper
            arm; right-side bones: ``S @ G_left`` (an improper frame that mirrors) and
            ``S @ N_left @ S``.
        sign: (J-1, 3) +-1 and offset: (J-1, 3) radians, ``angles = sign * raw + offset`` where
            raw are the swing-twist angles of :func:`local_to_angles` (hinges, hip).
        lower, upper: (J-1, 3) radians, the limits of the angles.
    """

    def __init__(
        self, bone_names: list[str], parents: list[int], reference_orient: torch.Tensor
    ) -> None:
        self.bone_names = list(bone_names)
        index = {n: i for i, n in enumerate(bone_names)}
        u = reference_orient.detach().to("cpu", torch.float32)
        s = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
        n = len(bone_names) - 1
        frames = torch.empty(n, 3, 3)
        neutral = torch.eye(3).repeat(n, 1, 1)
        lower, upper, offset = torch.zeros(n, 3), torch.zeros(n, 3), torch.zeros(n, 3)
        sign = torch.ones(n, 3)
        for c in range(1, n + 1):
            name = bone_names[c]
            left = _left_name(name)
            if left not in index:
                raise ValueError(f"bone {name!r} has no left counterpart {left!r}")
            frame, neut = u[index[left]], torch.eye(3)
            if left == "upperarm01.L":  # rotate the reference arm down to hanging
                neut = rotation_between(frame[:, 1], torch.tensor([0.0, 0.0, -1.0]))
                frame = neut @ frame
            frames[c - 1] = frame if left == name else s @ frame
            neutral[c - 1] = neut if left == name else s @ neut @ s
            sign[c - 1] = torch.tensor(SIGNS.get(left, (1.0, 1.0, 1.0)))
            lim = LIMITS_DEG.get(left, ((0, 0), (0, 0), (0, 0)))
            lower[c - 1] = torch.tensor([r[0] for r in lim]) * math.pi / 180
            upper[c - 1] = torch.tensor([r[1] for r in lim]) * math.pi / 180
            offset[c - 1, 0] = -math.radians(NEUTRAL_FLEX_DEG.get(left, 0.0))
            if left in HINGES:  # reference bend: parent direction -> own direction about x
                lu = u[index[left]]
                yp = u[parents[index[left]], :, 1]
                offset[c - 1, 0] = torch.atan2(
                    torch.linalg.cross(yp, lu[:, 1]) @ lu[:, 0], yp @ lu[:, 1]
                )
        self.frames, self.neutral, self.offset, self.sign = frames, neutral, offset, sign
        self.lower, self.upper = lower, upper
        self.index = {name: i - 1 for name, i in index.items() if i > 0}
        self.mirror_perm = [p - 1 for p in mirror_permutation(bone_names)[1:]]

    @classmethod
    def from_model(cls, model) -> JointLimits:
        """Limits of a :class:`fullcap.bodymodel.model.BodyModel`'s skeleton."""
        return cls(model.bone_names, model.bone_parents, model.reference_orient)

    def _t(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.to(device=like.device, dtype=like.dtype)

    # -- parametrisation
    def pose_to_angles(self, pose: torch.Tensor) -> torch.Tensor:
        """Angles (B, J-1, 3), radians, of a pose (B, J-1, 3, 3) in world axes."""
        g = self._t(self.frames, pose)
        local = g.transpose(-1, -2) @ pose @ self._t(self.neutral, pose).transpose(-1, -2) @ g
        return local_to_angles(local) * self._t(self.sign, pose) + self._t(self.offset, pose)

    def angles_to_pose(self, angles: torch.Tensor) -> torch.Tensor:
        """Pose (B, J-1, 3, 3) in world axes of the reference pose from angles (B, J-1, 3)."""
        g = self._t(self.frames, angles)
        raw = (angles - self._t(self.offset, angles)) * self._t(self.sign, angles)
        local = angles_to_local(raw)
        return g @ local @ g.transpose(-1, -2) @ self._t(self.neutral, angles)

    def clamp_angles(self, angles: torch.Tensor) -> torch.Tensor:
        """Angles (B, J-1, 3) clamped to the limits, swings capped at MAX_SWING_DEG."""
        a = torch.maximum(
            torch.minimum(angles, self._t(self.upper, angles)), self._t(self.lower, angles)
        )
        raw = a - self._t(self.offset, a)  # the cap is sign-independent
        swing = raw[..., [0, 2]]
        norm = swing.norm(dim=-1, keepdim=True)
        cap = math.radians(MAX_SWING_DEG)
        swing = swing * torch.clamp(cap / norm.clamp_min(1e-12), max=1.0)
        raw = torch.stack([swing[..., 0], raw[..., 1], swing[..., 1]], dim=-1)
        return raw + self._t(self.offset, a)

    # -- public checks
    def clamp(self, pose: torch.Tensor) -> torch.Tensor:
        """The nearest pose (B, J-1, 3, 3) within the limits, angle by angle."""
        return self.angles_to_pose(self.clamp_angles(self.pose_to_angles(pose)))

    def violation(self, pose: torch.Tensor) -> torch.Tensor:
        """How far (B, J-1, 3), radians >= 0, each angle of a pose lies outside its limits."""
        a = self.pose_to_angles(pose)
        lo, hi = self._t(self.lower, a), self._t(self.upper, a)
        return (lo - a).clamp_min(0) + (a - hi).clamp_min(0)

    def within(self, pose: torch.Tensor, tol_deg: float = 0.5) -> torch.Tensor:
        """(B,) bool: every angle of the pose (B, J-1, 3, 3) within limits (+- ``tol_deg``)."""
        return (self.violation(pose) <= math.radians(tol_deg)).flatten(1).all(dim=1)

    def mirror(self, pose: torch.Tensor) -> torch.Tensor:
        """Mirror image of a pose (B, J-1, 3, 3), see :func:`mirror_pose`."""
        return mirror_rotation(pose[:, self.mirror_perm])

    def range_of(self, name: str) -> torch.Tensor:
        """(3, 2) degrees: the (lower, upper) limits of one bone's (flex, twist, side)."""
        i = self.index[name]
        return torch.rad2deg(torch.stack([self.lower[i], self.upper[i]], dim=-1))


@functools.lru_cache(maxsize=1)
def default_limits() -> JointLimits:
    """Limits of the packaged body model's skeleton (loaded once)."""
    from fullcap.bodymodel.model import BodyModel

    return JointLimits.from_model(BodyModel.load())


def clamp_to_limits(pose: torch.Tensor, limits: JointLimits | None = None) -> torch.Tensor:
    """Clamp a pose (B, J-1, 3, 3) to the anatomical limits (default: the packaged model's)."""
    return (limits or default_limits()).clamp(pose)


def within_limits(
    pose: torch.Tensor, limits: JointLimits | None = None, tol_deg: float = 0.5
) -> torch.Tensor:
    """(B,) bool: the pose (B, J-1, 3, 3) is within the anatomical limits (+- ``tol_deg``)."""
    return (limits or default_limits()).within(pose, tol_deg)
