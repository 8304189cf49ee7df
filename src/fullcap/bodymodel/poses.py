"""A few named whole-body poses for demos, figures and tests.

Each pose maps Anny bone names to axis-angle rotations (3,) in radians; bones not named keep
the reference pose (close to an A-pose). The convention is the body model's (see
:mod:`fullcap.bodymodel.lbs`): the entry D_c of bone c is expressed in the world axes of the
reference pose, and the bone's world rotation is ``A_c = A_parent @ D_c``. Model frame: metres,
Z up, -Y forward (the face looks toward -Y), +X the person's left. So, for example, a rotation
about -Y at ``upperarm01.L`` lifts the left arm sideways, and a negative rotation about +X at
``upperleg01.L`` swings the left thigh forward.

The arm and leg values were found by aiming each segment of Anny's default body at a target
direction with the smallest rotation (upper arm: ``upperarm01`` head to ``lowerarm01`` head;
forearm: to ``wrist``; thigh: ``upperleg01`` to ``lowerleg01``; shin: to ``foot``), then
rounded; they suit any body shape closely enough for a picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["POSES", "mirror", "pose_tensor"]

Pose = dict[str, tuple[float, float, float]]

# Unit rotation axes of the left hand in the reference pose (world axes). A positive angle
# about them bends toward the palm: fingers about the knuckle line (index root to little
# finger root); the thumb's base about the index metacarpal (opposition, across the palm),
# its other joints about the axis normal to the thumb and the palm.
_FINGER_CURL_L = (0.388, 0.822, -0.419)
_THUMB_OPPOSE_L = (0.259, -0.888, -0.379)
_THUMB_CURL_L = (0.624, -0.077, -0.778)


def _scaled(axis: Sequence[float], angle: float) -> tuple[float, float, float]:
    x, y, z = axis
    return (round(x * angle, 4), round(y * angle, 4), round(z * angle, 4))


def mirror(pose: Mapping[str, Sequence[float]]) -> Pose:
    """The same pose with left and right exchanged (reflection through the X = 0 plane).

    Bone names swap their ``.L``/``.R`` suffix and an axis-angle (x, y, z) becomes
    (x, -y, -z), which is how a rotation vector (an axial vector) reflects across X = 0.
    """
    out: Pose = {}
    for name, (x, y, z) in pose.items():
        if name.endswith(".L"):
            name = name[:-2] + ".R"
        elif name.endswith(".R"):
            name = name[:-2] + ".L"
        out[name] = (float(x), -float(y), -float(z))
    return out


def _hand(
    side: str,
    fingers: Mapping[int, Sequence[float]],
) -> Pose:
    """Finger curls for one hand.

    Args:
        side: "L" or "R".
        fingers: finger number (1 thumb .. 5 little) -> angles (radians) of its three joints,
            proximal first; positive bends toward the palm.
    """
    left: Pose = {}
    for finger, angles in fingers.items():
        for joint, angle in enumerate(angles, start=1):
            axis = _FINGER_CURL_L
            if finger == 1:
                axis = _THUMB_OPPOSE_L if joint == 1 else _THUMB_CURL_L
            if angle:
                left[f"finger{finger}-{joint}.L"] = _scaled(axis, angle)
    return left if side == "L" else mirror(left)


def _both(left: Pose) -> Pose:
    """A symmetric pose from its left half."""
    return {**left, **mirror(left)}


_FIST = {
    1: (0.8, 0.5, 0.5),
    2: (1.4, 1.5, 0.9),
    3: (1.4, 1.5, 0.9),
    4: (1.4, 1.5, 0.9),
    5: (1.4, 1.5, 0.9),
}
_POINT = {
    1: (0.8, 0.5, 0.5),
    2: (0.0, 0.05, 0.05),
    3: (1.4, 1.5, 0.9),
    4: (1.4, 1.5, 0.9),
    5: (1.4, 1.5, 0.9),
}
_RELAXED = {2: (0.15, 0.2, 0.1), 3: (0.2, 0.25, 0.1), 4: (0.25, 0.3, 0.15), 5: (0.3, 0.35, 0.15)}

POSES: dict[str, Pose] = {
    "reference": {},
    "t_pose": _both(
        {
            "upperarm01.L": (0.000, -0.838, 0.023),
            "lowerarm01.L": (0.546, 0.034, 0.490),
        }
    ),
    "walking": {
        "upperarm01.L": (0.283, 0.562, 0.239),
        "lowerarm01.L": (0.211, 0.098, 0.078),
        "upperarm01.R": (-0.275, -0.553, 0.262),
        "lowerarm01.R": (0.184, 0.009, -0.192),
        "upperleg01.L": (-0.341, 0.055, -0.032),
        "lowerleg01.L": (0.172, 0.038, 0.019),
        "upperleg01.R": (0.416, -0.057, -0.028),
        "lowerleg01.R": (0.054, -0.029, -0.007),
        **_hand("L", _RELAXED),
        **_hand("R", _RELAXED),
    },
    "arms_up": _both(
        {
            "upperarm01.L": (-0.045, -2.072, 0.016),
            "lowerarm01.L": (0.521, -0.002, 0.513),
        }
    ),
    "sitting": _both(
        {
            "upperarm01.L": (-0.202, 0.519, -0.196),
            "lowerarm01.L": (-0.316, -0.058, -0.234),
            "upperleg01.L": (-1.476, -0.118, -0.108),
            "lowerleg01.L": (1.305, 0.153, 0.132),
            **_hand("L", _RELAXED),
        }
    ),
    "waving": {
        "upperarm01.R": (-0.133, 0.977, 0.093),
        "lowerarm01.R": (-0.410, 0.851, -0.716),
        "lowerarm02.R": (-0.459, -0.614, -0.467),  # forearm twist: palm to the front
        "upperarm01.L": (0.021, 0.535, 0.004),
        "lowerarm01.L": (0.448, 0.105, 0.302),
        **_hand("L", _RELAXED),
    },
    "fist_and_point": {
        "upperarm01.R": (-1.098, 0.214, 0.982),
        "lowerarm01.R": (0.546, -0.034, -0.490),
        "upperarm01.L": (-0.053, 0.439, -0.060),
        "lowerarm01.L": (-0.694, 0.134, -0.857),
        **_hand("L", _FIST),
        **_hand("R", _POINT),
    },
}


def pose_tensor(model: torch.nn.Module, named: Mapping[str, Sequence[float]]) -> torch.Tensor:
    """Rotation matrices for ``model(pose=...)`` from a named pose.

    Args:
        model: a :class:`fullcap.bodymodel.model.BodyModel` (uses ``bone_names``, ``dtype``,
            ``device``).
        named: Anny bone name -> axis-angle (3,) radians, world axes of the reference pose.
            The root is not allowed here (use ``global_orient``).

    Returns:
        (1, J-1, 3, 3) rotations for ``model.bone_names[1:]``, identity for unnamed bones.

    Raises:
        ValueError: an unknown bone name, the root, or a value that is not 3 finite numbers.
    """
    import roma

    bones = list(model.bone_names[1:])
    index = {name: i for i, name in enumerate(bones)}
    rotvec = torch.zeros(len(bones), 3, dtype=torch.float64)
    for name, value in named.items():
        if name == model.bone_names[0]:
            raise ValueError(f"the root bone {name!r} cannot be posed here; use global_orient")
        if name not in index:
            raise ValueError(f"unknown bone {name!r}; bones are model.bone_names[1:]")
        v = torch.as_tensor(value, dtype=torch.float64)
        if v.shape != (3,) or not torch.isfinite(v).all():
            raise ValueError(f"bone {name!r}: expected 3 finite numbers (axis-angle), got {value}")
        rotvec[index[name]] = v
    rot = roma.rotvec_to_rotmat(rotvec).to(dtype=model.dtype, device=model.device)
    return rot[None]
