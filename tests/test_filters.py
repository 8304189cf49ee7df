"""The 1€ filter: constant in, constant out; jitter drops with bounded lag; timestamps, not a
rate; scale awareness; rotations stay rotations and never flip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch

from fullcap.capture.filters import (
    FilterBank,
    OneEuroConfig,
    OneEuroFilter,
    RotationFilter,
    mean_acceleration,
    smoothing_factor,
)


def _noisy_sine(n=600, seed=0, irregular=False):
    rng = np.random.default_rng(seed)
    dt = 1 / 60 * (rng.uniform(0.5, 1.5, n) if irregular else np.ones(n))
    t = np.cumsum(dt)
    clean = np.sin(2 * math.pi * 0.5 * t)[:, None]  # 0.5 Hz, amplitude 1
    return t, clean, clean + rng.normal(0, 0.05, clean.shape)


def _run(f, t, x, scale=1.0):
    return np.stack([f(xi, ti, scale) for xi, ti in zip(x, t, strict=True)])


def test_smoothing_factor_known_values():
    assert smoothing_factor(1.0, 1 / (2 * math.pi)) == pytest.approx(0.5)
    assert 0 < smoothing_factor(0.01, 1e-3) < 1e-3


def test_constant_signal_stays_constant():
    f = OneEuroFilter(OneEuroConfig(min_cutoff=0.5, beta=3.0))
    x = np.array([[1.5, -2.0, 3.25]] * 50)
    t = np.cumsum(np.full(50, 0.033))
    np.testing.assert_array_equal(_run(f, t, x), x)


@pytest.mark.parametrize("irregular", [False, True])
def test_noisy_sine_jitter_drops_and_lag_is_bounded(irregular):
    t, clean, noisy = _noisy_sine(irregular=irregular)
    out = _run(OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=0.2)), t, noisy)
    acc_in, acc_out = mean_acceleration(noisy, t), mean_acceleration(out, t)
    assert acc_out < acc_in / 5, (acc_in, acc_out)  # measured: 7x
    # Lag: the best time shift of the output against the clean sine is small.
    lags = np.arange(0, 0.2, 0.005)
    err = [
        np.abs(out[100:, 0] - np.sin(2 * math.pi * 0.5 * (t[100:] - lag))).mean() for lag in lags
    ]
    assert lags[int(np.argmin(err))] < 0.1
    assert np.abs(out[100:] - clean[100:]).max() < 0.3  # of amplitude 1; measured 0.24
    # Once the (small) delay is accounted for, the output is closer to the truth than the input.
    assert min(err) < np.abs(noisy - clean).mean()


def test_irregular_timestamps_use_dt():
    """Same signal sampled at 30 and at 120 Hz: the filter's output agrees at common times
    (a fixed-rate filter would smooth 4x more per second at 120 Hz)."""
    cfg = OneEuroConfig(min_cutoff=1.0, beta=0.0)
    outs = {}
    for rate in (30, 120):
        t = np.arange(0, 2, 1 / rate)
        x = (t > 0.5).astype(float)[:, None]  # a step at 0.5 s
        y = _run(OneEuroFilter(cfg), t, x)
        outs[rate] = np.interp([0.7, 1.0, 1.5], t, y[:, 0])
    np.testing.assert_allclose(outs[30], outs[120], atol=0.06)


def test_repeated_timestamp_is_ignored_and_gap_resets():
    f = OneEuroFilter(OneEuroConfig(reset_gap_s=0.5))
    f(np.array([0.0]), 0.0)
    a = f(np.array([1.0]), 0.1)
    np.testing.assert_array_equal(f(np.array([5.0]), 0.1), a)  # same time: ignored
    np.testing.assert_array_equal(f(np.array([7.0]), 2.0), [7.0])  # long gap: restart


def test_scale_awareness():
    """A motion 3x larger seen with a 3x larger scale is filtered identically (up to 3x)."""
    t, _, noisy = _noisy_sine()
    cfg = OneEuroConfig(min_cutoff=1.0, beta=2.0)
    a = _run(OneEuroFilter(cfg), t, noisy, scale=1.0)
    b = _run(OneEuroFilter(cfg), t, 3 * noisy, scale=3.0)
    np.testing.assert_allclose(b, 3 * a, rtol=1e-9, atol=1e-12)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroConfig(min_cutoff=0)
    with pytest.raises(ValueError, match="beta"):
        OneEuroConfig(beta=-1)


def _rotations(n, seed=0, noise=0.05):
    """A smooth rotation path (about a tilted axis, 1 rad/s) with noise, double-covered
    randomly in quaternion form before converting back (matrices do not care)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / 60
    axis = torch.tensor([0.3, 0.8, -0.5], dtype=torch.float64)
    axis = axis / axis.norm()
    clean = roma.rotvec_to_rotmat(axis * t[:, None] * 1.0)
    jitter = roma.rotvec_to_rotmat(torch.randn(n, 3, generator=g, dtype=torch.float64) * noise)
    return t.numpy(), clean.numpy(), (jitter @ clean).numpy()


