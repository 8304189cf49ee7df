"""Building the face model from the body model and the appearance model, deterministically.

- Face region (:func:`face_vertex_ids`): the ``head`` and ``eyes`` vertices of the rest mesh
  that lie, relative to the midpoint of the eyeballs, in front of the ears (y < 3.5 cm behind
  the eye centres), below the hairline of the synthetic appearance model (z < 4.5 cm above)
  and above the throat (z > -12.5 cm). About 3100 vertices; all face68 landmarks are in it.
- Identity (:func:`identity_pca`): the whole-body shape basis restricted to the face, made
  relative to the head joint (so body height and neck length, which only move the head, drop
  out), then a PCA under the distribution of the body model's shape banks (adult and
  full-age banks, equally weighted): exact, through the betas' covariance (the face is linear
  in the betas). Default 20 components: they hold 99.99 % of the face-shape variance (5 hold
  99.5 %, 10 hold 99.9 %).
- Albedo (:func:`albedo_pca`): 500 appearances sampled from
  :class:`fullcap.synth.appearance.AppearanceModel` (default style, seed 0), their linear-RGB
  face albedo, PCA. Default 24 components, 99.9 % of the variance (the first one, overall skin
  tone, holds 95 %; then skin hue, lips, brows, irises, the hairline and caps; hair and cap
  edges are binary masks, which a linear model only approximates).

PCA signs are fixed (largest-magnitude entry positive) so a rebuild gives the same basis.
FaceNet stores the built tensors in its weights, so a trained network does not depend on
rebuilding bit-exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from fullcap.bodymodel.face68 import VERTICES as FACE68_VERTICES
from fullcap.bodymodel.model import BodyModel
from fullcap.face.model import FaceModel

__all__ = [
    "albedo_pca",
    "build_face_model",
    "face_triangles",
    "face_vertex_ids",
    "head_frame_shape",
    "identity_pca",
]

FACE_BACK = 0.035  # metres behind the eye centres (y)
FACE_TOP = 0.045  # metres above the eye centres (z)
FACE_BOTTOM = -0.125  # metres below the eye centres (z)


def _eye_mid(bm: BodyModel) -> np.ndarray:
    pos = bm.template_vertices.detach().cpu().double().numpy()
    eyes = bm.part_labels.cpu().numpy() == bm.part_names.index("eyes")
    return pos[eyes].mean(0)


def face_vertex_ids(bm: BodyModel) -> torch.Tensor:
    """Sorted body-model vertex ids (V,) of the face region (see the module docstring)."""
    pos = bm.template_vertices.detach().cpu().double().numpy()
    part = bm.part_labels.cpu().numpy()
    head = np.isin(part, [bm.part_names.index("head"), bm.part_names.index("eyes")])
    rel = pos - _eye_mid(bm)
    m = head & (rel[:, 1] < FACE_BACK) & (rel[:, 2] < FACE_TOP) & (rel[:, 2] > FACE_BOTTOM)
    m[list(FACE68_VERTICES)] = True
    return torch.from_numpy(np.nonzero(m)[0]).long()


def face_triangles(bm: BodyModel, vertex_ids: torch.Tensor) -> torch.Tensor:
    """Triangles (F, 3) of the body mesh with all corners in ``vertex_ids``, re-indexed into
    it (winding kept)."""
    lut = torch.full((bm.template_vertices.shape[0],), -1, dtype=torch.long)
    lut[vertex_ids] = torch.arange(len(vertex_ids))
    f = lut[bm.faces.cpu()]
    return f[(f >= 0).all(1)].contiguous()


def head_frame_shape(
    bm: BodyModel,
    vertex_ids: torch.Tensor,
    betas: torch.Tensor,
    expression: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rest face vertices (B, V, 3) relative to the shaped head joint (the head frame, metres)
    for betas (B, K) and expression (B, 52) (None: neutral)."""
    k = betas.shape[1]
    ids = vertex_ids.to(betas.device)
    head = bm.bone_names.index("head")
    v = bm.template_vertices[ids] + torch.einsum("bk,kvd->bvd", betas, bm.shape_basis[:k, ids])
    if expression is not None:
        full = v.new_zeros(v.shape[0], bm.template_vertices.shape[0], 3)
        offsets = torch.einsum("be,evd->bvd", expression, bm.expression_basis)
        full.index_add_(1, bm.expression_vertex_ids, offsets)
        v = v + full[:, ids]
    joint = bm.joint_template[head] + betas @ bm.joint_shape[:k, head]
    return v - joint[:, None]


def _fix_signs(components: np.ndarray) -> np.ndarray:
    """Flip rows (k, D) so that each one's largest-magnitude entry is positive."""
    idx = np.abs(components).argmax(1)
    sign = np.sign(components[np.arange(len(components)), idx])
    return components * np.where(sign == 0, 1.0, sign)[:, None]


