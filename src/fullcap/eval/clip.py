"""How close a capture came to a synthetic clip's ground truth.

Compares a ``result.npz`` written by ``fullcap capture`` with the ``.npz`` that
``fullcap synth clip`` writes beside its video (same frames, same camera). Metrics over the
frames where the part was found (``*_found``), with how many that was:

- ``body_err2d_px``: mean distance of the 33 body keypoints in image pixels; ``body_pck2d``:
  fraction within 5 % of the person's height in the image;
- ``body_pa_mpjpe_mm``: body33 3D error after Procrustes (rotation, translation, scale) per
  frame; ``body_mpjpe_mm``: pelvis-aligned, no rotation or scale;
- ``hand_err2d_px`` (both hands), ``face_err2d_px`` (68 landmarks);
- ``transl_err_m``: distance of the fitted pelvis position to the true one (camera frame;
  monocular depth is ambiguous in scale, so this mostly measures depth);
- ``expression_mae``: mean absolute error of the 52 ARKit weights (FaceNet), beside
  ``expression_mae_neutral`` (always answering neutral) and ``jaw_open_corr`` (correlation of
  jawOpen over the frames, the action talking moves most; when it varies).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from fullcap.eval.metrics import pa_errors
from fullcap.synth.samplers import ARKIT_NAMES

__all__ = ["compare", "load_truth"]


def load_truth(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A clip's ground truth (no pickles)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _found(result: dict[str, np.ndarray], part: str, n: int) -> np.ndarray:
    key = f"{part}_found"
    found = result[key] if key in result else np.zeros(n, bool)
    return np.asarray(found[:n], bool)


def compare(result: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, float]:
    """Metrics (see the module doc) of a capture ``result`` against a clip's ``truth``."""
    n = min(len(result["frame"]), len(truth["body_uv"]))
    idx = np.asarray(result["frame"][:n], np.int64)
    if (idx < 0).any() or (idx >= len(truth["body_uv"])).any():
        raise ValueError("the result's frame numbers do not fit the clip")
    out: dict[str, float] = {"frames": float(n)}
    body = _found(result, "body", n)
    out["body_frames"] = float(body.sum())
    if body.any():
        uv, t_uv = result["body_uv"][:n][body], truth["body_uv"][idx[body]]
        err = np.linalg.norm(uv - t_uv, axis=-1)
        height = np.ptp(t_uv[..., 1], axis=1)[:, None]
        out["body_err2d_px"] = float(err.mean())
        out["body_pck2d"] = float((err < 0.05 * height).mean())
        xyz = result["body_xyz"][:n][body].astype(np.float64)
        t_xyz = truth["body_cam"][idx[body]].astype(np.float64)
        t_xyz = t_xyz - t_xyz[:, :1]  # pelvis first in BODY33
        ok = np.isfinite(xyz).all((1, 2))
        if ok.any():
            e, m = pa_errors(torch.from_numpy(xyz[ok]), torch.from_numpy(t_xyz[ok]))
            out["body_pa_mpjpe_mm"] = float(e[m].mean()) * 1000
            out["body_mpjpe_mm"] = float(np.linalg.norm(xyz[ok] - t_xyz[ok], axis=-1).mean()) * 1000
    errs = []
    for side in ("left", "right"):
        f = _found(result, f"{side}_hand", n)
        if f.any():
            d = result[f"{side}_hand_uv"][:n][f] - truth[f"{side}_hand_uv"][idx[f]]
            errs.append(np.linalg.norm(d, axis=-1).ravel())
        out[f"{side}_hand_frames"] = float(f.sum())
    if errs:
        out["hand_err2d_px"] = float(np.concatenate(errs).mean())
    face = _found(result, "face", n)
    out["face_frames"] = float(face.sum())
    if face.any():
        d = result["face_uv"][:n][face] - truth["face_uv"][idx[face]]
        out["face_err2d_px"] = float(np.linalg.norm(d, axis=-1).mean())
        if "face_expression" in result and "expression" in truth:
            e = result["face_expression"][:n][face]
            ok = np.isfinite(e).all(1)
            if ok.any():
                t_e = truth["expression"][idx[face]][ok]
                out["expression_mae"] = float(np.abs(e[ok] - t_e).mean())
                out["expression_mae_neutral"] = float(np.abs(t_e).mean())
                j = ARKIT_NAMES.index("jawOpen")
                if ok.sum() > 2 and t_e[:, j].std() > 1e-3 and e[ok][:, j].std() > 1e-6:
                    out["jaw_open_corr"] = float(np.corrcoef(e[ok][:, j], t_e[:, j])[0, 1])
    model = _found(result, "model", n)
    if model.any() and "transl" in result:
        tr = result["transl"][:n][model]
        ok = np.isfinite(tr).all(1)
        if ok.any():
            d = tr[ok] - truth["transl"][idx[model]][ok]
            out["transl_err_m"] = float(np.linalg.norm(d, axis=-1).mean())
    return out
