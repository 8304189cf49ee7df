"""Pinhole projection and square image crops.

Camera frame (OpenCV): x right, y down, z forward (points in front of the camera have z > 0).
Units of 3D points are whatever the caller uses (metres in fullcap); only ratios matter.

Pixel coordinates are **continuous with the origin at the top-left corner of the top-left
pixel**: pixel ``(col i, row j)`` covers ``[i, i + 1) x [j, j + 1)`` and its centre is at
``(i + 0.5, j + 0.5)``. ``u`` grows to the right (columns), ``v`` downwards (rows). Intrinsics
``K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` are expressed in this convention, so
``u = fx * x / z + s * y / z + cx`` and ``v = fy * y / z + cy``.

Crops are described by a ``(2, 3)`` affine matrix ``A`` taking image pixel coordinates to crop
pixel coordinates, both in the corner convention above: ``[u', v'] = A @ [u, v, 1]``.
OpenCV's ``warpAffine`` works with integer coordinates at pixel *centres*; :func:`crop_image`
converts between the two.
"""

from __future__ import annotations

from typing import TypeVar

import cv2
import numpy as np
import torch

__all__ = [
    "apply_affine",
    "box_to_square",
    "crop_image",
    "crop_transform",
    "invert_affine",
    "project",
    "project_np",
]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _check_shape(x: np.ndarray | torch.Tensor, dims: tuple[int, ...], name: str) -> None:
    n = len(dims)
    if x.ndim < n or tuple(x.shape[-n:]) != dims:
        want = "(..., " + ", ".join(str(d) for d in dims) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")


