"""The 1€ filter (Casiez, Roussel, Vogel, CHI 2012) for keypoints and for rotations.

A first-order low-pass filter whose cutoff rises with the signal's speed: slow motion is
smoothed hard (little jitter), fast motion passes with little lag. Per sample, with
``dt = t - t_prev`` from the samples' own timestamps (no fixed rate is assumed)::

    alpha(fc)  = r / (r + 1),  r = 2 pi fc dt        (exponential smoothing factor)
    dx_hat     = dx_hat + alpha(d_cutoff) (dx - dx_hat),  dx = (x - x_hat) / dt
    cutoff     = min_cutoff + beta * |dx_hat| / scale
    x_hat      = x_hat + alpha(cutoff) (x - x_hat)

**Scale.** The speed is divided by the size of what moves (``scale``: e.g. the person's box
diagonal in pixels for image points, the skeleton's extent in metres for 3D points), so
``beta`` is in (sizes per second)^-1 and the filter behaves the same for a person near the
camera and far from it. For keypoint arrays ``(..., D)`` the speed of each point is the norm
of its D-dimensional velocity, so all coordinates of a point share one cutoff.

**Rotations** (:class:`RotationFilter`) are filtered on SO(3): the "velocity" is the angular
velocity (rotation vector of ``q_hat^-1 q`` over dt, rad/s, in the tangent space at the
estimate) and the update is a slerp from the estimate toward the measurement by ``alpha``.
Quaternions q and -q are the same rotation (double cover): the measurement is flipped into the
estimate's hemisphere first, so the filter never takes the long way round or flips.

**Timestamps.** A sample whose timestamp is not after the previous one is ignored (the last
estimate is returned); a gap longer than ``reset_gap_s`` restarts the filter from the sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import roma
import torch

__all__ = [
    "FilterBank",
    "OneEuroConfig",
    "OneEuroFilter",
    "RotationFilter",
    "mean_acceleration",
    "smoothing_factor",
]


@dataclass(frozen=True)
class OneEuroConfig:
    """Parameters of the 1€ filter.

    min_cutoff: Hz, cutoff when still; lower is smoother at rest but lags more.
    beta: speed coefficient, per (scale-normalised) unit of speed: (sizes / s)^-1 for points,
        (rad / s)^-1 for rotations; higher follows fast motion with less lag.
    d_cutoff: Hz, cutoff of the low-pass on the speed estimate.
    reset_gap_s: seconds; a longer gap between samples restarts the filter.

    The defaults were chosen on a synthetic walking clip (30 fps, 2 px / 1 cm keypoint noise,
    ``tests/test_capture.py``): they cut the keypoints' mean acceleration about 3x while the
    error to the truth goes down, not up (lower ``beta`` smooths more but lags).
    """

    min_cutoff: float = 1.0
    beta: float = 5.0
    d_cutoff: float = 1.0
    reset_gap_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "d_cutoff", "reset_gap_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"OneEuroConfig.{name} must be a positive number, got {value!r}")
        if not (isinstance(self.beta, int | float) and math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"OneEuroConfig.beta must be >= 0, got {self.beta!r}")


def smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Exponential smoothing factor in (0, 1) of a first-order low-pass at ``cutoff`` Hz over
    a step of ``dt`` seconds: ``r / (r + 1)`` with ``r = 2 pi cutoff dt``."""
    r = 2.0 * math.pi * cutoff * dt
    return r / (r + 1.0)


class _Clock:
    """Shared timestamp logic: returns dt, or None to skip, or 0.0 to (re)start."""

    def __init__(self, config: OneEuroConfig):
        self.config = config
        self.t_prev: float | None = None

    def step(self, t: float) -> float | None:
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"timestamp must be finite, got {t}")
        if self.t_prev is None or t - self.t_prev > self.config.reset_gap_s:
            self.t_prev = t
            return 0.0
        dt = t - self.t_prev
        if dt <= 0:
            return None
        self.t_prev = t
        return dt


class OneEuroFilter:
    """1€ filter for arrays of points ``(..., D)`` (a scalar signal is ``(1,)``).

    Call it once per sample: ``y = f(x, t, scale)``; x keeps its shape and dtype family
    (float64 internally). ``scale``: a float or an array broadcastable to ``x.shape[:-1]``.
    A change of shape restarts the filter.
    """

    def __init__(self, config: OneEuroConfig | None = None):
        self.config = config or OneEuroConfig()
        self.reset()

    def reset(self) -> None:
        self._clock = _Clock(self.config)
        self.x_hat: np.ndarray | None = None
        self.dx_hat: np.ndarray | None = None

    def __call__(self, x: np.ndarray, t: float, scale: float | np.ndarray = 1.0) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 0:
            raise ValueError("x must be an array (..., D); wrap a scalar as [value]")
        if self.x_hat is not None and self.x_hat.shape != x.shape:
            self.reset()
        dt = self._clock.step(t)
        if dt is None:
            return self.x_hat.copy()
        if dt == 0.0 or self.x_hat is None:
            self.x_hat, self.dx_hat = x.copy(), np.zeros_like(x)
            return x.copy()
        c = self.config
        dx = (x - self.x_hat) / dt
        self.dx_hat = self.dx_hat + smoothing_factor(c.d_cutoff, dt) * (dx - self.dx_hat)
        speed = np.linalg.norm(self.dx_hat, axis=-1) / np.maximum(np.asarray(scale), 1e-12)
        alpha = smoothing_factor(c.min_cutoff + c.beta * speed, dt)[..., None]
        self.x_hat = self.x_hat + alpha * (x - self.x_hat)
        return self.x_hat.copy()


