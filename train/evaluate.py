"""Evaluate a run directory, a ``.keras`` file or a ``.tflite`` file on a dataset.

- Keras (run directory or ``.keras``): loaded with safe mode ON (a model with a Lambda
  layer, i.e. arbitrary Python code, is refused); every image is read with
  :func:`edge_runtime.images.read_image` and resized with
  :func:`edge_runtime.preprocess.resize_to_input` (the same resize as the device), fed as
  float32 0..255 RGB, decoded with :meth:`ModelSpec.decode_output`.
- TFLite: through the device runtime's own code (:class:`edge_runtime.predictor.Predictor`),
  full image in, resize inside the runtime, exactly as on the Pi.

Metrics come from :func:`train.metrics.compute_metrics` (in the user's units, beside the
trivial baseline). For a run directory the baseline is the run's own training mean /
majority class when its training data can still be read; otherwise the mean of the
evaluation data (``baseline_source`` says which).
"""

from __future__ import annotations

import importlib
import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import DataError, EdgeregError, ModelFileError, SpecError
from edge_runtime.images import read_image
from edge_runtime.preprocess import apply_transform, resize_to_input
from edge_runtime.spec import ModelSpec
from train import tasks

from .metrics import compute_metrics, is_clearly_better

KERAS_BATCH = 32


@dataclass
class ResolvedModel:
    """What ``MODEL`` on the command line turned out to be."""

    kind: str  # "keras" | "tflite"
    path: Path  # the model file
    spec: ModelSpec | None  # None for a .tflite whose spec is embedded (read by the runtime)
    run_dir: Path | None  # set when MODEL was a run directory
    config: dict[str, Any]  # the run's config.json ({} otherwise)


def resolve_model(model: str | Path, spec: ModelSpec | None = None) -> ResolvedModel:
    """A run directory, ``.keras`` or ``.tflite`` path -> model file, spec and run config."""
    p = Path(model)
    if p.is_dir():
        keras_path = p / "model.keras"
        if not keras_path.is_file():
            raise ModelFileError(
                f"{p}: a run directory needs model.keras (train with `edgereg train ... "
                f"--out {p}`), or pass the .keras/.tflite file itself"
            )
        return ResolvedModel(
            "keras", keras_path, spec or _spec_file(p / "spec.json"), p, _config(p)
        )
    if not p.exists():
        raise ModelFileError(f"{p}: no such model file or run directory")
    suffix = p.suffix.lower()
    if suffix == ".keras":
        if spec is None:
            spec = _spec_file(p.parent / "spec.json", model_path=p)
        run_dir = _find_run_dir(p)
        return ResolvedModel("keras", p, spec, run_dir, _config(run_dir) if run_dir else {})
    if suffix == ".tflite":
        if spec is None:
            from edge_runtime.metadata import read_spec

            if read_spec(p) is None:
                side = p.parent / "spec.json"
                if not side.is_file():
                    raise SpecError(
                        f"{p}: carries no embedded spec and there is no spec.json beside it; "
                        "convert it with `edgereg convert` (which embeds the spec) or put "
                        "the run's spec.json next to it"
                    )
                spec = _spec_file(side, model_path=p)
        # runs/NAME/export/model_int8.tflite: the run's config gives --y-up etc. and the
        # training-data baseline, exactly as for the run directory itself.
        run_dir = _find_run_dir(p)
        return ResolvedModel("tflite", p, spec, run_dir, _config(run_dir) if run_dir else {})
    raise ModelFileError(
        f"{p}: not a model (expected a run directory, a .keras file or a .tflite file)"
    )


#: The files ``edgereg eval --plots DIR`` writes.
PLOT_FILES = ("pred_vs_true.png", "error_hist.png", "examples.png")
#: Keys every ``edgereg eval --json`` file holds (how an earlier one is recognised).
JSON_KEYS = ("model_kind", "data_dir", "baseline_source")


def eval_inputs(model: str | Path, data_dir: str | Path) -> tuple[list[Any], list[Any]]:
    """(files, folders) ``edgereg eval MODEL DATA_DIR`` reads, as ``(what, path)`` pairs
    for :func:`edge_runtime.outputs.check_outputs`: the model file (or a run's model,
    spec and config), a spec.json beside it, the dataset, and the run's own training and
    validation data (read for the baseline). Nothing is loaded here."""
    p = Path(model)
    files: list[Any] = []
    folders: list[Any] = [("DATA_DIR", data_dir)]
    if p.is_dir():
        run_dir: Path | None = p
    else:
        files += [("MODEL", p), ("MODEL's spec.json", p.parent / "spec.json")]
        run_dir = _find_run_dir(p) if p.exists() else None
    if run_dir is not None:
        files += [
            (f"MODEL's {n}", run_dir / n) for n in ("model.keras", "spec.json", "config.json")
        ]
        cfg = _config(run_dir)
        for key, what in (("data_dir", "the run's DATA_DIR"), ("val_dir", "the run's --val")):
            if isinstance(cfg.get(key), str) and cfg[key]:
                folders.append((what, cfg[key]))
    return files, folders


