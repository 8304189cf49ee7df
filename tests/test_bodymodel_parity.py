"""Parity with Anny's own forward on random shapes, poses and expressions (needs `anny`)."""

from __future__ import annotations

import os

import pytest
import torch

from fullcap.bodymodel.model import BodyModel

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
    from fullcap.bodymodel.parity import anny_reference_model

    return anny_reference_model()


# The betas are fitted to Anny's rest mesh, not mapped from Anny's blendshape coefficients:
# Anny rebuilds its coefficient basis with each cache build (~/.cache/anny), and the
# coefficient route failed on machines whose cache differed from the asset's (2026-11-25 to
# 2026-12-07: mean 0.49-0.85 mm, max 5.8-7.0 mm, the asset unchanged).
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_vertices_and_joints_match_anny(anny_model, dtype):
    from fullcap.bodymodel.parity import compare

    r = compare(n=128, dtype=dtype, anny_model=anny_model)
    # Documented tolerance (README): mean <= 1 mm, max <= 5 mm.
    assert r["shape_fit_max_mm"] <= 5.0, r
    assert r["vertex_mean_mm"] <= 1.0 and r["vertex_max_mm"] <= 5.0, r
    assert r["joint_mean_mm"] <= 1.0 and r["joint_max_mm"] <= 5.0, r


def test_betas_roundtrip_through_anny_coefficients(anny_model):
    bm = BodyModel.load(dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    betas = bm.sample_betas(8, generator=g)
    coeffs = bm.anny_from_betas(betas)
    torch.testing.assert_close(bm.betas_from_anny(coeffs), betas, atol=1e-3, rtol=0)
