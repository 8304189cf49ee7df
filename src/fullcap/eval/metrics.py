"""Keypoint metrics as pure functions of predictions, targets and masks.

Conventions: 3D points (B, P, 3) in one unit (metres unless a function says otherwise);
2D points (B, P, 2) in pixels; masks (B, P) bool, True = the keypoint counts. Rates are
fractions in [0, 1]; an empty selection gives NaN (nothing to measure), never 0.
"""

from __future__ import annotations

import math

import torch

from fullcap.geometry import procrustes_align

__all__ = [
    "auc_pck",
    "mean_error",
    "pa_errors",
    "pck",
    "pck_curve",
    "root_aligned_errors",
]


def _mask(shape: tuple[int, ...], valid: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    if valid is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if valid.shape != shape:
        raise ValueError(f"valid must have shape {shape}, got {tuple(valid.shape)}")
    return valid.bool()


def pa_errors(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    min_points: int = 4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-keypoint distances (B, P) after Procrustes alignment (rotation, translation and
    scale) of ``pred`` onto ``target`` over the valid keypoints of each sample.

    Returns (errors, mask): ``mask`` is ``valid`` with samples of fewer than ``min_points``
    valid keypoints dropped (their alignment is not determined).
    """
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"pred and target must be (B, P, 3), got {pred.shape}, {target.shape}")
    m = _mask(pred.shape[:2], valid, pred.device)
    keep = m.sum(1) >= min_points
    m = m & keep[:, None]
    err = torch.full(pred.shape[:2], math.nan, dtype=pred.dtype, device=pred.device)
    if keep.any():
        p, t, w = pred[keep].double(), target[keep].double(), m[keep].double()
        aligned = procrustes_align(p, t, weights=w)
        err[keep] = (aligned - t).norm(dim=-1).to(pred.dtype)
    return err, m


def root_aligned_errors(
    pred: torch.Tensor, target: torch.Tensor, root: int, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Distances (B, P) after moving each set's ``root`` keypoint to the origin; ``scale``
    (B,) multiplies both first (e.g. normalised hands -> metres)."""
    p = pred - pred[:, root : root + 1]
    t = target - target[:, root : root + 1]
    if scale is not None:
        p, t = p * scale[:, None, None], t * scale[:, None, None]
    return (p - t).norm(dim=-1)


def pck(errors: torch.Tensor, threshold: float | torch.Tensor, valid: torch.Tensor) -> float:
    """Fraction of valid keypoints whose error is <= ``threshold`` (a number, or (B,) per
    sample, in the errors' unit)."""
    thr = torch.as_tensor(threshold, dtype=errors.dtype, device=errors.device)
    if thr.ndim == 1:
        thr = thr[:, None]
    v = valid.bool() & torch.isfinite(errors)
    n = int(v.sum())
    return float(((errors <= thr) & v).sum()) / n if n else math.nan


def mean_error(errors: torch.Tensor, valid: torch.Tensor) -> float:
    """Mean of the valid, finite errors (NaN when there are none)."""
    v = valid.bool() & torch.isfinite(errors)
    return float(errors[v].mean()) if v.any() else math.nan


def pck_curve(
    errors: torch.Tensor, valid: torch.Tensor, lo: float, hi: float, n: int = 31
) -> tuple[torch.Tensor, torch.Tensor]:
    """(thresholds (n,), PCK at each) over ``n`` evenly spaced thresholds in [lo, hi]."""
    thr = torch.linspace(lo, hi, n, dtype=torch.float64)
    return thr, torch.tensor([pck(errors, float(t), valid) for t in thr], dtype=torch.float64)


def auc_pck(
    errors: torch.Tensor, valid: torch.Tensor, lo: float = 20.0, hi: float = 50.0, n: int = 31
) -> float:
    """Area under the PCK curve over thresholds [lo, hi], normalised to [0, 1] (trapezoids):
    1 when every error is <= lo. Hands: errors in mm, 20-50 mm (the minimal-hand protocol)."""
    thr, curve = pck_curve(errors, valid, lo, hi, n)
    if torch.isnan(curve).any():
        return math.nan
    return float(torch.trapezoid(curve, thr) / (hi - lo))