@dataclass
class Evaluation:
    """Everything an evaluation produced."""

    spec: ModelSpec
    metrics: dict[str, Any]  # flat, JSON-safe
    paths: list[Path]
    y_true: np.ndarray
    y_pred: np.ndarray
    image_sizes: np.ndarray  # (N, 2) width, height


def evaluate(
    model: str | Path,
    data_dir: str | Path,
    *,
    task: str | None = None,
    tta: bool = False,
    backend: str = "auto",
    spec: ModelSpec | None = None,
    return_predictions: bool = False,
    skip_bad: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate ``model`` on the dataset in ``data_dir``; returns flat metrics.

    ``model`` is a run directory (its model.keras + spec.json), a ``.keras`` file (with
    ``spec.json`` beside it, or ``spec``) or a ``.tflite`` file (run by the device
    runtime). ``options`` are the task's label options (``y_up``, ``coords``, ``target``,
    ...); one left at None takes the run's own setting (from its config.json), else the
    task's default. With ``return_predictions`` the result also holds ``predictions``:
    ``{"paths", "y_true", "y_pred", "image_sizes"}`` (numpy arrays, not JSON).
    """
    ev = evaluate_model(
        model,
        data_dir,
        task=task,
        tta=tta,
        backend=backend,
        spec=spec,
        skip_bad=skip_bad,
        **options,
    )
    out = dict(ev.metrics)
    if return_predictions:
        out["predictions"] = {
            "paths": [str(p) for p in ev.paths],
            "y_true": ev.y_true,
            "y_pred": ev.y_pred,
            "image_sizes": ev.image_sizes,
        }
    return out


def evaluate_model(
    model: str | Path,
    data_dir: str | Path,
    *,
    task: str | None = None,
    tta: bool = False,
    backend: str = "auto",
    spec: ModelSpec | None = None,
    skip_bad: bool = False,
    **options: Any,
) -> Evaluation:
    """Like :func:`evaluate`, but returns the spec and predictions beside the metrics."""
    from train.dataset import load_dataset

    resolved = resolve_model(model, spec)
    spec = _resolved_spec(resolved, task, tta, backend)
    kind = tasks.get(spec.task)
    ds = load_dataset(
        data_dir,
        spec.task,
        skip_bad=skip_bad,
        class_names=list(spec.class_names) or None,
        **_label_options(resolved, spec, Path(data_dir), options),
    )
    why = kind.dataset_fits(spec, ds)
    if why:
        raise DataError(f"{data_dir}: {why}")
    paths = ds.paths()
    if resolved.kind == "keras":
        y_pred = predict_keras(resolved.path, spec, paths, tta=tta)
    else:
        y_pred = predict_tflite(
            resolved.path, spec if resolved.spec is not None else None, paths, tta, backend
        )
    y_true = ds.targets()
    sizes = ds.image_sizes()
    train_targets, source = _baseline_targets(resolved, spec)
    out = compute_metrics(spec, y_true, y_pred, image_sizes=sizes, train_targets=train_targets)
    # NaN/inf (a model that outputs NaN) become None: JSON has no NaN, and the verdict
    # treats a missing number as "not better than the baseline".
    out = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}
    out["beats_baseline"] = is_clearly_better(spec, out)
    out["baseline_source"] = source
    out["model"] = str(resolved.path)
    out["model_kind"] = resolved.kind
    out["data_dir"] = str(Path(data_dir))
    out["tta"] = bool(tta)
    if ds.dropped:
        out["skipped_rows"] = int(ds.dropped)
    return Evaluation(spec, out, paths, y_true, y_pred, sizes)


def _resolved_spec(resolved: ResolvedModel, task: str | None, tta: bool, backend: str) -> ModelSpec:
    """The model's spec, checked against ``--task``, ``--tta`` and (tflite) its tensors."""
    spec = resolved.spec
    if spec is None:  # .tflite with an embedded spec
        from edge_runtime.metadata import read_spec

        spec = read_spec(resolved.path)
        if spec is None:
            raise SpecError(f"{resolved.path}: carries no embedded spec")
    if tta:
        check_tta(spec, Path(resolved.path).name)
    if task is not None and task != spec.task:
        raise SpecError(
            f"--task {task}: the model {resolved.path} is a {spec.task} model; "
            f"drop --task or pass --task {spec.task}"
        )
    if resolved.kind != "keras":
        # The device runtime checks the spec against the model's tensors: do that before
        # reading any data, so a wrong spec is reported as one (SpecError), not as a
        # dataset that does not fit the spec's task.
        from edge_runtime.predictor import Predictor, PredictorOptions

        with Predictor.create_from_options(
            PredictorOptions(model_path=resolved.path, backend=backend, spec=resolved.spec)
        ):
            pass
    return spec