def test_rotation_filter_valid_smooth_and_no_flips():
    t, clean, noisy = _rotations(400)
    f = RotationFilter(OneEuroConfig(min_cutoff=1.0, beta=0.3))
    out = np.stack([f(r, ti) for r, ti in zip(noisy, t, strict=True)])
    # proper rotations
    np.testing.assert_allclose(
        out @ np.swapaxes(out, 1, 2), np.broadcast_to(np.eye(3), out.shape), atol=1e-9
    )
    np.testing.assert_allclose(np.linalg.det(out), 1.0, atol=1e-9)

    # no flips: consecutive outputs close; tracks the truth; smoother than the input
    def ang(a, b):
        return roma.rotmat_geodesic_distance(torch.from_numpy(a), torch.from_numpy(b)).numpy()

    assert ang(out[1:], out[:-1]).max() < 0.1
    assert ang(out[60:], clean[60:]).mean() < ang(noisy[60:], clean[60:]).mean()
    step_in = ang(noisy[1:], noisy[:-1])
    step_out = ang(out[1:], out[:-1])
    assert np.abs(np.diff(step_out)).mean() < np.abs(np.diff(step_in)).mean() / 3


def test_rotation_filter_handles_double_cover_and_half_turns():
    """A rotation crossing 180 degrees (where q and -q swap in conversions) is followed
    smoothly: the filtered angle never jumps."""
    t = np.arange(100) / 30
    angles = np.linspace(2.8, 3.6, 100)  # crosses pi
    rot = roma.rotvec_to_rotmat(
        torch.tensor([[0, 0, 1.0]], dtype=torch.float64) * torch.tensor(angles)[:, None]
    ).numpy()
    f = RotationFilter(OneEuroConfig(min_cutoff=2.0, beta=0.5))
    out = np.stack([f(r, ti) for r, ti in zip(rot, t, strict=True)])
    yaw = np.unwrap(np.arctan2(out[:, 1, 0], out[:, 0, 0]))
    assert np.all(np.diff(yaw) > -1e-6)  # monotonic, no spin the long way round
    assert np.abs(yaw[-1] - 3.6) < 0.2


def test_rotation_filter_batch_and_constant():
    rng = np.random.default_rng(3)
    r = roma.random_rotmat(5, dtype=torch.float64).numpy()
    f = RotationFilter()
    for i in range(10):
        out = f(r, i / 30)
    np.testing.assert_allclose(out, r, atol=1e-9)
    assert rng is not None


def test_filter_bank_streams_are_independent():
    bank = FilterBank(OneEuroConfig())
    a = bank.points("a", np.zeros((3, 2)), 0.0)
    bank.points("b", np.ones((3, 2)), 0.0)
    np.testing.assert_array_equal(bank.points("a", np.zeros((3, 2)), 0.1), a)
    assert bank.rotations("r", np.eye(3), 0.0).shape == (3, 3)
    bank.reset()
    np.testing.assert_array_equal(bank.points("a", np.full((3, 2), 4.0), 0.2), 4.0)


def test_mean_acceleration_known_value():
    t = np.array([0.0, 0.5, 1.5, 2.0, 3.0])
    x = 0.5 * 3.0 * t[:, None] ** 2  # constant acceleration 3
    assert mean_acceleration(x, t) == pytest.approx(3.0)
