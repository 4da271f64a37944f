"""Smoothing across frames, per output value: an EMA and the One-Euro filter.

Both use the frames' timestamps (milliseconds), so a dropped frame or a slow camera does
not change how much they smooth, and both reset when frames stop for longer than
``max_gap_ms`` (or time runs backwards, e.g. a looping file): the first frame after a gap
passes through unchanged instead of being dragged towards a stale value.

One-Euro: Casiez, Roussel, Vogel, "1 Euro Filter", CHI 2012. Low ``min_cutoff`` (Hz)
removes jitter when still; higher ``beta`` reduces lag when moving.
"""

from __future__ import annotations

import math

import numpy as np

SMOOTHERS = ("ema", "one_euro")


class _Filter:
    def __init__(self, max_gap_ms: float = 1000.0) -> None:
        self.max_gap_ms = float(max_gap_ms)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next value passes through unchanged."""
        self._t: float | None = None
        self._x: np.ndarray | None = None

    def _gap(self, t_ms: float, x: np.ndarray) -> bool:
        return (
            self._t is None
            or self._x is None
            or self._x.shape != x.shape
            or t_ms <= self._t
            or t_ms - self._t > self.max_gap_ms
        )

    def __call__(self, x: np.ndarray, t_ms: float) -> np.ndarray:
        raise NotImplementedError


class EMA(_Filter):
    """Exponential moving average with time constant ``tau_ms``.

    ``y += a * (x - y)`` with ``a = 1 - exp(-dt / tau)``: after ``tau_ms`` of a step the
    output has moved 63 % of the way.
    """

    def __init__(self, tau_ms: float = 100.0, max_gap_ms: float = 1000.0) -> None:
        if tau_ms <= 0:
            raise ValueError("tau_ms must be positive")
        self.tau_ms = float(tau_ms)
        super().__init__(max_gap_ms)

    def __call__(self, x: np.ndarray, t_ms: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._gap(t_ms, x):
            self._t, self._x = t_ms, x.copy()
            return x.copy()
        a = 1.0 - math.exp(-(t_ms - self._t) / self.tau_ms)  # type: ignore[operator]
        self._x = self._x + a * (x - self._x)  # type: ignore[operator]
        self._t = t_ms
        return self._x.copy()


class OneEuro(_Filter):
    """The One-Euro filter, element-wise over an array of outputs."""

    def __init__(
        self,
        min_cutoff: float = 1.0,
        beta: float = 0.0,
        d_cutoff: float = 1.0,
        max_gap_ms: float = 1000.0,
    ) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("min_cutoff and d_cutoff must be positive, beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        super().__init__(max_gap_ms)

    def reset(self) -> None:
        super().reset()
        self._dx: np.ndarray | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt_s: float) -> np.ndarray:
        tau = 1.0 / (2 * math.pi * np.asarray(cutoff, dtype=np.float64))
        return 1.0 / (1.0 + tau / dt_s)

    def __call__(self, x: np.ndarray, t_ms: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._gap(t_ms, x):
            self._t, self._x, self._dx = t_ms, x.copy(), np.zeros_like(x)
            return x.copy()
        dt = (t_ms - self._t) / 1000.0  # type: ignore[operator]
        dx = (x - self._x) / dt  # type: ignore[operator]
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = self._dx + a_d * (dx - self._dx)  # type: ignore[operator]
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = self._alpha(cutoff, dt)
        self._x = self._x + a * (x - self._x)  # type: ignore[operator]
        self._t = t_ms
        return self._x.copy()


def make_smoother(kind: str | None, **kw: float) -> _Filter | None:
    """``None`` | ``"ema"`` | ``"one_euro"`` -> a filter (or None for no smoothing)."""
    if kind in (None, "", "none"):
        return None
    k = kind.replace("-", "_").lower()
    if k == "ema":
        return EMA(**kw)
    if k in ("one_euro", "oneeuro", "1euro"):
        return OneEuro(**kw)
    raise ValueError(f"smoothing: {kind!r} is not one of none, {', '.join(SMOOTHERS)}")
