"""Plots for a run directory: training curves, predicted vs true, error histogram, examples.

matplotlib (Agg backend, no display needed) is imported only when a plot is drawn.
Each function writes one PNG atomically and returns its path.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.atomic import atomic_path
from edge_runtime.spec import ModelSpec
from train import tasks

DPI = 100
#: At most this many validation-metric panels in the history plot.
MAX_METRIC_PANELS = 4


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out_png: str | Path) -> Path:
    plt = _plt()
    out = Path(out_png)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return out


# --------------------------------------------------------------------------- history
def read_history(history_csv: str | Path) -> dict[str, list[Any]]:
    """history.csv -> column name -> list (numbers where they parse, else strings)."""
    with open(history_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cols: dict[str, list[Any]] = {}
    for row in rows:
        for k, v in row.items():
            if k is None:
                continue
            cols.setdefault(k, []).append(_num(v))
    return cols


def plot_history(history_csv: str | Path, out_png: str | Path) -> Path:
    """Loss curves (top panel) and one panel per validation metric, per epoch.

    Columns containing ``loss`` share the top panel; every other numeric column (except
    ``epoch``, ``phase``, ``lr``/``learning_rate``, ``seconds``/``time``/``step``) gets its
    own panel, at most :data:`MAX_METRIC_PANELS`, the primary-looking ones first. When a
    ``phase`` column exists, phase changes are marked and named. Empty cells are gaps.
    """
    plt = _plt()
    cols = read_history(history_csv)
    x, loss_cols, metric_cols = _history_columns(cols)
    fig, axes = _history_figure(plt, len(metric_cols))
    _draw_losses(axes[0], x, cols, loss_cols)
    if metric_cols:
        _draw_metrics(axes[1:], x, cols, metric_cols)
    else:
        _note(axes[1], "no validation metric column in history.csv")
    axes[-1].set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    _mark_phases(axes, x, [str(v) for v in cols.get("phase", [])])
    for a in axes:
        a.grid(alpha=0.3)
    return _save(fig, out_png)


def _history_columns(cols: dict[str, list[Any]]) -> tuple[list[float], list[str], list[str]]:
    """Step 1 of plot_history: the x values (epochs), the loss columns, the metric panels."""
    n = max((len(v) for v in cols.values()), default=0)
    x = cols["epoch"] if _numeric(cols.get("epoch")) else list(range(1, n + 1))
    x = [float(v) if v is not None else float(i + 1) for i, v in enumerate(x)]
    skip = {"epoch", "phase", "lr", "learning_rate", "time", "seconds", "step"}
    loss_cols = [k for k in cols if "loss" in k.lower() and _numeric(cols[k])]
    metric_cols = [k for k in cols if k not in skip and k not in loss_cols and _numeric(cols[k])]
    metric_cols.sort(key=_metric_rank)
    return x, loss_cols, metric_cols[:MAX_METRIC_PANELS]


def _history_figure(plt: Any, n_metrics: int) -> tuple[Any, list[Any]]:
    """Step 2 of plot_history: a taller loss panel over one panel per metric (at least one)."""
    panels = 1 + max(1, n_metrics)
    heights = [1.6] + [1.0] * (panels - 1)
    fig, axes = plt.subplots(
        panels,
        1,
        figsize=(8, 2.6 + 1.9 * (panels - 1)),
        sharex=True,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    return fig, list(axes[:, 0])


def _draw_losses(
    ax_loss: Any, x: list[float], cols: dict[str, list[Any]], loss_cols: list[str]
) -> None:
    """Step 3 of plot_history: the loss curves (validation dashed), log scale when they span
    more than 20x."""
    for k in loss_cols:
        style = "--" if k.startswith("val") else "-"
        ax_loss.plot(x, _nan(cols[k]), marker=".", linestyle=style, label=k)
    ax_loss.set_ylabel("loss")
    finite = [v for k in loss_cols for v in cols[k] if isinstance(v, float)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 20:
        ax_loss.set_yscale("log")
    ax_loss.set_title("Training history")
    if loss_cols:
        ax_loss.legend(loc="upper right", fontsize=8)
    else:
        _note(ax_loss, "no loss column in history.csv")


def _draw_metrics(
    axes: list[Any], x: list[float], cols: dict[str, list[Any]], metric_cols: list[str]
) -> None:
    """Step 4 of plot_history: one panel per metric, its best value marked."""
    for i, (ax, k) in enumerate(zip(axes, metric_cols, strict=False)):
        vals = _nan(cols[k])
        ax.plot(x, vals, marker=".", color=f"C{i + 2}")
        ax.set_ylabel(k.removeprefix("val_"), fontsize=9)
        good = [v for v in vals if np.isfinite(v)]
        if good:
            best = min(good) if _lower_is_better(k) else max(good)
            ax.axhline(best, color="gray", linewidth=0.8, linestyle=":")
            ax.annotate(
                f"best {best:.4g}",
                xy=(1.0, best),
                xycoords=("axes fraction", "data"),
                xytext=(-4, 3),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color="gray",
            )


def _mark_phases(axes: list[Any], x: list[float], phases: list[str]) -> None:
    """Step 5 of plot_history: a line at each phase change and the phase's name on top."""
    if len(set(phases)) <= 1:
        return
    starts = [0] + [i for i in range(1, len(phases)) if phases[i] != phases[i - 1]]
    for s in starts[1:]:
        for a in axes:
            a.axvline((x[s - 1] + x[s]) / 2, color="gray", linestyle=":", linewidth=1)
    for s in starts:
        axes[0].annotate(
            f"phase: {phases[s]}",
            xy=(x[s], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -12),
            textcoords="offset points",
            fontsize=8,
            color="gray",
        )


