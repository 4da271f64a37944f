"""EMA and One-Euro filters: step response, jitter, lag, and reset on gaps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_runtime.smoothing import EMA, OneEuro, make_smoother


def _run(f, xs, dt_ms=33.0, t0=0.0):
    return np.array([f(np.array([x]), t0 + i * dt_ms)[0] for i, x in enumerate(xs)])


def test_ema_step_response_follows_its_time_constant():
    f = EMA(tau_ms=100.0)
    f(np.array([0.0]), 0.0)
    y = f(np.array([1.0]), 100.0)[0]
    assert y == pytest.approx(1 - math.exp(-1), abs=1e-9)
    ys = _run(f, [1.0] * 50, dt_ms=20.0, t0=120.0)
    assert np.all(np.diff(ys) > 0) and ys[-1] == pytest.approx(1.0, abs=1e-3)


def test_ema_is_independent_of_frame_rate():
    slow, fast = EMA(tau_ms=200.0), EMA(tau_ms=200.0)
    for f in (slow, fast):
        f(np.array([0.0]), 0.0)
    for t in range(50, 401, 50):
        a = slow(np.array([1.0]), float(t))
    for t in range(10, 401, 10):
        b = fast(np.array([1.0]), float(t))
    assert a[0] == pytest.approx(b[0], abs=1e-9)


def test_filters_work_per_output():
    f = EMA(tau_ms=100.0)
    f(np.array([0.0, 10.0]), 0.0)
    y = f(np.array([1.0, 10.0]), 100.0)
    assert y[0] == pytest.approx(0.632, abs=1e-3) and y[1] == pytest.approx(10.0)


@pytest.mark.parametrize(
    "make", [lambda: EMA(100.0, max_gap_ms=500), lambda: OneEuro(max_gap_ms=500)]
)
def test_reset_on_gap_backwards_time_and_explicit_reset(make):
    f = make()
    f(np.array([0.0]), 0.0)
    assert f(np.array([5.0]), 33.0)[0] < 5.0  # smoothed
    assert f(np.array([7.0]), 1000.0)[0] == 7.0  # gap > max_gap_ms: passes through
    assert f(np.array([3.0]), 10.0)[0] == 3.0  # time went backwards (looping file)
    f.reset()
    assert f(np.array([-2.0]), 20.0)[0] == -2.0
    assert f(np.array([1.0, 2.0]), 40.0).tolist() == [1.0, 2.0]  # shape change resets


def test_one_euro_removes_jitter_when_still():
    rng = np.random.default_rng(0)
    noisy = 0.5 + rng.normal(0, 0.01, 300)
    ys = _run(OneEuro(min_cutoff=0.5, beta=0.0), noisy)
    assert np.std(ys[50:]) < 0.3 * np.std(noisy[50:])
    assert np.mean(ys[50:]) == pytest.approx(0.5, abs=0.005)


def test_one_euro_beta_reduces_lag_when_moving():
    ramp = np.linspace(0, 1, 60)
    still = _run(OneEuro(min_cutoff=0.5, beta=0.0), ramp)
    quick = _run(OneEuro(min_cutoff=0.5, beta=20.0), ramp)
    lag_still = np.mean(np.abs(ramp[10:] - still[10:]))
    lag_quick = np.mean(np.abs(ramp[10:] - quick[10:]))
    assert lag_quick < 0.5 * lag_still


def test_one_euro_step_converges():
    f = OneEuro(min_cutoff=1.0, beta=0.1)
    ys = _run(f, [0.0] + [1.0] * 120)
    assert 0 < ys[1] < 1 and ys[-1] == pytest.approx(1.0, abs=1e-3)


def test_make_smoother():
    assert make_smoother(None) is None and make_smoother("none") is None
    assert isinstance(make_smoother("ema", tau_ms=50.0), EMA)
    assert isinstance(make_smoother("one-euro"), OneEuro)
    with pytest.raises(ValueError, match="kalman"):
        make_smoother("kalman")