def project(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pinhole projection of camera-frame points to pixel coordinates (torch).

    Args:
        points: ``(..., 3)`` points in the camera frame (OpenCV axes, z forward, z > 0).
        K: ``(..., 3, 3)`` intrinsics in pixels, broadcastable against ``points``' leading dims
            (e.g. ``K`` of shape ``(3, 3)`` for all points, or ``(B, 1, 3, 3)`` for ``(B, N, 3)``).

    Returns:
        ``(..., 2)`` pixel coordinates ``(u, v)``, corner convention. Points with ``z <= 0``
        give meaningless (possibly infinite) values; callers must mask them.
    """
    _check_shape(points, (3,), "points")
    _check_shape(K, (3, 3), "K")
    uvw = (K @ points.unsqueeze(-1)).squeeze(-1)
    return uvw[..., :2] / uvw[..., 2:3]


def project_np(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """NumPy version of :func:`project`; same shapes, conventions and caveats."""
    points = np.asarray(points)
    K = np.asarray(K)
    _check_shape(points, (3,), "points")
    _check_shape(K, (3, 3), "K")
    uvw = (K @ points[..., None])[..., 0]
    return uvw[..., :2] / uvw[..., 2:3]


def box_to_square(box: ArrayT, scale: float = 1.0) -> ArrayT:
    """Square box with the same centre as ``box`` and side ``scale * max(width, height)``.

    Args:
        box: ``(..., 4)`` boxes ``(x0, y0, x1, y1)`` in pixels (numpy array or torch tensor).
        scale: side multiplier (e.g. 1.2 to add a margin).

    Returns:
        ``(..., 4)`` square boxes, same type, dtype and device as ``box``.
    """
    _check_shape(box, (4,), "box")
    x0, y0, x1, y1 = (box[..., i] for i in range(4))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if isinstance(box, torch.Tensor):
        half = torch.maximum(x1 - x0, y1 - y0) * (scale / 2)
        return torch.stack((cx - half, cy - half, cx + half, cy + half), dim=-1)
    half = np.maximum(x1 - x0, y1 - y0) * (scale / 2)
    return np.stack((cx - half, cy - half, cx + half, cy + half), axis=-1)


def crop_transform(box: np.ndarray | torch.Tensor | list[float], out_size: int) -> np.ndarray:
    """Affine map from image pixels to the pixels of an ``out_size`` x ``out_size`` crop.

    The box's top-left corner maps to ``(0, 0)`` and its bottom-right corner to
    ``(out_size, out_size)`` (corner convention). The box is assumed square; a non-square box
    is treated as the square of side ``max(width, height)`` with the same centre, so the aspect
    ratio is always preserved.

    Args:
        box: ``(4,)`` box ``(x0, y0, x1, y1)`` in image pixels.
        out_size: crop side in pixels.

    Returns:
        ``(2, 3)`` float64 matrix ``A``: ``[u_crop, v_crop] = A @ [u, v, 1]``.
    """
    if isinstance(box, torch.Tensor):
        box = box.detach().cpu().numpy()
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (4,):
        raise ValueError(f"box must have shape (4,), got {box.shape}")
    if out_size <= 0:
        raise ValueError(f"out_size must be positive, got {out_size}")
    x0, y0, x1, _ = box_to_square(box)
    side = x1 - x0
    if not side > 0:
        raise ValueError(f"box must have positive size, got {box.tolist()}")
    s = out_size / side
    return np.array([[s, 0.0, -s * x0], [0.0, s, -s * y0]], dtype=np.float64)


def apply_affine(A: ArrayT, uv: ArrayT) -> ArrayT:
    """Apply ``(..., 2, 3)`` affine maps to ``(..., 2)`` points: ``A[:, :2] @ uv + A[:, 2]``.

    ``A`` and ``uv`` must both be numpy arrays or both torch tensors; leading dims broadcast
    (a single ``(2, 3)`` ``A`` applies to any number of points).
    """
    _check_shape(A, (2, 3), "A")
    _check_shape(uv, (2,), "uv")
    return (A[..., :2] @ uv[..., None])[..., 0] + A[..., 2]


def invert_affine(A: ArrayT) -> ArrayT:
    """Inverse of ``(..., 2, 3)`` affine maps (numpy or torch), e.g. crop pixels -> image pixels."""
    _check_shape(A, (2, 3), "A")
    L, t = A[..., :2], A[..., 2:]
    if isinstance(A, torch.Tensor):
        Li = torch.linalg.inv(L)
        return torch.cat((Li, -Li @ t), dim=-1)
    Li = np.linalg.inv(L)
    return np.concatenate((Li, -Li @ t), axis=-1)


def crop_image(
    image: np.ndarray,
    box: np.ndarray | torch.Tensor | list[float],
    out_size: int,
    border_value: int = 0,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Crop (and resample) a square box of an image with ``cv2.warpAffine``.

    A point at image pixel coordinate ``(u, v)`` lands at ``apply_affine(A, (u, v))`` in the
    crop, with ``A = crop_transform(box, out_size)``, both in the corner convention.

    Args:
        image: ``(H, W, C)`` or ``(H, W)`` uint8 image.
        box: ``(4,)`` box ``(x0, y0, x1, y1)`` in image pixels (see :func:`crop_transform`).
        out_size: crop side in pixels.
        border_value: fill value for crop pixels that fall outside the image.
        interpolation: OpenCV interpolation flag.

    Returns:
        ``(out_size, out_size, C)`` (or ``(out_size, out_size)``) crop, dtype of ``image``.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got {image.shape}")
    A = crop_transform(box, out_size)
    # Corner -> centre convention: p_centre = p_corner - 0.5 on both sides, so
    # crop_c = L (img_c + 0.5) + t - 0.5  =>  t_cv = t + L @ [0.5, 0.5] - 0.5.
    M = A.copy()
    M[:, 2] += A[:, :2] @ np.array([0.5, 0.5]) - 0.5
    n_channels = 1 if image.ndim == 2 else image.shape[2]
    crop = cv2.warpAffine(
        image,
        M,
        (int(out_size), int(out_size)),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(border_value,) * max(n_channels, 4),
    )
    if image.ndim == 3 and crop.ndim == 2:  # OpenCV drops a single channel axis
        crop = crop[:, :, None]
    return crop