# --------------------------------------------------------------------------- pred vs true
def plot_pred_vs_true(
    spec: ModelSpec, y_true: np.ndarray, y_pred: np.ndarray, out_png: str | Path
) -> Path:
    """The task's picture of predictions against the truth (train/tasks: e.g. a scatter
    with the y = x line for values, x and y scatters for points, a confusion heatmap)."""
    fig = tasks.get(spec.task).plot_pred_vs_true(spec, y_true, y_pred, _plt())
    return _save(fig, out_png)


# --------------------------------------------------------------------------- errors
def plot_error_hist(
    spec: ModelSpec,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    out_png: str | Path,
    image_sizes: np.ndarray | None = None,
) -> Path:
    """Error histogram in the user's units (the task's ``plot_errors``).

    ``image_sizes`` (N, 2) as width, height of the original images (default: the model
    input size) turns normalized coordinate errors into pixels.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    tasks.get(spec.task).plot_errors(spec, y_true, y_pred, image_sizes, ax)
    ax.grid(alpha=0.3)
    ax.set_title("Errors")
    return _save(fig, out_png)


# --------------------------------------------------------------------------- examples
def worst_examples(
    spec: ModelSpec, y_true: np.ndarray, y_pred: np.ndarray, n: int = 16
) -> np.ndarray:
    """Indices of the ``n`` examples with the largest error (the task's ``example_errors``),
    worst first."""
    err = np.asarray(tasks.get(spec.task).example_errors(spec, y_true, y_pred), np.float64)
    err = np.where(np.isfinite(err), err, np.inf)
    return np.argsort(-err, kind="stable")[:n]


def plot_examples(
    spec: ModelSpec,
    images_rgb_uint8: list[np.ndarray] | np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    out_png: str | Path,
    max_n: int = 16,
    of: int | None = None,
) -> Path:
    """A grid of images with the truth (green) and the prediction (red) drawn on them.

    Images are at their original size (any size each); the task draws its labels. ``of``:
    the images are the worst ``len(images)`` of ``of`` validation images
    (:func:`worst_examples`, worst first), and the title says so.
    """
    plt = _plt()
    task = tasks.get(spec.task)
    n = min(len(images_rgb_uint8), max_n)
    cols = max(1, min(4, n))
    rows = max(1, math.ceil(n / cols))
    aspect = 1.0
    if n:
        h0, w0 = np.asarray(images_rgb_uint8[0]).shape[:2]
        aspect = min(3.0, max(1 / 3, h0 / max(w0, 1)))
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(3.2 * cols, (3.2 * aspect + 0.5) * rows),
        squeeze=False,
        layout="constrained",
    )
    for i, ax in enumerate(axes.reshape(-1)):
        ax.axis("off")
        if i >= n:
            continue
        img = np.asarray(images_rgb_uint8[i])
        ax.imshow(img)
        task.plot_example(spec, ax, img, y_true[i], y_pred[i])
    which = (
        f"the {n} worst of {of} by {task.example_error_name}, worst first"
        if of is not None
        else f"{n} of them"
    )
    fig.suptitle(f"Validation examples: {which} ({task.examples_legend})", fontsize=10)
    return _save(fig, out_png)


# --------------------------------------------------------------------------- helpers
def _num(v: Any) -> Any:
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def _numeric(values: list[Any] | None) -> bool:
    """At least one number, and nothing but numbers or empty cells."""
    if not values:
        return False
    return any(isinstance(v, float) for v in values) and all(
        isinstance(v, float) or v in (None, "") for v in values
    )


def _nan(values: list[Any]) -> list[float]:
    return [v if isinstance(v, float) else float("nan") for v in values]


def _lower_is_better(name: str) -> bool:
    n = name.lower()
    return not any(t in n for t in ("pck", "accuracy", "f1", "r2"))


def _metric_rank(name: str) -> int:
    order = ("mean_error_px", "pck", "rmse", "mae", "r2", "accuracy", "macro_f1")
    n = name.lower()
    for i, t in enumerate(order):
        if t in n:
            return i
    return len(order)


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


def bins(a: np.ndarray) -> int:
    """A sensible number of histogram bins for ``a``."""
    n = int(np.isfinite(a).sum())
    return int(min(50, max(5, math.sqrt(max(n, 1)) * 2)))
