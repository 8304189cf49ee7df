"""Parity with Anny's own forward on random shapes, poses and expressions (needs `anny`)."""

from __future__ import annotations

import os
import warnings

import pytest
import roma
import torch

from fullcap.bodymodel.model import BodyModel

N_SAMPLES = 128

try:
    import anny  # noqa: F401

    HAVE_ANNY = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_ANNY = False

if not HAVE_ANNY and os.environ.get("CI"):
    raise RuntimeError("CI must install anny (scripts/setup.sh test) so the parity test runs")

pytestmark = pytest.mark.skipif(not HAVE_ANNY, reason="needs anny: scripts/setup.sh test")


@pytest.fixture(scope="module")
def anny_model():
    from fullcap.bodymodel.build import _anny_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _anny_model()


def _samples(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    return dict(
        phenotypes=torch.rand(n, 6, generator=g, dtype=f64),
        expression=torch.rand(n, 52, generator=g, dtype=f64),
        rotvec=torch.randn(n, 104, 3, generator=g, dtype=f64) * 0.35,
        transl=torch.randn(n, 3, generator=g, dtype=f64),
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_vertices_and_joints_match_anny(anny_model, dtype):
    from fullcap.bodymodel.build import anny_coefficients

    s = _samples(N_SAMPLES, seed=7)
    rot = roma.rotvec_to_rotmat(s["rotvec"])
    deltas = torch.eye(4, dtype=torch.float64).repeat(N_SAMPLES, 104, 1, 1)
    deltas[:, :, :3, :3] = rot
    deltas[:, 0, :3, 3] = s["transl"]
    ref = anny_model(
        pose_parameters=deltas, phenotype_kwargs=s["phenotypes"], facial_actions=s["expression"]
    )

    bm = BodyModel.load(dtype=dtype)
    betas = bm.betas_from_anny(anny_coefficients(anny_model, s["phenotypes"]).to(dtype))
    out = bm(
        betas=betas,
        expression=s["expression"].to(dtype),
        pose=rot[:, 1:].to(dtype),
        global_orient=rot[:, 0].to(dtype),
        transl=s["transl"].to(dtype),
    )
    v_err = (out.vertices.double() - ref["vertices"]).norm(dim=-1) * 1000  # mm
    j_err = (out.joints.double() - ref["bone_poses"][..., :3, 3]).norm(dim=-1) * 1000
    # Documented tolerance (README): mean <= 1 mm, max <= 5 mm.
    assert v_err.mean() <= 1.0 and v_err.max() <= 5.0, (v_err.mean(), v_err.max())
    assert j_err.mean() <= 1.0 and j_err.max() <= 5.0, (j_err.mean(), j_err.max())


def test_betas_roundtrip_through_anny_coefficients(anny_model):
    bm = BodyModel.load(dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    betas = bm.sample_betas(8, generator=g)
    coeffs = bm.anny_from_betas(betas)
    torch.testing.assert_close(bm.betas_from_anny(coeffs), betas, atol=1e-3, rtol=0)
