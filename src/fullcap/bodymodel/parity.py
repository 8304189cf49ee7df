"""Parity of fullcap's body model with Anny's own forward (``fullcap bodymodel parity``).

Random bodies: Anny phenotypes uniform over their full range, the 52 facial actions uniform
in [0, 1], every bone rotated by Gaussian axis-angle (0.35 rad per axis), random root
translation. Anny poses them with its own forward; fullcap with the betas projected from
Anny's coefficients. Needs ``anny`` (``pip install 'fullcap[build]'``).
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
    from fullcap.bodymodel.build import anny_coefficients

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
        betas = bm.betas_from_anny(anny_coefficients(anny_model, phenotypes).to(dtype))
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
        "vertex_mean_mm": float(v.mean()),
        "vertex_max_mm": float(v.max()),
        "joint_mean_mm": float(j.mean()),
        "joint_max_mm": float(j.max()),
    }
