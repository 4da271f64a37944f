"""Metrics in the user's units, always beside the trivial baseline.

Every metric comes with ``baseline_<name>``: the same metric for a predictor that ignores
the image (the training mean for coordinates and values, the majority class for classes).
A model that does not clearly beat it has learnt nothing useful, whatever its loss says;
:func:`verdict` turns that into a loud message with the usual causes.

Keys (flat, JSON-safe):

- point / keypoints: ``mean_error_px`` (Euclidean error in pixels of the ORIGINAL image),
  ``median_error_px``, ``mean_error_pct_width`` (that error as % of the image width),
  ``pck@0.05`` (fraction of points within 0.05 of the truth in normalized distance,
  i.e. ``hypot(dx, dy) <= 0.05`` with x, y in [0, 1]).
- value: ``mae``, ``rmse``, ``r2`` in the user's units (``r2`` is None when the
  evaluation targets are all equal).
- class: ``accuracy``, ``macro_f1`` (mean F1 over the classes that occur in the truth or
  the predictions), ``confusion_matrix`` (rows = true class, columns = predicted, in
  ``class_names`` order) and ``class_names``.
- always: ``n`` (number of samples) and ``task``.

Pure numpy: no TensorFlow, so the device side and tests can use it cheaply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime.spec import ModelSpec

#: Radius of the PCK metric, in normalized coordinates (the user's "more than 5 % off").
PCK_RADIUS = 0.05
#: An error metric must be at most this fraction of its baseline to count as "clearly better".
CLEARLY_BETTER_ERROR_RATIO = 0.75
#: Accuracy must close at least this fraction of the gap between the baseline and 1.0.
CLEARLY_BETTER_ACCURACY_GAP = 0.25

_POINT_KEYS = ("mean_error_px", "median_error_px", "mean_error_pct_width", "pck@0.05")
_VALUE_KEYS = ("mae", "rmse", "r2")
_CLASS_KEYS = ("accuracy", "macro_f1", "confusion_matrix")


def metric_keys(spec: ModelSpec) -> tuple[str, ...]:
    """The metric names :func:`compute_metrics` returns for this task (without baselines)."""
    if spec.task in ("point", "keypoints"):
        return _POINT_KEYS
    if spec.task == "value":
        return _VALUE_KEYS
    return _CLASS_KEYS


def primary_metric(spec: ModelSpec) -> tuple[str, bool]:
    """The metric to select checkpoints and stop early on: ``(key, higher_is_better)``.

    point/keypoints: ``mean_error_px`` (lower is better). It is smooth and keeps moving
    after ``pck@0.05`` saturates at 1.0, so it still tells good checkpoints from better
    ones. value: ``rmse`` (lower). class: ``accuracy`` (higher).
    """
    if spec.task in ("point", "keypoints"):
        return "mean_error_px", False
    if spec.task == "value":
        return "rmse", False
    return "accuracy", True


def compute_metrics(
    spec: ModelSpec,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    image_sizes: np.ndarray | None = None,
    train_targets: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics and their ``baseline_*`` twins, in the user's units (see the module doc).

    ``y_true``/``y_pred`` are what :meth:`ModelSpec.decode_output` returns: (N, K, 2)
    normalized coordinates, (N,) values, or (N,) class indices / (N, C) probabilities for
    ``y_pred`` on a class task. ``image_sizes`` is (N, 2) as (width, height) of the
    original images (default: the model input size). ``train_targets`` defines the
    baseline predictor (default: ``y_true`` itself).
    """
    task = spec.task
    if task in ("point", "keypoints"):
        yt = _points(y_true, spec, "y_true")
        yp = _points(y_pred, spec, "y_pred")
        _same_n(yt, yp)
        sizes = _sizes(image_sizes, spec, len(yt))
        ref = yt if train_targets is None else _points(train_targets, spec, "train_targets")
        base = np.broadcast_to(ref.mean(axis=0, keepdims=True), yt.shape)
        out = _point_metrics(yt, yp, sizes)
        base_m = _point_metrics(yt, base, sizes)
    elif task == "value":
        yt = _values(y_true, "y_true")
        yp = _values(y_pred, "y_pred")
        _same_n(yt, yp)
        ref = yt if train_targets is None else _values(train_targets, "train_targets")
        base = np.full_like(yt, ref.mean() if ref.size else np.nan)
        out = _value_metrics(yt, yp)
        base_m = _value_metrics(yt, base)
    elif task == "class":
        c = len(spec.class_names)
        yt = _labels(y_true, c, "y_true")
        yp = _labels(y_pred, c, "y_pred")
        _same_n(yt, yp)
        ref = yt if train_targets is None else _labels(train_targets, c, "train_targets")
        majority = int(np.bincount(ref, minlength=c).argmax()) if ref.size else 0
        base = np.full_like(yt, majority)
        out = _class_metrics(yt, yp, c)
        base_m = _class_metrics(yt, base, c)
        out["class_names"] = list(spec.class_names)
        out["baseline_class"] = spec.class_names[majority]
    else:  # pragma: no cover - ModelSpec validates the task
        raise ValueError(f"unknown task {task!r}")
    result: dict[str, Any] = {"task": task, "n": int(len(yt))}
    result.update(out)
    result.update({f"baseline_{k}": v for k, v in base_m.items()})
    return result