def _label_options(
    resolved: ResolvedModel, spec: ModelSpec, data_dir: Path, given: dict[str, Any]
) -> dict[str, Any]:
    """Label options: those given, else the run's own, else what the spec implies."""
    from train.dataset import label_options, run_options

    opts = label_options(spec.task, run_options(resolved.config))
    opts.update({k: v for k, v in given.items() if v is not None})
    implied = tasks.get(spec.task).label_options_from_spec(spec, data_dir)
    for k, v in implied.items():
        if opts.get(k) is None:
            opts[k] = v
    return opts


def load_example_images(paths: list[Path], max_n: int = 16) -> tuple[np.ndarray, list[np.ndarray]]:
    """Up to ``max_n`` evenly spaced images (original size, RGB) and their indices."""
    if not paths:
        return np.zeros(0, dtype=np.int64), []
    idx = np.unique(np.linspace(0, len(paths) - 1, min(max_n, len(paths))).round().astype(int))
    return idx, [read_image(paths[i]) for i in idx]


# --------------------------------------------------------------------------- Keras
def load_keras_model(path: str | Path) -> Any:
    """Load a ``.keras`` file with safe mode ON; any failure is a ModelFileError."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such model file")
    if not zipfile.is_zipfile(p):
        raise ModelFileError(
            f"{p}: not a Keras 3 model file (.keras is a zip archive; this file is "
            "truncated or something else)"
        )
    import keras

    _register_custom_layers()

    try:
        return keras.saving.load_model(p, safe_mode=True)
    except Exception as e:  # Keras raises ValueError/TypeError/KeyError/OSError...
        msg = str(e)
        if "lambda" in msg.lower() or "safe_mode" in msg:
            raise ModelFileError(
                f"{p}: contains a Lambda layer (arbitrary Python code stored in the file). "
                "edgereg loads models only with Keras safe mode on and will not run it; "
                "rebuild the model without Lambda layers (use a registered custom layer, "
                "as train/models.py does)"
            ) from None
        first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
        raise ModelFileError(f"{p}: cannot load this Keras model ({first[:300]})") from None


def load_images(
    spec: ModelSpec, paths: list[Path], start: int = 0, stop: int | None = None
) -> np.ndarray:
    """Read and resize images [start, stop) to the model input: uint8 RGB NHWC."""
    sel = paths[start:stop]
    batch = np.empty((len(sel), spec.input_height, spec.input_width, 3), dtype=np.uint8)
    for i, p in enumerate(sel):
        rgb = read_image(p)
        batch[i] = resize_to_input(rgb, spec.input_height, spec.input_width, spec.interpolation)
    return batch


def predict_keras(
    model_path: str | Path | Any,
    spec: ModelSpec,
    paths: list[Path],
    *,
    tta: bool = False,
    batch_size: int = KERAS_BATCH,
) -> np.ndarray:
    """Decoded predictions (user units) of a Keras model for image files, in order."""
    model = load_keras_model(model_path) if isinstance(model_path, (str, Path)) else model_path
    _check_keras_shapes(model, spec, model_path)
    fixed = model.inputs[0].shape[0] if getattr(model, "inputs", None) else None
    bs = int(fixed) if fixed else batch_size
    transforms = check_tta(spec) if tta else ["identity"]
    device = spec.task_kind
    outs = []
    for start in range(0, len(paths), bs):
        x = load_images(spec, paths, start, start + bs)
        n = len(x)
        per_transform = []
        for name in transforms:
            # the same transforms as the device runtime, on the same uint8 resized images
            xt = np.stack([apply_transform(img, name) for img in x]).astype(np.float32)
            if fixed and n < fixed:  # a static-batch model: pad the last batch
                xt = np.concatenate([xt, np.zeros((fixed - n, *xt.shape[1:]), xt.dtype)])
            raw = np.asarray(model(xt, training=False), dtype=np.float32)[:n]
            dec = spec.decode_output(raw.reshape(n, -1))
            per_transform.append([device.tta_invert(spec, d, name) for d in dec])
        merged = [device.tta_merge(spec, list(views)) for views in zip(*per_transform, strict=True)]
        outs.append(np.stack(merged).astype(np.float32))
    if not outs:
        k = spec.output_size
        return spec.decode_output(np.zeros((0, k), np.float32))
    return np.concatenate(outs)


def check_tta(spec: ModelSpec, where: str = "the model") -> list[str]:
    """The test-time transforms for ``spec`` (the device runtime's own list), or SpecError."""
    from edge_runtime.predictor import check_tta as refuse_useless_tta

    return refuse_useless_tta(spec, where)


def _check_keras_shapes(model: Any, spec: ModelSpec, where: Any) -> None:
    try:
        in_shape = tuple(model.inputs[0].shape)
        out_shape = tuple(model.outputs[0].shape)
        n_out = len(model.outputs)
    except (AttributeError, IndexError, TypeError):
        return
    if n_out != 1:
        raise SpecError(f"{where}: the model has {n_out} outputs; edgereg models have one")
    if tuple(in_shape[1:3]) != (spec.input_height, spec.input_width):
        raise SpecError(
            f"{where}: the model takes {in_shape[1]}x{in_shape[2]} (HxW) input but its spec "
            f"says {spec.input_height}x{spec.input_width}; use the spec.json of this run"
        )
    size = int(np.prod([d for d in out_shape[1:] if d is not None]))
    if size != spec.output_size:
        raise SpecError(
            f"{where}: the model outputs {size} values but its {spec.task} spec expects "
            f"{spec.output_size}; use the spec.json of this run"
        )


# --------------------------------------------------------------------------- TFLite
def predict_tflite(
    model_path: str | Path,
    spec: ModelSpec | None,
    paths: list[Path],
    tta: bool = False,
    backend: str = "auto",
) -> np.ndarray:
    """Decoded predictions through the device runtime: full RGB image in, as on the Pi."""
    from edge_runtime.predictor import Predictor, PredictorOptions

    opts = PredictorOptions(
        model_path=model_path, backend=backend, color_order="RGB", tta=tta, spec=spec
    )
    with Predictor.create_from_options(opts) as pred:
        s = pred.spec
        rows = [s.task_kind.prediction(s, pred.predict(read_image(p))) for p in paths]
    if not rows:
        return s.decode_output(np.zeros((0, s.output_size), np.float32))
    return np.stack(rows)


# --------------------------------------------------------------------------- helpers
def _register_custom_layers() -> None:
    """``import train.models``: it registers edgereg's custom layers with Keras."""
    try:
        importlib.import_module("train.models")
    except ModuleNotFoundError as e:
        if e.name != "train.models":
            raise


def _spec_file(path: Path, model_path: Path | None = None) -> ModelSpec:
    if not path.is_file():
        where = model_path or path.parent
        raise SpecError(
            f"{where}: no spec.json found at {path}; evaluate the run directory itself, "
            "or put the run's spec.json beside the model file"
        )
    try:
        text = path.read_bytes()
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return ModelSpec.from_json(text)
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None


def _find_run_dir(model_file: Path) -> Path | None:
    """The run directory a model file lives in (itself or its ``export/`` folder), if any."""
    for d in (model_file.parent, model_file.parent.parent):
        if (d / "config.json").is_file() and (d / "spec.json").is_file():
            return d
    return None


def _config(run_dir: Path) -> dict[str, Any]:
    p = run_dir / "config.json"
    if not p.is_file():
        return {}
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        warnings.warn(f"{p}: cannot read ({e}); using defaults", stacklevel=2)
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _baseline_targets(resolved: ResolvedModel, spec: ModelSpec) -> tuple[np.ndarray | None, str]:
    """The run's own training targets (for the baseline), when they can still be read
    and fit the model (a run whose data changed since falls back to the evaluation data)."""
    if resolved.run_dir is None or not resolved.config:
        return None, "evaluation data"
    try:
        from train.dataset import load_run_splits

        train_ds, _ = load_run_splits(resolved.run_dir)
    except (EdgeregError, OSError, ValueError, KeyError, ImportError):
        return None, "evaluation data"
    if tasks.get(spec.task).dataset_fits(spec, train_ds):
        return None, "evaluation data"
    return train_ds.targets(), "training data"
