"""Rotation representations, all in one place.

Every rotation in fullcap is a proper rotation matrix ``R`` (``(..., 3, 3)``, ``det(R) = +1``)
acting on column vectors: ``x_rotated = R @ x``. Other representations convert to and from it
through the functions below; the maths is delegated to :mod:`roma`.

6D convention (Zhou et al., "On the Continuity of Rotation Representations in Neural Networks",
CVPR 2019), pinned once for the whole project: ``rot6d`` is the first two **columns** of ``R``
concatenated::

    rot6d[..., 0:3] = R[..., :, 0]
    rot6d[..., 3:6] = R[..., :, 1]

so a 90 degree rotation about +z, ``R = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]``, has
``rot6d = [0, 1, 0, -1, 0, 0]``. Decoding uses Gram-Schmidt on these two columns.

Rotation vectors (axis-angle) are ``axis * angle`` with the angle in radians.
"""

from __future__ import annotations

import roma
import torch

__all__ = [
    "geodesic_distance",
    "random_rotmat",
    "rot6d_to_rotmat",
    "rotmat_to_rot6d",
    "rotmat_to_rotvec",
    "rotvec_to_rotmat",
]


def _check_last_dims(x: torch.Tensor, dims: tuple[int, ...], name: str) -> None:
    """Raise ValueError naming ``name`` unless ``x`` is a tensor ending in ``dims``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    n = len(dims)
    if x.dim() < n or tuple(x.shape[-n:]) != dims:
        want = "(..., " + ", ".join(str(d) for d in dims) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")


def rotmat_to_rot6d(R: torch.Tensor) -> torch.Tensor:
    """Encode rotation matrices as 6D vectors (first two columns, Zhou et al. 2019).

    Args:
        R: ``(..., 3, 3)`` rotation matrices.

    Returns:
        ``(..., 6)`` with ``[..., 0:3] = R[..., :, 0]`` and ``[..., 3:6] = R[..., :, 1]``.
    """
    _check_last_dims(R, (3, 3), "R")
    return torch.cat((R[..., :, 0], R[..., :, 1]), dim=-1)


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """Decode 6D vectors into rotation matrices by Gram-Schmidt (Zhou et al. 2019).

    ``x[..., 0:3]`` is normalised into the first column of ``R``; ``x[..., 3:6]`` minus its
    projection on it, normalised, is the second column; the third is their cross product. Any
    input whose two halves are non-zero and not colinear gives a proper rotation; the mapping is
    differentiable there.

    Args:
        x: ``(..., 6)`` 6D rotation representation (need not be orthonormal).

    Returns:
        ``(..., 3, 3)`` rotation matrices with ``det = +1``.
    """
    _check_last_dims(x, (6,), "x")
    M = torch.stack((x[..., 0:3], x[..., 3:6]), dim=-1)  # (..., 3, 2): columns
    return roma.special_gramschmidt(M)


def rotvec_to_rotmat(rotvec: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``(..., 3)`` (axis * angle, radians) -> rotation matrices ``(..., 3, 3)``.

    Thin wrapper around :func:`roma.rotvec_to_rotmat`.
    """
    _check_last_dims(rotvec, (3,), "rotvec")
    return roma.rotvec_to_rotmat(rotvec)


def rotmat_to_rotvec(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> rotation vectors (axis * angle, radians) ``(..., 3)``.

    The angle is in ``[0, pi]``.
    """
    _check_last_dims(R, (3, 3), "R")
    return roma.rotmat_to_rotvec(R)


def geodesic_distance(R1: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """Angle in radians (``[0, pi]``) of the relative rotation ``R1^T R2``.

    Args:
        R1: ``(..., 3, 3)`` rotation matrices.
        R2: ``(..., 3, 3)`` rotation matrices, broadcastable against ``R1``.

    Returns:
        ``(...)`` angles in radians.
    """
    _check_last_dims(R1, (3, 3), "R1")
    _check_last_dims(R2, (3, 3), "R2")
    R1, R2 = torch.broadcast_tensors(R1, R2)
    return roma.rotmat_geodesic_distance(R1, R2)


def random_rotmat(
    n: int | tuple[int, ...] = (),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rotation matrices drawn uniformly (Haar measure) on SO(3).

    Args:
        n: batch size or batch shape; ``()`` gives a single ``(3, 3)`` matrix.
        generator: optional torch generator for reproducibility (must live on ``device``).
        dtype, device: of the result.

    Returns:
        ``(n, 3, 3)`` (or ``(*n, 3, 3)``) rotation matrices.
    """
    return roma.random_rotmat(size=n, dtype=dtype, device=device, generator=generator)
