"""Small pieces several task modules share (no TensorFlow at import)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import TaskOption

#: The answer's units (shared by the tasks whose answer is a number in units).
UNITS = TaskOption(
    "units",
    "--units",
    "Units of the answer, shown with every result (e.g. mg/L, bar).",
    metavar="TEXT",
    default="",
)

TRUE_COLOR = "#1a9641"  # green
PRED_COLOR = "#d7191c"  # red

#: The end of every task's "not better than the baseline" checklist.
COMMON_CHECKLIST = (
    "too few epochs, or early stopping too soon: look at plots/history.png "
    "(is the validation metric still falling?)",
    "learning rate: too high diverges or sticks at the mean, too low never leaves it; "
    "try 10x lower and 10x higher",
    "run `edgereg train ... --sanity`: a model that cannot overfit 8 images has a bug "
    "in its data or labels, not too little data",
    "the training and evaluation data come from the same kind of camera, lighting and framing",
)


def linear_output(units: int) -> Any:
    """A regression output: linear, starting near 0.5 with a small kernel.

    Why linear, not sigmoid: measured on the point sample set, a sigmoid output trained to
    3.38 px and a linear one to 2.45 px in the same steps, and a full-int8 sigmoid loses
    precision twice: its logit is an int8 tensor and TFLite then fixes the LOGISTIC
    output to 256 steps over [0, 1]. A linear output's int8 range is calibrated to the
    targets' own range. The decoder applies the bounds (edge_runtime/tasks).
    """
    import keras

    return keras.layers.Dense(
        units,
        bias_initializer=keras.initializers.Constant(0.5),
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="output",
    )


def histogram(values: np.ndarray, bins: int = 10, width: int = 40) -> list[str]:
    """A text histogram for reports."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return [f"all {len(values)} values are {lo:g}"]
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    top = counts.max()
    out = []
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        bar = "#" * int(round(width * c / top)) if top else ""
        out.append(f"{a:10.4g} .. {b:<10.4g} {c:6d} {bar}")
    return out


def value_metrics(yt: np.ndarray, yp: np.ndarray) -> dict[str, Any]:
    """MAE, RMSE and R² in the target's units."""
    if yt.size == 0:
        return {"mae": None, "rmse": None, "r2": None}
    err = yp.astype(np.float64) - yt.astype(np.float64)
    ss_res = float((err**2).sum())
    ss_tot = float(((yt - yt.mean(dtype=np.float64)) ** 2).sum())
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": (1.0 - ss_res / ss_tot) if ss_tot > 0 else None,
    }


def as_values(a: Any, name: str) -> np.ndarray:
    """(N,) float64 values (an (N, 1) array is accepted)."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected shape (N,) values, got {arr.shape}")
    return arr
