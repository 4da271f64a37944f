"""Verification: every exported file against the Keras model, through the DEVICE's own code.

Each validation image goes, full size, through ``edge_runtime.predictor.Predictor`` (the
same resize, quantization and decoding as on the Pi, ``color_order="RGB"``), and through the
Keras model after the same ``resize_to_input``. Reported per variant: the task metric in
user units, its change vs Keras, the largest and mean disagreement per output, file size
and single-frame latency (median of many invokes, 1 thread and all threads).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import QualityGateError
from edge_runtime.images import read_image
from edge_runtime.interpreter import input_details, make_interpreter, set_input
from edge_runtime.metadata import read_model_bytes
from edge_runtime.predictor import Predictor, PredictorOptions
from edge_runtime.preprocess import resize_to_input
from edge_runtime.spec import ModelSpec
from train import tasks
from train.metrics import compute_metrics, primary_metric


@dataclass
class VariantCheck:
    """Verification of one exported file."""

    variant: str
    file: str
    size_bytes: int
    metrics: dict[str, Any]
    metric_key: str
    higher_is_better: bool
    value: float
    keras_value: float
    change: float
    #: Loss on the task metric relative to Keras (positive = worse); 0.1 = 10 % worse.
    relative_drop: float
    #: Per output index: largest and mean |tflite - keras| in raw model units.
    disagreement: list[dict[str, float]]
    #: The same in the user's units (px / units / probability).
    disagreement_user: dict[str, float]
    latency_ms: dict[str, float] = field(default_factory=dict)
    runner: str = ""
    #: Standard error of ``relative_drop`` over the validation images (paired bootstrap).
    relative_drop_se: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- metrics
def relative_drop(keras_value: float, value: float, higher_is_better: bool) -> float:
    """How much worse ``value`` is than ``keras_value``, relative (0.05 = 5 % worse)."""
    worse = (keras_value - value) if higher_is_better else (value - keras_value)
    return float(worse / max(abs(keras_value), 1e-9))


#: Resamples of the paired bootstrap that gives a change's standard error.
BOOTSTRAP_RESAMPLES = 200


def relative_drop_se(
    spec: ModelSpec,
    val: ValidationSet,
    ref_raw: np.ndarray,
    raw: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> float:
    """Standard error of ``relative_drop`` (``raw`` against ``ref_raw``) on ``val``'s images.

    A paired bootstrap: the same resampled images score both models, so what is measured
    is how much the change itself depends on which images the split happens to hold. On
    60 point images one outlier image moved int8's change by several percent; the standard
    error says how far a figure measured on this split can be trusted.
    """
    key, hib = primary_metric(spec)
    n = len(val.images)
    if n < 2:
        return float("nan")
    ref, new = spec.decode_output(ref_raw), spec.decode_output(raw)
    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(resamples):
        i = rng.integers(0, n, n)
        kv = compute_metrics(spec, val.targets[i], ref[i], val.sizes[i])[key]
        v = compute_metrics(spec, val.targets[i], new[i], val.sizes[i])[key]
        drops.append(relative_drop(float(kv), float(v), hib))
    finite = np.asarray(drops)[np.isfinite(drops)]
    return float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")


# --------------------------------------------------------------------------- running
def keras_raw(
    model: Any, spec: ModelSpec, images: Sequence[np.ndarray], batch: int = 32
) -> np.ndarray:
    """Raw Keras outputs (N, output_size) for full-size RGB images, via ``resize_to_input``."""
    out = []
    for i in range(0, len(images), batch):
        x = np.stack(
            [
                resize_to_input(im, spec.input_height, spec.input_width, spec.interpolation)
                for im in images[i : i + batch]
            ]
        ).astype(np.float32)
        y = model(x, training=False)
        out.append(np.asarray(y, np.float32).reshape(len(x), -1))
    return np.concatenate(out) if out else np.zeros((0, spec.output_size), np.float32)


#: How verification runs each file: the device runtime's own Predictor (in the report).
RUNNER = "edge_runtime.Predictor"


def device_raw(
    path: str | Path,
    images: Sequence[np.ndarray],
    progress: Callable[[str], None] | None = None,
    label: str = "",
) -> np.ndarray:
    """Raw outputs (N, output_size) of the device runtime's Predictor for full-size RGB images.

    The same resize, quantization and decoding as on the Pi; a file the runtime refuses
    is its own ModelFileError naming the file.
    """
    options = PredictorOptions(model_path=path, color_order="RGB")
    with Predictor.create_from_options(options) as p:
        return np.stack(
            [
                np.asarray(p.predict(im).raw, np.float32).reshape(-1)
                for im in _iter(images, progress, label)
            ]
        )


def measure_latency(path: str | Path, num_threads: int | None, runs: int = 50) -> float:
    """Median milliseconds of ``invoke()`` on one frame (after 3 warm-up invokes).

    Uses edge_runtime's interpreter (same backend choice and checks as the device).
    """
    it, _ = make_interpreter(read_model_bytes(path), where=str(path), num_threads=num_threads)
    shape = input_details(it)["shape"]
    rng = np.random.default_rng(0)
    set_input(it, rng.uniform(0, 255, shape).astype(np.float32))
    times = []
    for i in range(3 + max(1, runs)):
        t0 = time.perf_counter()
        it.invoke()
        if i >= 3:
            times.append(1000.0 * (time.perf_counter() - t0))
    return float(statistics.median(times))


def disagreement(
    spec: ModelSpec, raw: np.ndarray, ref: np.ndarray, image_sizes: np.ndarray
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Per-output max/mean |raw - ref| in model units, and the task's user-unit summary."""
    d = np.abs(raw - ref)
    per = [
        {"index": int(i), "max": float(d[:, i].max()), "mean": float(d[:, i].mean())}
        for i in range(d.shape[1])
    ]
    return per, tasks.get(spec.task).disagreement(spec, raw, ref, image_sizes)