def is_clearly_better(spec: ModelSpec, metrics: dict[str, Any]) -> bool:
    """True when the model beats its trivial baseline by a clear margin (see constants)."""
    if spec.task == "class":
        acc, base = metrics.get("accuracy"), metrics.get("baseline_accuracy")
        if not _finite(acc) or not _finite(base):
            return False
        if base >= 1.0:
            return acc >= 1.0
        return (acc - base) / (1.0 - base) >= CLEARLY_BETTER_ACCURACY_GAP
    key = "mean_error_px" if spec.task in ("point", "keypoints") else "rmse"
    err, base = metrics.get(key), metrics.get(f"baseline_{key}")
    if not _finite(err) or not _finite(base):
        return False
    if base <= 0.0:
        return err <= 0.0
    return err <= CLEARLY_BETTER_ERROR_RATIO * base


def verdict(spec: ModelSpec, metrics: dict[str, Any]) -> str | None:
    """A loud multi-line warning when the model is not clearly better than its baseline.

    Returns None when the model is clearly better (nothing to say).
    """
    if is_clearly_better(spec, metrics):
        return None
    if spec.task == "class":
        key, what = "accuracy", f"always answering {metrics.get('baseline_class', '?')!r}"
        rule = (
            f"it must close at least {CLEARLY_BETTER_ACCURACY_GAP:.0%} of the gap between "
            "the baseline's accuracy and 1.0"
        )
    else:
        key = "mean_error_px" if spec.task in ("point", "keypoints") else "rmse"
        what = "always answering the training mean"
        rule = f"its {key} must be at most {CLEARLY_BETTER_ERROR_RATIO:.0%} of the baseline's"
    model_v, base_v = metrics.get(key), metrics.get(f"baseline_{key}")
    lines = [
        "!" * 72,
        "WARNING: this model is NOT clearly better than the trivial baseline.",
        f"  {key}: model {_fmt(model_v)}  vs  baseline {_fmt(base_v)} ({what}, "
        f"n={metrics.get('n', '?')})",
        f"  To count as learnt, {rule}.",
        "Check, in this order:",
    ]
    lines += [f"  - {c}" for c in _checklist(spec.task)]
    lines.append("!" * 72)
    return "\n".join(lines)


def format_table(spec: ModelSpec, metrics: dict[str, Any]) -> str:
    """A small text table: metric | model | baseline (scalar metrics only)."""
    rows = [("metric", "model", "baseline")]
    for k in metric_keys(spec):
        v = metrics.get(k)
        if isinstance(v, (list, tuple)):
            continue
        rows.append((k, _fmt(v), _fmt(metrics.get(f"baseline_{k}"))))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    text = [f"{a:<{w0}}  {b:>{w1}}  {c:>{w2}}" for a, b, c in rows]
    text.insert(1, "-" * (w0 + w1 + w2 + 4))
    text.append(f"n = {metrics.get('n', '?')}")
    if spec.task == "class" and "confusion_matrix" in metrics:
        text.append("")
        text.append(format_confusion(metrics["confusion_matrix"], list(spec.class_names)))
    return "\n".join(text)


def format_confusion(matrix: list[list[int]], class_names: list[str]) -> str:
    """Confusion matrix as text: rows = true class, columns = predicted."""
    names = [str(n) for n in class_names]
    w = max([len(n) for n in names] + [len(str(v)) for row in matrix for v in row] + [4])
    head = " " * (w + 2) + " ".join(f"{n:>{w}}" for n in names) + "   <- predicted"
    body = [
        f"{n:>{w}}  " + " ".join(f"{v:>{w}}" for v in row)
        for n, row in zip(names, matrix, strict=True)
    ]
    return "\n".join([head, *body])


# --------------------------------------------------------------------------- the metrics
def _point_metrics(yt: np.ndarray, yp: np.ndarray, sizes: np.ndarray) -> dict[str, Any]:
    d = yp - yt  # (N, K, 2) normalized
    norm_dist = np.hypot(d[..., 0], d[..., 1])  # (N, K)
    px = np.hypot(d[..., 0] * sizes[:, None, 0], d[..., 1] * sizes[:, None, 1])
    pct_width = 100.0 * px / sizes[:, None, 0]
    if yt.size == 0:
        return {k: None for k in _POINT_KEYS}
    return {
        "mean_error_px": float(px.mean()),
        "median_error_px": float(np.median(px)),
        "mean_error_pct_width": float(pct_width.mean()),
        "pck@0.05": float((norm_dist <= PCK_RADIUS + 1e-9).mean()),
    }