def _to_quat(rot: np.ndarray) -> torch.Tensor:
    return roma.rotmat_to_unitquat(torch.as_tensor(rot, dtype=torch.float64))


class RotationFilter:
    """1€ filter on SO(3) for rotation matrices ``(..., 3, 3)`` (one cutoff per rotation).

    Internally unit quaternions (roma's XYZW); the returned matrices are proper rotations.
    """

    def __init__(self, config: OneEuroConfig | None = None):
        self.config = config or OneEuroConfig()
        self.reset()

    def reset(self) -> None:
        self._clock = _Clock(self.config)
        self.q_hat: torch.Tensor | None = None
        self.w_hat: torch.Tensor | None = None

    def __call__(self, rot: np.ndarray, t: float) -> np.ndarray:
        rot = np.asarray(rot, dtype=np.float64)
        if rot.shape[-2:] != (3, 3):
            raise ValueError(f"rot must have shape (..., 3, 3), got {rot.shape}")
        if self.q_hat is not None and self.q_hat.shape[:-1] != rot.shape[:-2]:
            self.reset()
        dt = self._clock.step(t)
        if dt is None:
            return roma.unitquat_to_rotmat(self.q_hat).numpy()
        q = _to_quat(rot)
        if dt == 0.0 or self.q_hat is None:
            self.q_hat, self.w_hat = q, torch.zeros(*q.shape[:-1], 3, dtype=torch.float64)
            return roma.unitquat_to_rotmat(q).numpy()
        # Double cover: bring q into q_hat's hemisphere (same rotation, shortest arc).
        q = torch.where(((q * self.q_hat).sum(-1, keepdim=True) < 0), -q, q)
        delta = roma.unitquat_to_rotvec(
            roma.quat_product(roma.quat_conjugation(self.q_hat), q)
        )  # tangent at q_hat, radians, |delta| <= pi
        c = self.config
        w = delta / dt
        self.w_hat = self.w_hat + smoothing_factor(c.d_cutoff, dt) * (w - self.w_hat)
        speed = self.w_hat.norm(dim=-1, keepdim=True)
        alpha = smoothing_factor(c.min_cutoff + c.beta * speed, dt)
        step = roma.rotvec_to_unitquat(alpha * delta)  # slerp(q_hat, q, alpha)
        self.q_hat = roma.quat_normalize(roma.quat_product(self.q_hat, step))
        return roma.unitquat_to_rotmat(self.q_hat).numpy()


class FilterBank:
    """Named 1€ filters created on first use: one per stream (body uv, hand xyz, pose...).

    ``config`` is used for points and rotations; ``slow`` (default: cutoff / 5, beta 0) for
    quantities that should barely move (shape coefficients).
    """

    def __init__(self, config: OneEuroConfig, slow: OneEuroConfig | None = None):
        self.config = config
        self.slow = slow or OneEuroConfig(
            min_cutoff=config.min_cutoff / 5,
            beta=0.0,
            d_cutoff=config.d_cutoff,
            reset_gap_s=config.reset_gap_s,
        )
        self._filters: dict[str, OneEuroFilter | RotationFilter] = {}

    def reset(self) -> None:
        self._filters.clear()

    def drop(self, prefix: str) -> None:
        """Forget the streams whose name starts with ``prefix`` (a part that disappeared)."""
        for name in [n for n in self._filters if n.startswith(prefix)]:
            del self._filters[name]

    def points(
        self, name: str, x: np.ndarray, t: float, scale: float | np.ndarray = 1.0, slow=False
    ) -> np.ndarray:
        """Filter a ``(..., D)`` array on stream ``name``; returns float32."""
        f = self._filters.get(name)
        if not isinstance(f, OneEuroFilter):
            f = self._filters[name] = OneEuroFilter(self.slow if slow else self.config)
        return f(x, t, scale).astype(np.float32)

    def rotations(self, name: str, rot: np.ndarray, t: float) -> np.ndarray:
        """Filter ``(..., 3, 3)`` rotations on stream ``name``; returns float32."""
        f = self._filters.get(name)
        if not isinstance(f, RotationFilter):
            f = self._filters[name] = RotationFilter(self.config)
        return f(rot, t).astype(np.float32)


def mean_acceleration(x: np.ndarray, t: np.ndarray) -> float:
    """Jitter measure: mean norm of the second derivative of a trajectory.

    Args:
        x: (T, ..., D) positions (e.g. (T, P, 3) keypoints), any unit.
        t: (T,) increasing timestamps in seconds (need not be regular).
    Returns:
        mean over frames 1..T-2 and points of |x''| in units / s^2 (non-uniform central
        second difference).
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if len(t) != len(x) or len(t) < 3:
        raise ValueError("need at least 3 samples with one timestamp each")
    dt = np.diff(t)
    if np.any(dt <= 0):
        raise ValueError("timestamps must increase")
    shape = (-1,) + (1,) * (x.ndim - 1)
    v = np.diff(x, axis=0) / dt.reshape(shape)
    a = 2 * np.diff(v, axis=0) / (t[2:] - t[:-2]).reshape(shape)
    return float(np.linalg.norm(a, axis=-1).mean())