def identity_pca(
    bm: BodyModel, vertex_ids: torch.Tensor, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (V, 3), basis (n, V, 3) scaled by the standard deviations, and the explained
    variance fractions (K,) of the face shape relative to the head joint."""
    head = bm.bone_names.index("head")
    ids = vertex_ids.cpu()
    phi = bm.shape_basis[:, ids].double() - bm.joint_shape[:, head][:, None].double()  # (K,V,3)
    k = phi.shape[0]
    phi = phi.reshape(k, -1).cpu().numpy()
    banks = [bm.shape_bank_adult.double().cpu().numpy(), bm.shape_bank_full.double().cpu().numpy()]
    mean_b = np.mean([b.mean(0) for b in banks], axis=0)
    cov = np.mean(
        [np.cov(b.T) + np.outer(b.mean(0) - mean_b, b.mean(0) - mean_b) for b in banks], 0
    )
    evals, evecs = np.linalg.eigh(cov)
    root = evecs * np.sqrt(np.clip(evals, 0, None))  # cov = root @ root.T
    m = root.T @ phi  # (K, 3V): m.T @ m is the face covariance
    s2, u = np.linalg.eigh(m @ m.T)  # (K, K), so no SVD of the wide matrix is needed
    s2, u = np.clip(s2[::-1], 0, None), u[:, ::-1]
    s = np.sqrt(s2)
    vt = (u[:, :n].T @ m) / np.maximum(s[:n, None], 1e-30)  # unit rows
    comps = _fix_signs(vt) * s[:n, None]  # scaled by the standard deviation
    template = bm.template_vertices[ids].double().cpu().numpy()
    mean = template - bm.joint_template[head].double().cpu().numpy() + (mean_b @ phi).reshape(-1, 3)
    return mean, comps.reshape(n, -1, 3), s**2 / np.sum(s**2)


def albedo_pca(
    bm: BodyModel, vertex_ids: torch.Tensor, n: int, samples: int = 500, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (V, 3), basis (n, V, 3) scaled by the standard deviations, and explained variance
    fractions of the linear-RGB face albedo of ``samples`` synthetic appearances."""
    from fullcap.synth.appearance import AppearanceModel

    am = AppearanceModel(bm)
    rng = np.random.default_rng(seed)
    ids = vertex_ids.cpu().numpy()
    x = np.stack([am.sample(rng).albedo[ids].reshape(-1) for _ in range(samples)])
    mean = x.astype(np.float64).mean(0)
    xc = (x - mean).astype(np.float32)
    gram = (xc @ xc.T).astype(np.float64)  # (N, N): cheaper than the (3V, 3V) covariance
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    comps = (evecs[:, :n].T @ xc.astype(np.float64)) / np.sqrt(evals[:n])[:, None]  # unit rows
    comps = _fix_signs(comps) * np.sqrt(evals[:n] / (samples - 1))[:, None]
    return mean.reshape(-1, 3), comps.reshape(n, -1, 3), evals / evals.sum()


def build_face_model(
    bm: BodyModel | None = None,
    n_identity: int = 20,
    n_albedo: int = 24,
    albedo_samples: int = 500,
    seed: int = 0,
) -> tuple[FaceModel, dict[str, float]]:
    """The face model and a report (vertex/triangle counts, explained variance fractions).

    Deterministic given the body model asset, the appearance model and the arguments
    (a few seconds on one CPU core).
    """
    bm = bm if bm is not None else BodyModel.load()
    with torch.no_grad():
        ids = face_vertex_ids(bm)
        faces = face_triangles(bm, ids)
        lut = {int(v): i for i, v in enumerate(ids.tolist())}
        landmarks = torch.tensor([lut[v] for v in FACE68_VERTICES], dtype=torch.long)
        id_mean, id_basis, id_var = identity_pca(bm, ids, n_identity)
        alb_mean, alb_basis, alb_var = albedo_pca(bm, ids, n_albedo, albedo_samples, seed)
        expr = torch.zeros(bm.num_expressions, bm.template_vertices.shape[0], 3)
        expr[:, bm.expression_vertex_ids.cpu()] = bm.expression_basis.float().cpu()
        tensors = {
            "vertex_ids": ids,
            "faces": faces,
            "landmark_ids": landmarks,
            "mean_shape": torch.from_numpy(id_mean).float(),
            "identity_basis": torch.from_numpy(id_basis).float(),
            "expression_basis": expr[:, ids].contiguous(),
            "albedo_mean": torch.from_numpy(alb_mean).float(),
            "albedo_basis": torch.from_numpy(alb_basis).float(),
        }
    report = {
        "vertices": len(ids),
        "triangles": len(faces),
        "identity_variance": float(id_var[:n_identity].sum()),
        "albedo_variance": float(alb_var[:n_albedo].sum()),
    }
    return FaceModel(tensors, bm.expression_names), report