@dataclass
class ValidationSet:
    """Validation images (full size, RGB), their user-unit targets and sizes (W, H)."""

    images: list[np.ndarray]
    targets: np.ndarray
    sizes: np.ndarray
    train_targets: np.ndarray | None = None

    @classmethod
    def from_datasets(cls, val_ds: Any, train_ds: Any | None = None, limit: int | None = None):
        samples = list(val_ds.samples)[: limit or None]
        images = [read_image(s.path) for s in samples]
        targets = np.stack([np.asarray(s.target) for s in samples])
        sizes = np.array([[im.shape[1], im.shape[0]] for im in images], np.float32)
        tt = None
        if train_ds is not None and hasattr(train_ds, "targets"):
            tt = np.asarray(train_ds.targets())
        return cls(images, targets, sizes, tt)


def verify_file(
    path: str | Path,
    variant: str,
    spec: ModelSpec,
    val: ValidationSet,
    keras_pred_raw: np.ndarray,
    keras_metrics: dict[str, Any],
    latency_runs: int = 50,
    progress: Callable[[str], None] | None = None,
) -> VariantCheck:
    """Run ``val`` through the device runtime for one file and compare with Keras."""
    path = Path(path)
    raw = device_raw(path, val.images, progress, variant)
    metrics = compute_metrics(
        spec, val.targets, spec.decode_output(raw), val.sizes, val.train_targets
    )
    key, hib = primary_metric(spec)
    value, kv = float(metrics[key]), float(keras_metrics[key])
    per, user = disagreement(spec, raw, keras_pred_raw, val.sizes)
    lat = {
        "1_thread": measure_latency(path, 1, latency_runs),
        "all_threads": measure_latency(path, os.cpu_count() or 1, latency_runs),
    }
    return VariantCheck(
        variant=variant,
        file=path.name,
        size_bytes=path.stat().st_size,
        metrics=_jsonable(metrics),
        metric_key=key,
        higher_is_better=hib,
        value=value,
        keras_value=kv,
        change=value - kv,
        relative_drop=relative_drop(kv, value, hib),
        disagreement=per,
        disagreement_user=user,
        latency_ms=lat,
        runner=RUNNER,
        relative_drop_se=relative_drop_se(spec, val, keras_pred_raw, raw),
    )


def _iter(items: Sequence[Any], progress: Callable[[str], None] | None, label: str):
    from edge_runtime.log import progress as progress_bar

    yield from progress_bar(items, desc=f"verify {label}", unit="img", enabled=progress is not None)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist()
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


SUGGESTIONS = (
    "try --variants int16x8 (16-bit activations), more calibration images (--calib 500), "
    "float outputs (--io float), a larger input size or a wider backbone at training, or "
    "use fp16/dynamic where the device allows"
)


def check_gate(checks: Sequence[VariantCheck], max_drop: float | None) -> None:
    """Raise QualityGateError when any variant loses more than ``max_drop`` (relative)."""
    if max_drop is None:
        return
    bad = [c for c in checks if c.relative_drop > max_drop]
    if not bad:
        return
    worst = ", ".join(
        f"{c.variant}: {c.metric_key} {c.value:.4g} vs Keras {c.keras_value:.4g} "
        f"({100 * c.relative_drop:+.1f} %)"
        for c in bad
    )
    raise QualityGateError(
        f"--max-drop {max_drop:g}: {len(bad)} variant(s) lost more than "
        f"{100 * max_drop:.1f} % on the task metric ({worst}); {SUGGESTIONS}"
    )