def _value_metrics(yt: np.ndarray, yp: np.ndarray) -> dict[str, Any]:
    if yt.size == 0:
        return {k: None for k in _VALUE_KEYS}
    err = yp.astype(np.float64) - yt.astype(np.float64)
    ss_res = float((err**2).sum())
    ss_tot = float(((yt - yt.mean(dtype=np.float64)) ** 2).sum())
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": (1.0 - ss_res / ss_tot) if ss_tot > 0 else None,
    }


def _class_metrics(yt: np.ndarray, yp: np.ndarray, c: int) -> dict[str, Any]:
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (yt, yp), 1)
    if yt.size == 0:
        return {"accuracy": None, "macro_f1": None, "confusion_matrix": cm.tolist()}
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)  # true count per class
    predicted = cm.sum(axis=0)
    present = (support + predicted) > 0
    denom = support + predicted  # 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros(c), where=denom > 0)
    return {
        "accuracy": float(tp.sum() / yt.size),
        "macro_f1": float(f1[present].mean()),
        "confusion_matrix": cm.tolist(),
    }


# --------------------------------------------------------------------------- input checks
def _points(a: Any, spec: ModelSpec, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    k = spec.num_keypoints
    if arr.ndim == 2 and arr.shape[1] == 2 * k:
        arr = arr.reshape(len(arr), k, 2)
    if arr.ndim != 3 or arr.shape[1:] != (k, 2):
        raise ValueError(f"{name}: expected shape (N, {k}, 2) for {spec.task}, got {arr.shape}")
    return arr


def _values(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected shape (N,) values, got {arr.shape}")
    return arr


def _labels(a: Any, c: int, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 2:
        if arr.shape[1] != c:
            raise ValueError(f"{name}: expected (N, {c}) probabilities, got {arr.shape}")
        arr = arr.argmax(axis=1) if len(arr) else np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected (N,) class indices, got {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name}: class indices must be whole numbers")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= c):
        raise ValueError(f"{name}: class indices must be in 0..{c - 1}")
    return arr


def _sizes(image_sizes: Any, spec: ModelSpec, n: int) -> np.ndarray:
    if image_sizes is None:
        return np.tile(np.array([[spec.input_width, spec.input_height]], np.float64), (n, 1))
    s = np.asarray(image_sizes, dtype=np.float64)
    if s.shape != (n, 2):
        raise ValueError(f"image_sizes: expected shape ({n}, 2) as (width, height), got {s.shape}")
    if s.size and s.min() <= 0:
        raise ValueError("image_sizes: widths and heights must be positive")
    return s


def _same_n(a: np.ndarray, b: np.ndarray) -> None:
    if len(a) != len(b):
        raise ValueError(f"y_true has {len(a)} samples but y_pred has {len(b)}")


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


def _checklist(task: str) -> list[str]:
    common_tail = [
        "too few epochs, or early stopping too soon: look at plots/history.png "
        "(is the validation metric still falling?)",
        "learning rate: too high diverges or sticks at the mean, too low never leaves it; "
        "try 10x lower and 10x higher",
        "run `edgereg train ... --sanity`: a model that cannot overfit 8 images has a bug "
        "in its data or labels, not too little data",
        "the training and evaluation data come from the same kind of camera, lighting and framing",
    ]
    if task in ("point", "keypoints"):
        return [
            "label origin: y measured from the BOTTOM of the image needs --y-up "
            "(edgereg's y runs down from the top)",
            "label units: pixel coordinates need --coords pixels; normalized ones are in "
            "[0, 1] of the image width/height",
            "labels drawn on the images: `edgereg data check DATA_DIR --task ...` and "
            "look at plots/examples.png (green = truth)",
            "augmentation that breaks labels: with horizontal flips, left/right keypoints "
            "need --flip-pairs (e.g. 0:1,2:3); turn augmentation off once to compare",
            *common_tail,
        ]
    if task == "value":
        return [
            "the target column (--target) is the one you mean, in the units you mean",
            "the value range (--range LOW HIGH) covers all targets; predictions are clipped to it",
            "declared invariances (--invariant) are true for your data: a rotation or flip "
            "that changes the answer breaks the labels",
            "colour is the signal: no colour/white-balance augmentation, fixed camera "
            "exposure and white balance when recording",
            *common_tail,
        ]
    return [
        "labels: folder names / label strings are the classes you mean, and no images "
        "are in the wrong folder (look at plots/examples.png)",
        "class balance: with one class far larger, the baseline is already high; "
        "collect more of the rare class",
        "augmentation that changes the class (a flip or crop that removes the thing "
        "the class is about)",
        *common_tail,
    ]
