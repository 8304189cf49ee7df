"""Tests for fullcap.geometry: rotations, camera/crops, Procrustes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fullcap.geometry import (
    apply_affine,
    box_to_square,
    crop_image,
    crop_transform,
    geodesic_distance,
    invert_affine,
    procrustes_align,
    project,
    project_np,
    random_rotmat,
    rot6d_to_rotmat,
    rotmat_to_rot6d,
    rotmat_to_rotvec,
    rotvec_to_rotmat,
)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _assert_rotations(R: torch.Tensor, atol: float = 1e-6) -> None:
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    torch.testing.assert_close(R.transpose(-1, -2) @ R, eye, atol=atol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(R.shape[:-2], dtype=R.dtype))


# --------------------------------------------------------------------------- rotations


def test_rot6d_convention_pinned():
    R = rotvec_to_rotmat(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    expected_R = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(R, expected_R, atol=1e-12, rtol=0)
    x = rotmat_to_rot6d(R)
    torch.testing.assert_close(x, torch.tensor([0.0, 1, 0, -1, 0, 0], dtype=torch.float64))
    # Columns, not rows: decoding must give R back, not R^T.
    torch.testing.assert_close(rot6d_to_rotmat(x), expected_R, atol=1e-12, rtol=0)


def test_rotmat_rot6d_round_trip(gen):
    R = random_rotmat(100, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(rot6d_to_rotmat(rotmat_to_rot6d(R)), R, atol=1e-12, rtol=0)


def test_rot6d_of_arbitrary_input_is_rotation(gen):
    x = torch.randn(500, 6, generator=gen, dtype=torch.float64) * 3
    R = rot6d_to_rotmat(x)
    _assert_rotations(R, atol=1e-12)
    # The first column is the normalised first half of x.
    torch.testing.assert_close(R[:, :, 0], x[:, :3] / x[:, :3].norm(dim=-1, keepdim=True))
    # The second column lies in the plane of the two halves (orthogonal to their normal).
    normal = torch.cross(x[:, :3], x[:, 3:], dim=-1)
    torch.testing.assert_close((R[:, :, 1] * normal).sum(-1), torch.zeros(500, dtype=x.dtype))


def test_rot6d_to_rotmat_gradcheck(gen):
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rot6d_to_rotmat, (x,))


def test_batching_over_leading_dims(gen):
    x = torch.randn(2, 3, 4, 6, generator=gen)
    R = rot6d_to_rotmat(x)
    assert R.shape == (2, 3, 4, 3, 3)
    torch.testing.assert_close(R[1, 2, 3], rot6d_to_rotmat(x[1, 2, 3]))
    assert rot6d_to_rotmat(x[0, 0, 0]).shape == (3, 3)
    assert rotmat_to_rot6d(R).shape == (2, 3, 4, 6)
    rv = rotmat_to_rotvec(R)
    assert rv.shape == (2, 3, 4, 3)
    torch.testing.assert_close(rotvec_to_rotmat(rv), R, atol=1e-5, rtol=0)
    assert geodesic_distance(R, R[0]).shape == (2, 3, 4)


def test_rotvec_round_trip_and_geodesic(gen):
    angles = torch.linspace(0.1, 3.0, 7, dtype=torch.float64)
    axis = torch.nn.functional.normalize(torch.randn(7, 3, generator=gen, dtype=torch.float64))
    rv = axis * angles[:, None]
    R = rotvec_to_rotmat(rv)
    torch.testing.assert_close(rotmat_to_rotvec(R), rv)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(geodesic_distance(eye, R), angles)
    torch.testing.assert_close(geodesic_distance(R, R), torch.zeros(7, dtype=torch.float64))


def test_random_rotmat(gen):
    R = random_rotmat(64, generator=gen, dtype=torch.float64)
    assert R.shape == (64, 3, 3) and R.dtype == torch.float64
    _assert_rotations(R, atol=1e-10)
    R1 = random_rotmat(3, generator=torch.Generator().manual_seed(5))
    R2 = random_rotmat(3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(R1, R2)
    assert not torch.allclose(R1[0], R1[1])


@pytest.mark.parametrize(
    ("fn", "arg", "name"),
    [
        (rot6d_to_rotmat, torch.zeros(4, 5), "x"),
        (rotmat_to_rot6d, torch.zeros(4, 3), "R"),
        (rotvec_to_rotmat, torch.zeros(4, 4), "rotvec"),
        (rotmat_to_rotvec, torch.zeros(3, 2), "R"),
    ],
)
def test_shape_validation(fn, arg, name):
    with pytest.raises(ValueError, match=rf"^{name} must have shape"):
        fn(arg)


# --------------------------------------------------------------------------- camera


def test_project_known_values_and_numpy_agrees():
    K = torch.tensor([[500.0, 0, 320], [0, 400, 240], [0, 0, 1]], dtype=torch.float64)
    pts = torch.tensor([[0.0, 0, 2], [1, -0.5, 2], [0.2, 0.4, 4]], dtype=torch.float64)
    uv = project(pts, K)
    expected = torch.tensor([[320.0, 240], [570, 140], [345, 280]], dtype=torch.float64)
    torch.testing.assert_close(uv, expected)
    np.testing.assert_allclose(project_np(pts.numpy(), K.numpy()), expected.numpy())
    # Per-camera K broadcast over points: (B, 1, 3, 3) with (B, N, 3).
    K2 = torch.stack((K, K * torch.tensor([[2.0], [2.0], [1.0]], dtype=torch.float64)))
    uv2 = project(pts.expand(2, 3, 3), K2[:, None])
    torch.testing.assert_close(uv2[0], expected)
    torch.testing.assert_close(uv2[1], 2 * expected)
    with pytest.raises(ValueError, match="points"):
        project(torch.zeros(3, 2), K)


def test_box_to_square():
    box = np.array([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 8.0, 2.0]])
    np.testing.assert_allclose(box_to_square(box), [[0, 20, 40, 60], [0, -3, 8, 5]])
    np.testing.assert_allclose(box_to_square(box[0], scale=1.5), [-10, 10, 50, 70])
    out = box_to_square(torch.tensor(box))
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.tensor([[0.0, 20, 40, 60], [0, -3, 8, 5]]).double())


def test_crop_transform_and_inverse():
    A = crop_transform([10.0, 20.0, 50.0, 60.0], 80)
    corners = np.array([[10.0, 20.0], [50.0, 60.0], [30.0, 40.0]])
    np.testing.assert_allclose(apply_affine(A, corners), [[0, 0], [80, 80], [40, 40]])
    Ai = invert_affine(A)
    np.testing.assert_allclose(apply_affine(Ai, apply_affine(A, corners)), corners)
    At = torch.from_numpy(A)
    torch.testing.assert_close(invert_affine(At), torch.from_numpy(Ai))
    torch.testing.assert_close(
        apply_affine(At, torch.from_numpy(corners)), torch.from_numpy(apply_affine(A, corners))
    )
    # A non-square box is squared around its centre (aspect ratio preserved).
    np.testing.assert_allclose(crop_transform([10.0, 30.0, 50.0, 50.0], 80), A)


def _centroid_corner(img: np.ndarray) -> np.ndarray:
    """Intensity centroid (u, v) of a 2D image, in corner-convention pixel coordinates."""
    w = img.astype(np.float64)
    vv, uu = np.mgrid[: img.shape[0], : img.shape[1]]
    return np.array([(w * (uu + 0.5)).sum(), (w * (vv + 0.5)).sum()]) / w.sum()


@pytest.mark.parametrize(
    ("box", "out_size"),
    [
        ((3.0, 5.0, 35.0, 37.0), 32),  # pure integer shift
        ((2.3, 4.7, 34.3, 36.7), 32),  # fractional shift
        ((4.25, 6.5, 20.25, 22.5), 32),  # 2x upscale with fractional shift
    ],
)
def test_crop_image_single_bright_pixel(box, out_size):
    img = np.zeros((48, 64, 3), np.uint8)
    row, col = 14, 11
    img[row, col] = (255, 128, 7)
    crop = crop_image(img, np.array(box), out_size)
    assert crop.shape == (out_size, out_size, 3) and crop.dtype == np.uint8
    A = crop_transform(box, out_size)
    expected = apply_affine(A, np.array([col + 0.5, row + 0.5]))
    np.testing.assert_allclose(_centroid_corner(crop[..., 0]), expected, atol=0.05)
    # Channels are not mixed up.
    assert crop[..., 0].max() > crop[..., 1].max() > crop[..., 2].max()


def test_crop_image_exact_shift_and_border():
    img = np.arange(10 * 12, dtype=np.uint8).reshape(10, 12)
    crop = crop_image(img, (2.0, 3.0, 6.0, 7.0), 4)
    np.testing.assert_array_equal(crop, img[3:7, 2:6])
    crop = crop_image(img[..., None], (-2.0, -2.0, 2.0, 2.0), 4, border_value=200)
    assert crop.shape == (4, 4, 1)
    assert (crop[:2, :, 0] == 200).all() and (crop[:, :2, 0] == 200).all()
    np.testing.assert_array_equal(crop[2:, 2:, 0], img[:2, :2])


# --------------------------------------------------------------------------- procrustes


def test_procrustes_undoes_similarity(gen):
    B, N = 4, 30
    target = torch.randn(B, N, 3, generator=gen, dtype=torch.float64)
    R = random_rotmat(B, generator=gen, dtype=torch.float64)
    s = torch.rand(B, generator=gen, dtype=torch.float64) * 2 + 0.5
    t = torch.randn(B, 3, generator=gen, dtype=torch.float64) * 5
    pred = s[:, None, None] * target @ R.transpose(-1, -2) + t[:, None]
    assert (pred - target).abs().max() > 0.1
    torch.testing.assert_close(procrustes_align(pred, target), target, atol=1e-10, rtol=0)


def test_procrustes_without_scale_is_rigid(gen):
    target = torch.randn(2, 20, 3, generator=gen, dtype=torch.float64)
    R = random_rotmat(2, generator=gen, dtype=torch.float64)
    pred = 2.0 * target @ R.transpose(-1, -2) + 1.0
    aligned = procrustes_align(pred, target, scale=False)
    pairwise = torch.cdist(pred, pred)
    torch.testing.assert_close(torch.cdist(aligned, aligned), pairwise)  # distances kept
    torch.testing.assert_close(
        aligned, 2 * (target - target.mean(1, keepdim=True)) + (target.mean(1, keepdim=True))
    )


def test_procrustes_weights_ignore_outliers(gen):
    B, N = 3, 25
    target = torch.randn(B, N, 3, generator=gen, dtype=torch.float64)
    R = random_rotmat(B, generator=gen, dtype=torch.float64)
    pred = 1.7 * target @ R.transpose(-1, -2) - 0.3
    pred[:, :5] += 10 * torch.randn(B, 5, 3, generator=gen, dtype=torch.float64)
    weights = torch.ones(B, N, dtype=torch.float64)
    weights[:, :5] = 0
    aligned = procrustes_align(pred, target, weights)
    torch.testing.assert_close(aligned[:, 5:], target[:, 5:], atol=1e-10, rtol=0)
    unweighted = procrustes_align(pred, target)
    assert (unweighted[:, 5:] - target[:, 5:]).abs().max() > 0.1
    with pytest.raises(ValueError, match="weights"):
        procrustes_align(pred, target, weights[:, :4])
