"""Metrics in the user's units, always beside the trivial baseline.

Every metric comes with ``baseline_<name>``: the same metric for a predictor that ignores
the image (the training mean for coordinates and values, the majority class for classes,
the circular mean for angles). A model that does not clearly beat it has learnt nothing
useful, whatever its loss says; :func:`verdict` turns that into a loud message with the
usual causes.

Which metrics a task has, which one selects checkpoints and what "clearly better" means
are the task's (``train/tasks/<task>.py``: ``metric_keys``, ``primary_metric``,
``compute_metrics``, ``baseline_rule``). For example point/keypoints report
``mean_error_px`` (Euclidean error in pixels of the ORIGINAL image), ``median_error_px``,
``mean_error_pct_width`` and ``pck@0.05``; value ``mae``, ``rmse``, ``r2``; class
``accuracy``, ``macro_f1`` and ``confusion_matrix``; angle ``mean_error_deg`` and the
share within 2 and 5 degrees. Always: ``n`` (number of samples) and ``task``.

Pure numpy: no TensorFlow, so the device side and tests can use it cheaply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime.spec import ModelSpec
from train import tasks

#: Radius of the PCK metric, in normalized coordinates (the user's "more than 5 % off").
PCK_RADIUS = 0.05


def metric_keys(spec: ModelSpec) -> tuple[str, ...]:
    """The metric names :func:`compute_metrics` returns for this task (without baselines)."""
    return tasks.get(spec.task).metric_keys


def primary_metric(spec: ModelSpec) -> tuple[str, bool]:
    """The metric to select checkpoints and stop early on: ``(key, higher_is_better)``."""
    return tasks.get(spec.task).primary_metric


def compute_metrics(
    spec: ModelSpec,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    image_sizes: np.ndarray | None = None,
    train_targets: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics and their ``baseline_*`` twins, in the user's units (see the module doc).

    ``y_true``/``y_pred`` are in the task's dataset form (what
    :meth:`ModelSpec.decode_output` returns; class ``y_true`` as indices).
    ``image_sizes`` is (N, 2) as (width, height) of the original images (default: the
    model input size). ``train_targets`` defines the baseline predictor (default:
    ``y_true`` itself).
    """
    n = len(np.asarray(y_true))
    sizes = _sizes(image_sizes, spec, n)
    model, base = tasks.get(spec.task).compute_metrics(spec, y_true, y_pred, sizes, train_targets)
    result: dict[str, Any] = {"task": spec.task, "n": int(n)}
    result.update(model)
    result.update({f"baseline_{k}": v for k, v in base.items()})
    return result


def is_clearly_better(spec: ModelSpec, metrics: dict[str, Any]) -> bool:
    """True when the model beats its trivial baseline by a clear margin (the task's rule)."""
    rule = _rule(spec, metrics)
    v, base = metrics.get(rule.key), metrics.get(f"baseline_{rule.key}")
    if not _finite(v) or not _finite(base):
        return False
    if rule.kind == "accuracy":
        if base >= 1.0:
            return v >= 1.0
        return (v - base) / (1.0 - base) >= rule.ratio
    if base <= 0.0:
        return v <= 0.0
    return v <= rule.ratio * base


def verdict(spec: ModelSpec, metrics: dict[str, Any]) -> str | None:
    """A loud multi-line warning when the model is not clearly better than its baseline.

    Returns None when the model is clearly better (nothing to say).
    """
    if is_clearly_better(spec, metrics):
        return None
    rule = _rule(spec, metrics)
    if rule.kind == "accuracy":
        text = (
            f"it must close at least {rule.ratio:.0%} of the gap between the baseline's "
            f"{rule.key} and 1.0"
        )
    else:
        text = f"its {rule.key} must be at most {rule.ratio:.0%} of the baseline's"
    model_v, base_v = metrics.get(rule.key), metrics.get(f"baseline_{rule.key}")
    lines = [
        "!" * 72,
        "WARNING: this model is NOT clearly better than the trivial baseline.",
        f"  {rule.key}: model {_fmt(model_v)}  vs  baseline {_fmt(base_v)} ({rule.what}, "
        f"n={metrics.get('n', '?')})",
        f"  To count as learnt, {text}.",
        "Check, in this order:",
    ]
    lines += [f"  - {c}" for c in tasks.get(spec.task).checklist()]
    lines.append("!" * 72)
    return "\n".join(lines)


def format_table(spec: ModelSpec, metrics: dict[str, Any]) -> str:
    """A small text table: metric | model | baseline (scalar metrics only), then any
    details the task adds (a confusion matrix)."""
    rows = [("metric", "model", "baseline")]
    for k in metric_keys(spec):
        v = metrics.get(k)
        if k not in metrics or isinstance(v, (list, tuple)):
            continue
        rows.append((k, _fmt(v), _fmt(metrics.get(f"baseline_{k}"))))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    text = [f"{a:<{w0}}  {b:>{w1}}  {c:>{w2}}" for a, b, c in rows]
    text.insert(1, "-" * (w0 + w1 + w2 + 4))
    text.append(f"n = {metrics.get('n', '?')}")
    extra = tasks.get(spec.task).format_details(spec, metrics)
    if extra:
        text += ["", extra]
    return "\n".join(text)


# --------------------------------------------------------------------------- helpers
def _rule(spec: ModelSpec, metrics: dict[str, Any]) -> tasks.BaselineRule:
    return tasks.get(spec.task).baseline_rule(spec, metrics)


def _sizes(image_sizes: Any, spec: ModelSpec, n: int) -> np.ndarray:
    if image_sizes is None:
        return np.tile(np.array([[spec.input_width, spec.input_height]], np.float64), (n, 1))
    s = np.asarray(image_sizes, dtype=np.float64)
    if s.shape != (n, 2):
        raise ValueError(f"image_sizes: expected shape ({n}, 2) as (width, height), got {s.shape}")
    if s.size and s.min() <= 0:
        raise ValueError("image_sizes: widths and heights must be positive")
    return s


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and bool(np.isfinite(v))


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if not np.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.1f}"
    return str(v)
