"""Parity of fullcap's body model with Anny's own forward (``fullcap bodymodel parity``).

Random bodies: Anny phenotypes uniform over their full range, the 52 facial actions uniform
in [0, 1], every bone rotated by Gaussian axis-angle (0.35 rad per axis), random root
translation. Anny poses them with its own forward; fullcap with the betas fitted (least
squares) to the rest mesh Anny gives for the same phenotypes (``shape_fit_max_mm``: what the
fit leaves). The comparison goes through meshes, not through Anny's blendshape coefficients:
Anny rebuilds its compact coefficient basis with each cache build (``~/.cache/anny``), so
coefficients from one machine do not map onto the betas of an asset built on another. Needs
``anny`` (``pip install 'fullcap[build]'``).
"""

from __future__ import annotations

import warnings

import roma
import torch

from fullcap.bodymodel.model import BodyModel


def anny_reference_model():
    """Anny as the body-model build uses it (rig/topology "anny", all facial actions)."""
    from fullcap.bodymodel.build import _anny_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _anny_model()


def compare(
    n: int = 128, seed: int = 7, dtype: torch.dtype = torch.float64, anny_model=None
) -> dict[str, float]:
    """Vertex and joint errors (mm) between fullcap and Anny on ``n`` random bodies."""
    anny_model = anny_model if anny_model is not None else anny_reference_model()
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    phenotypes = torch.rand(n, 6, generator=g, dtype=f64)
    expression = torch.rand(n, 52, generator=g, dtype=f64)
    rot = roma.rotvec_to_rotmat(torch.randn(n, 104, 3, generator=g, dtype=f64) * 0.35)
    transl = torch.randn(n, 3, generator=g, dtype=f64)
    deltas = torch.eye(4, dtype=f64).repeat(n, 104, 1, 1)
    deltas[:, :, :3, :3] = rot
    deltas[:, 0, :3, 3] = transl
    with torch.no_grad():
        ref = anny_model(
            pose_parameters=deltas, phenotype_kwargs=phenotypes, facial_actions=expression
        )
        bm = BodyModel.load(dtype=dtype)
        # Anny's rest mesh carries the facial actions; fit the betas to it without them.
        no_shape = torch.zeros(n, bm.num_betas, dtype=dtype)
        expression_offsets = bm.shaped(no_shape, expression.to(dtype))[0] - bm.template_vertices
        betas, fit_mm = fit_betas(bm, ref["rest_vertices"] - expression_offsets.double())
        out = bm(
            betas=betas,
            expression=expression.to(dtype),
            pose=rot[:, 1:].to(dtype),
            global_orient=rot[:, 0].to(dtype),
            transl=transl.to(dtype),
        )
    v = (out.vertices.double() - ref["vertices"]).norm(dim=-1) * 1000
    j = (out.joints.double() - ref["bone_poses"][..., :3, 3]).norm(dim=-1) * 1000
    return {
        "samples": n,
        "dtype": str(dtype).replace("torch.", ""),
        "shape_fit_max_mm": fit_mm,
        "vertex_mean_mm": float(v.mean()),
        "vertex_max_mm": float(v.max()),
        "joint_mean_mm": float(j.mean()),
        "joint_max_mm": float(j.max()),
    }


def fit_betas(bm: BodyModel, rest_vertices: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Betas (B, K) whose rest mesh is nearest (least squares) to ``rest_vertices`` (B, V, 3),
    and the largest vertex distance (mm) left between the two."""
    f64 = torch.float64
    basis = bm.shape_basis.to(f64).flatten(1)  # (K, V*3)
    target = (rest_vertices.to(f64) - bm.template_vertices.to(f64)).flatten(1)  # (B, V*3)
    betas = torch.linalg.lstsq(basis.T, target.T).solution.T  # (B, K)
    residual = (betas @ basis - target).unflatten(1, (-1, 3)).norm(dim=-1)
    return betas.to(bm.dtype), float(residual.max()) * 1000
