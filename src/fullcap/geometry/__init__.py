"""Geometry helpers: rotations, pinhole camera and crops, Procrustes alignment."""

from fullcap.geometry.camera import (
    apply_affine,
    box_to_square,
    crop_image,
    crop_transform,
    invert_affine,
    project,
    project_np,
)
from fullcap.geometry.procrustes import procrustes_align
from fullcap.geometry.rotations import (
    geodesic_distance,
    random_rotmat,
    rot6d_to_rotmat,
    rotmat_to_rot6d,
    rotmat_to_rotvec,
    rotvec_to_rotmat,
)

__all__ = [
    "apply_affine",
    "box_to_square",
    "crop_image",
    "crop_transform",
    "geodesic_distance",
    "invert_affine",
    "procrustes_align",
    "project",
    "project_np",
    "random_rotmat",
    "rot6d_to_rotmat",
    "rotmat_to_rot6d",
    "rotmat_to_rotvec",
    "rotvec_to_rotmat",
]
