"""Similarity (Procrustes) alignment of point sets, e.g. for PA-MPJPE."""

from __future__ import annotations

import roma
import torch

__all__ = ["procrustes_align"]


def procrustes_align(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    scale: bool = True,
) -> torch.Tensor:
    """Align ``pred`` onto ``target`` with the best rotation, translation and uniform scale.

    Solves ``min_{s, R, t} sum_i w_i ||s R p_i + t - q_i||^2`` per batch element (Umeyama, via
    :func:`roma.rigid_points_registration`) and returns ``s R p_i + t``. Both point sets must be
    in the same units and any (common) frame; the result is in ``target``'s frame.

    Args:
        pred: ``(B, N, 3)`` points to align.
        target: ``(B, N, 3)`` corresponding target points.
        weights: optional ``(B, N)`` non-negative weights (e.g. joint visibility); points with
            weight 0 do not influence the fit. Each row needs a positive sum.
        scale: fit the uniform scale ``s`` as well; ``s = 1`` (rigid alignment) otherwise.

    Returns:
        ``(B, N, 3)`` aligned copy of ``pred`` (differentiable w.r.t. both inputs).
    """
    if pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"pred must have shape (B, N, 3), got {tuple(pred.shape)}")
    if target.shape != pred.shape:
        raise ValueError(
            f"target must have the shape of pred {tuple(pred.shape)}, got {tuple(target.shape)}"
        )
    if weights is not None:
        if weights.shape != pred.shape[:2]:
            raise ValueError(
                f"weights must have shape (B, N) = {tuple(pred.shape[:2])}, "
                f"got {tuple(weights.shape)}"
            )
        weights = weights.to(pred.dtype)
    if scale:
        R, t, s = roma.rigid_points_registration(pred, target, weights, compute_scaling=True)
        R = R * s[..., None, None]
    else:
        R, t = roma.rigid_points_registration(pred, target, weights, compute_scaling=False)
    return pred @ R.transpose(-1, -2) + t[..., None, :]
