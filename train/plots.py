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

TRUE_COLOR = "#1a9641"  # green
PRED_COLOR = "#d7191c"  # red
_DPI = 100
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
            fig.savefig(tmp, dpi=_DPI, format="png", bbox_inches="tight")
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
    n = max((len(v) for v in cols.values()), default=0)
    x = cols["epoch"] if _numeric(cols.get("epoch")) else list(range(1, n + 1))
    x = [float(v) if v is not None else float(i + 1) for i, v in enumerate(x)]
    skip = {"epoch", "phase", "lr", "learning_rate", "time", "seconds", "step"}
    loss_cols = [k for k in cols if "loss" in k.lower() and _numeric(cols[k])]
    metric_cols = [k for k in cols if k not in skip and k not in loss_cols and _numeric(cols[k])]
    metric_cols.sort(key=_metric_rank)
    metric_cols = metric_cols[:MAX_METRIC_PANELS]
    panels = 1 + max(1, len(metric_cols))
    heights = [1.6] + [1.0] * (panels - 1)
    fig, axes = plt.subplots(
        panels,
        1,
        figsize=(8, 2.6 + 1.9 * (panels - 1)),
        sharex=True,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    axes = list(axes[:, 0])
    ax_loss = axes[0]
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
    if metric_cols:
        for i, (ax, k) in enumerate(zip(axes[1:], metric_cols, strict=False)):
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
    else:
        _note(axes[1], "no validation metric column in history.csv")
    axes[-1].set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    phases = [str(v) for v in cols.get("phase", [])]
    if len(set(phases)) > 1:
        starts = [0] + [i for i in range(1, len(phases)) if phases[i] != phases[i - 1]]
        for s in starts[1:]:
            for a in axes:
                a.axvline((x[s - 1] + x[s]) / 2, color="gray", linestyle=":", linewidth=1)
        for s in starts:
            ax_loss.annotate(
                f"phase: {phases[s]}",
                xy=(x[s], 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -12),
                textcoords="offset points",
                fontsize=8,
                color="gray",
            )
    for a in axes:
        a.grid(alpha=0.3)
    return _save(fig, out_png)


# --------------------------------------------------------------------------- pred vs true
def plot_pred_vs_true(
    spec: ModelSpec, y_true: np.ndarray, y_pred: np.ndarray, out_png: str | Path
) -> Path:
    """value: scatter with the y = x line; points: x and y scatters; class: confusion heatmap."""
    plt = _plt()
    if spec.task == "class":
        return _plot_confusion(spec, y_true, y_pred, out_png)
    if spec.task == "value":
        yt = np.asarray(y_true, dtype=float).reshape(-1)
        yp = np.asarray(y_pred, dtype=float).reshape(-1)
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        lo = float(np.nanmin([yt.min(initial=np.inf), yp.min(initial=np.inf), spec.value_range[0]]))
        hi = float(
            np.nanmax([yt.max(initial=-np.inf), yp.max(initial=-np.inf), spec.value_range[1]])
        )
        ax.plot([lo, hi], [lo, hi], color="gray", linewidth=1, label="y = x")
        ax.scatter(yt, yp, s=12, alpha=0.6, color=PRED_COLOR, label="predictions")
        unit = f" ({spec.units})" if spec.units else ""
        ax.set_xlabel(f"true {spec.target_name}{unit}")
        ax.set_ylabel(f"predicted {spec.target_name}{unit}")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title(f"Predicted vs true (n={len(yt)})")
        return _save(fig, out_png)
    k = spec.num_keypoints
    yt = np.asarray(y_true, dtype=float).reshape(-1, k, 2)
    yp = np.asarray(y_pred, dtype=float).reshape(-1, k, 2)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for c, (ax, name) in enumerate(zip(axes, ("x", "y"), strict=True)):
        ax.plot([0, 1], [0, 1], color="gray", linewidth=1)
        for j in range(k):
            ax.scatter(
                yt[:, j, c],
                yp[:, j, c],
                s=12,
                alpha=0.6,
                color=f"C{j % 10}",
                label=f"keypoint {j}" if k > 1 else None,
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.set_xlabel(f"true {name} (normalized)")
        ax.set_ylabel(f"predicted {name} (normalized)")
        ax.set_title(f"{name}: predicted vs true (n={len(yt)})")
    if 1 < k <= 10:
        axes[0].legend(fontsize=7, loc="upper left")
    return _save(fig, out_png)


def _plot_confusion(spec: ModelSpec, y_true: Any, y_pred: Any, out_png: str | Path) -> Path:
    plt = _plt()
    names = list(spec.class_names)
    c = len(names)
    yt = _class_idx(y_true)
    yp = _class_idx(y_pred)
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (yt, yp), 1)
    size = max(4.0, 0.6 * c + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    row = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, row, out=np.zeros(cm.shape), where=row > 0)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    if c <= 30:
        for i in range(c):
            for j in range(c):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if frac[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(c), names, rotation=45, ha="right")
        ax.set_yticks(range(c), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = float(np.trace(cm) / max(cm.sum(), 1))
    ax.set_title(f"Confusion matrix (n={cm.sum()}, accuracy {acc:.3f})")
    return _save(fig, out_png)


# --------------------------------------------------------------------------- errors
def plot_error_hist(
    spec: ModelSpec,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    out_png: str | Path,
    image_sizes: np.ndarray | None = None,
) -> Path:
    """Error histogram in the user's units.

    point/keypoints: Euclidean error in pixels of the original images (``image_sizes``
    (N, 2) as width, height; default the model input size), with the PCK radius marked;
    value: signed error (predicted - true); class: the probability given to the true class
    (needs probabilities; with bare labels, per-class accuracy bars).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if spec.task in ("point", "keypoints"):
        k = spec.num_keypoints
        yt = np.asarray(y_true, dtype=float).reshape(-1, k, 2)
        yp = np.asarray(y_pred, dtype=float).reshape(-1, k, 2)
        if image_sizes is None:
            sizes = np.tile([[spec.input_width, spec.input_height]], (len(yt), 1)).astype(float)
        else:
            sizes = np.asarray(image_sizes, dtype=float).reshape(-1, 2)
        d = yp - yt
        px = np.hypot(d[..., 0] * sizes[:, None, 0], d[..., 1] * sizes[:, None, 1]).reshape(-1)
        ax.hist(px[np.isfinite(px)], bins=_bins(px), color=PRED_COLOR, alpha=0.8)
        radius = 0.05 * float(np.median(sizes[:, 0])) if len(sizes) else 0.0
        ax.axvline(radius, color="gray", linestyle="--", label=f"5 % of width ({radius:.1f} px)")
        ax.axvline(
            float(np.nanmean(px)) if px.size else 0.0,
            color="black",
            linewidth=1,
            label=f"mean {np.nanmean(px) if px.size else float('nan'):.2f} px",
        )
        ax.set_xlim(left=0)
        ax.set_xlabel("error (pixels of the original image)")
        ax.legend(fontsize=8)
    elif spec.task == "value":
        err = np.asarray(y_pred, dtype=float).reshape(-1) - np.asarray(y_true, dtype=float).reshape(
            -1
        )
        ax.hist(err[np.isfinite(err)], bins=_bins(err), color=PRED_COLOR, alpha=0.8)
        ax.axvline(0.0, color="gray", linewidth=1)
        unit = f" ({spec.units})" if spec.units else ""
        rmse = float(np.sqrt(np.nanmean(err**2))) if err.size else float("nan")
        ax.set_xlabel(f"predicted - true {spec.target_name}{unit}   (RMSE {rmse:.3g})")
    else:
        yt = _class_idx(y_true)
        yp = np.asarray(y_pred)
        if yp.ndim == 2:
            p_true = yp[np.arange(len(yt)), yt]
            ax.hist(p_true, bins=np.linspace(0, 1, 21), color=PRED_COLOR, alpha=0.8)
            ax.set_xlabel("probability the model gave to the true class")
            ax.set_xlim(0, 1)
        else:
            names = list(spec.class_names)
            acc = [
                float(np.mean(yp[yt == i] == i)) if np.any(yt == i) else 0.0
                for i in range(len(names))
            ]
            ax.bar(names, acc, color=PRED_COLOR)
            ax.set_ylabel("accuracy per true class")
            ax.set_ylim(0, 1)
    if spec.task != "class" or np.asarray(y_pred).ndim == 2:
        ax.set_ylabel("count")
    ax.grid(alpha=0.3)
    ax.set_title("Errors")
    return _save(fig, out_png)


# --------------------------------------------------------------------------- examples
def plot_examples(
    spec: ModelSpec,
    images_rgb_uint8: list[np.ndarray] | np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    out_png: str | Path,
    max_n: int = 16,
) -> Path:
    """A grid of images with the truth (green) and the prediction (red) drawn on them.

    Images are at their original size (any size each); coordinates are normalized.
    """
    plt = _plt()
    n = min(len(images_rgb_uint8), max_n)
    cols = max(1, min(4, n))
    rows = max(1, math.ceil(n / cols))
    aspect = 1.0
    if n:
        h0, w0 = np.asarray(images_rgb_uint8[0]).shape[:2]
        aspect = min(3.0, max(1 / 3, h0 / max(w0, 1)))
    from matplotlib import patheffects

    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(3.2 * cols, (3.2 * aspect + 0.5) * rows),
        squeeze=False,
        layout="constrained",
    )
    probs = np.asarray(y_pred) if spec.task == "class" else None
    for i, ax in enumerate(axes.reshape(-1)):
        ax.axis("off")
        if i >= n:
            continue
        img = np.asarray(images_rgb_uint8[i])
        h, w = img.shape[:2]
        ax.imshow(img)
        if spec.task in ("point", "keypoints"):
            k = spec.num_keypoints
            t = np.asarray(y_true[i], dtype=float).reshape(k, 2)
            p = np.asarray(y_pred[i], dtype=float).reshape(k, 2)
            ms = max(4.0, min(10.0, 0.04 * 3.2 * _DPI))
            for j in range(k):
                ax.plot(
                    [t[j, 0] * w, p[j, 0] * w],
                    [t[j, 1] * h, p[j, 1] * h],
                    color="yellow",
                    linewidth=0.8,
                )
            halo = [patheffects.withStroke(linewidth=4.5, foreground="white")]
            ax.plot(
                t[:, 0] * w,
                t[:, 1] * h,
                "o",
                color=TRUE_COLOR,
                markersize=ms + 2,
                markerfacecolor="none",
                markeredgewidth=2.5,
                path_effects=halo,
            )
            ax.plot(
                p[:, 0] * w,
                p[:, 1] * h,
                "x",
                color=PRED_COLOR,
                markersize=ms,
                markeredgewidth=2.5,
                path_effects=halo,
            )
            if k > 1:
                for j in range(k):
                    ax.annotate(
                        str(j),
                        (t[j, 0] * w, t[j, 1] * h),
                        color=TRUE_COLOR,
                        fontsize=7,
                        xytext=(3, 3),
                        textcoords="offset points",
                    )
            err = float(np.mean(np.hypot((p[:, 0] - t[:, 0]) * w, (p[:, 1] - t[:, 1]) * h)))
            ax.set_title(f"error {err:.1f} px", fontsize=9)
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
        elif spec.task == "value":
            t, p = float(np.asarray(y_true[i])), float(np.asarray(y_pred[i]))
            ax.set_title(f"true {t:.4g}", fontsize=9, color=TRUE_COLOR, loc="left")
            ax.set_title(f"pred {p:.4g}", fontsize=9, color=PRED_COLOR, loc="right")
        else:
            names = spec.class_names
            ti = int(np.asarray(y_true[i]))
            row = probs[i]
            pi = int(np.argmax(row)) if np.ndim(row) else int(row)
            conf = f" {float(row[pi]):.2f}" if np.ndim(row) else ""
            ax.set_title(f"true {names[ti]}", fontsize=9, color=TRUE_COLOR, loc="left")
            ax.set_title(
                f"pred {names[pi]}{conf}",
                fontsize=9,
                color=TRUE_COLOR if pi == ti else PRED_COLOR,
                loc="right",
            )
            if pi != ti:
                for s in ax.spines.values():
                    s.set_visible(True)
                    s.set_color(PRED_COLOR)
                    s.set_linewidth(3)
                ax.axis("on")
                ax.set_xticks([])
                ax.set_yticks([])
    legend = {
        "point": "green o = true, red x = predicted",
        "keypoints": "green o = true (numbered), red x = predicted",
        "value": "green = true, red = predicted",
        "class": "red frame = wrong class",
    }[spec.task]
    fig.suptitle(f"Validation examples ({legend})", fontsize=10)
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


def _bins(a: np.ndarray) -> int:
    n = int(np.isfinite(a).sum())
    return int(min(50, max(5, math.sqrt(max(n, 1)) * 2)))


def _class_idx(y: Any) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim == 2:
        a = a.argmax(axis=1)
    return a.astype(np.int64)
