"""The training recipe behind ``edgereg train``.

1. The dataset checks run first; bad data is refused with the full report (DataError)
   unless ``skip_bad``. Images are decoded once and resized with
   :func:`edge_runtime.preprocess.resize_to_input` (the device's own resize) to the input
   size, and kept in memory as uint8.
2. Deterministic split (stratified for class), or a separate ``val_dir``.
3. Pretrained start: phase ``warmup`` trains the head with the backbone frozen; phase
   ``finetune`` unfreezes the top ``fine_tune_blocks`` blocks (default: all) at 0.3x the
   learning rate, with every BatchNorm kept in inference mode (its statistics stay ImageNet's).
   From scratch (``weights='none'``): one phase ``scratch``, everything trainable, BatchNorm
   momentum 0.9 so its statistics move within a few hundred steps.
4. AdamW with cosine decay per phase; after every epoch the validation set is predicted,
   decoded to the user's units and scored with :func:`train.metrics.compute_metrics`;
   the primary metric picks the best checkpoint and drives early stopping.
5. Every epoch a checkpoint (weights, optimizer state, epoch, phase, history, best so
   far) is written atomically as ONE ``.npz`` file, so ``resume=True`` after a crash or
   ``kill -9`` loses at most the epoch that was running. Augmentation and shuffling
   depend only on (seed, epoch, index), so a resumed run sees the same data.
6. The run directory: model.keras (best epoch), spec.json, config.json, metrics.json,
   history.csv, plots/, summary.txt; every file written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from edge_runtime.errors import DataError, TrainingError
from edge_runtime.images import read_image
from edge_runtime.preprocess import resize_to_input
from edge_runtime.spec import ModelSpec, parse_flip_pairs, parse_invariances

CHECKPOINT_DIR = "checkpoint"
LAST = "last.npz"
#: Share of the epochs spent on the head warm-up (pretrained start).
WARMUP_SHARE = 0.15
#: Fine-tune learning rate = lr * FINE_TUNE_LR_FACTOR (measured: 0.3 with every block
#: unfrozen beat 0.1 with the top 6 on the point sample data, see docs/training.md).
FINE_TUNE_LR_FACTOR = 0.3
#: The --sanity check: images, steps, and what "fitted" means per task.
SANITY_IMAGES = 8
SANITY_CHECK_EVERY = 25
SANITY_MAX_COORD_ERROR = 0.02  # mean normalized distance
SANITY_MAX_VALUE_ERROR = 0.02  # mean absolute error as a share of the value range


@dataclass
class TrainConfig:
    """Everything that defines a run. Saved as ``config.json`` (a run can be resumed from it)."""

    data_dir: str
    task: str
    val_dir: str | None = None
    val_fraction: float = 0.2
    y_up: bool = False
    coords: str = "normalized"
    target: str | None = None
    skip_bad: bool = False
    backbone: str = "mobilenet_v2"
    alpha: float = 1.0
    input_size: int | list[int] | None = None
    weights: str = "imagenet"
    epochs: int | None = None
    warmup_epochs: int | None = None
    batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    dropout: float = 0.2
    fine_tune_blocks: int | None = None  # None: every block (BatchNorm still frozen)
    fine_tune_lr: float | None = None
    patience: int | None = None  # None: max(10, a quarter of the epochs)
    value_range: list[float] | None = None
    invariances: list[str] = field(default_factory=list)
    flip_pairs: list[list[int]] = field(default_factory=list)
    augment: bool = True
    seed: int = 0
    max_minutes: float | None = None
    sanity_steps: int = 300


# --------------------------------------------------------------------------- public API
def train(
    data_dir: str | Path,
    task: str,
    out: str | Path,
    *,
    resume: bool = False,
    sanity: bool = False,
    verbose: bool = True,
    **options: Any,
) -> Path:
    """Train a model and write the run directory ``out``; returns ``out``.

    ``options`` are :class:`TrainConfig` fields (``invariances`` and ``flip_pairs`` may be
    given as strings like ``"rot90,flip"`` and ``"0:1,2:3"``). ``resume=True`` continues
    the interrupted run in ``out`` with its saved configuration. ``sanity=True`` only
    checks that the model can overfit 8 training images, and raises TrainingError if not.
    """
    out = Path(out)
    if resume:
        cfg = _load_config_for_resume(out, options)
    else:
        cfg = _make_config(data_dir, task, options)
    log = _Logger(verbose)
    if sanity:
        return _sanity(cfg, out, log)
    if not resume:
        _refuse_existing_run(out)
    with _run_lock(out):
        return _Run(cfg, out, log, resume=resume).run()


@contextlib.contextmanager
def _run_lock(out: Path) -> Iterator[None]:
    """One training process per run directory (a second one would interleave checkpoints)."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise TrainingError(
                f"{out}: another edgereg train is running in this run directory; wait for it "
                "or stop it first"
            ) from None
        yield


# --------------------------------------------------------------------------- config
def _make_config(data_dir: str | Path, task: str, options: dict[str, Any]) -> TrainConfig:
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"train(): unknown option(s) {', '.join(unknown)}")
    opts = {k: v for k, v in options.items() if v is not None}
    if isinstance(opts.get("invariances"), str) or opts.get("invariances"):
        opts["invariances"] = list(parse_invariances(opts.get("invariances")))
    fp = opts.get("flip_pairs")
    if isinstance(fp, str):
        opts["flip_pairs"] = [list(p) for p in parse_flip_pairs(fp)]
    elif fp:
        opts["flip_pairs"] = [list(map(int, p)) for p in fp]
    if opts.get("value_range") is not None:
        lo, hi = (float(v) for v in opts["value_range"])
        if not hi > lo:
            raise DataError(f"--range: HIGH must be above LOW, got {lo} {hi}")
        opts["value_range"] = [lo, hi]
    if isinstance(opts.get("input_size"), tuple):
        opts["input_size"] = list(opts["input_size"])
    cfg = TrainConfig(data_dir=str(Path(data_dir).resolve()), task=task, **opts)
    if cfg.val_dir is not None:
        cfg.val_dir = str(Path(cfg.val_dir).resolve())
    if task not in ("point", "keypoints", "value", "class"):
        raise DataError(f"--task: {task!r} is not one of point, keypoints, value, class")
    return cfg


def _load_config_for_resume(out: Path, options: dict[str, Any]) -> TrainConfig:
    path = out / "config.json"
    if not (out / CHECKPOINT_DIR / LAST).is_file():
        if path.is_file() and json.loads(path.read_text()).get("status") == "complete":
            raise TrainingError(f"{out}: this run is already complete; nothing to resume")
        raise TrainingError(
            f"{out / CHECKPOINT_DIR / LAST}: no checkpoint to resume from (the run stopped "
            "before its first epoch ended); start it again without --resume"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TrainingError(f"{path}: cannot read the run's configuration ({e})") from None
    fields = set(TrainConfig.__dataclass_fields__)
    ignored = sorted(k for k, v in options.items() if v not in (None, False, (), []))
    if ignored:
        print(
            f"--resume: using the settings saved in {path}; ignoring {', '.join(ignored)}",
            file=sys.stderr,
        )
    return TrainConfig(**{k: v for k, v in raw.items() if k in fields})


def _refuse_existing_run(out: Path) -> None:
    if (out / CHECKPOINT_DIR / LAST).is_file():
        raise TrainingError(
            f"{out}: holds an interrupted run; continue it with --resume, or choose another --out"
        )
    if (out / "config.json").is_file() or (out / "model.keras").is_file():
        raise TrainingError(f"{out}: already holds a run; choose another --out or delete it")


#: Optimizer steps and the largest epoch count of a default run, per task. Keypoints get
#: more: 8 coordinates to place, and on the keypoints sample set the default run was
#: still improving at its last epoch (best epoch 76 of 79).
DEFAULT_STEPS = {"point": 1500, "keypoints": 2400, "value": 1500, "class": 1500}
MAX_DEFAULT_EPOCHS = {"point": 80, "keypoints": 120, "value": 80, "class": 80}


def default_epochs(n_train: int, batch_size: int, task: str = "point") -> int:
    """About :data:`DEFAULT_STEPS` optimizer steps: 15 to :data:`MAX_DEFAULT_EPOCHS` epochs."""
    steps = max(1, math.ceil(n_train / batch_size))
    want = math.ceil(DEFAULT_STEPS.get(task, 1500) / steps)
    return int(min(MAX_DEFAULT_EPOCHS.get(task, 80), max(15, want)))


def default_batch_size(n_train: int) -> int:
    return 32 if n_train >= 500 else 16


# --------------------------------------------------------------------------- data
@dataclass
class _Data:
    spec: ModelSpec
    x_train: np.ndarray
    y_train: np.ndarray  # user units (dataset form)
    x_val: np.ndarray
    y_val: np.ndarray
    val_sizes: np.ndarray
    val_paths: list[Path]
    n_dropped: int


def _load_data(cfg: TrainConfig, log: _Logger, only_train: int | None = None) -> _Data:
    from train.dataset import load_dataset, split_dataset

    kw = dict(y_up=cfg.y_up, coords=cfg.coords, target=cfg.target, skip_bad=cfg.skip_bad)
    ds = load_dataset(cfg.data_dir, cfg.task, **kw)
    if getattr(ds, "dropped", 0):
        log(f"--skip-bad: dropped {ds.dropped} bad row(s) of {cfg.data_dir}")
    if cfg.val_dir:
        tr = ds
        va = load_dataset(cfg.val_dir, cfg.task, class_names=ds.class_names or None, **kw)
    else:
        tr, va = split_dataset(ds, cfg.val_fraction, cfg.seed)
    if only_train is not None:
        tr = tr.subset(range(min(only_train, len(tr))))
    if len(tr) == 0 or len(va) == 0:
        raise DataError(
            f"{cfg.data_dir}: {len(tr)} training and {len(va)} validation images; both "
            "need at least one (add images, or give --val DIR)"
        )
    spec = _make_spec(cfg, ds, tr.targets())
    x_tr = _load_images(tr, spec, "train", log)
    x_va = _load_images(va, spec, "val", log)
    return _Data(
        spec=spec,
        x_train=x_tr,
        y_train=tr.targets(),
        x_val=x_va,
        y_val=va.targets(),
        val_sizes=va.image_sizes(),
        val_paths=[s.path for s in va.samples],
        n_dropped=int(getattr(ds, "dropped", 0) or 0),
    )


def _input_hw(cfg: TrainConfig) -> tuple[int, int]:
    from train.models import default_input_size

    s = cfg.input_size
    if s is None:
        s = default_input_size(cfg.task)
    if isinstance(s, (list, tuple)):
        return int(s[0]), int(s[1])
    return int(s), int(s)


def _make_spec(cfg: TrainConfig, ds: Any, train_targets: np.ndarray) -> ModelSpec:
    h, w = _input_hw(cfg)
    if cfg.input_size is None:
        cfg.input_size = h if h == w else [h, w]
    value_range = None
    if cfg.task == "value":
        if cfg.value_range is None:
            lo, hi = float(np.min(train_targets)), float(np.max(train_targets))
            span = hi - lo if hi > lo else max(1.0, abs(hi) * 0.1)
            # A margin: outputs are clipped to the range, and new data may go a bit beyond.
            lo, hi = lo - 0.05 * span, hi + 0.05 * span
            cfg.value_range = [round(lo, 6), round(hi, 6)]
        value_range = (float(cfg.value_range[0]), float(cfg.value_range[1]))
        t = np.asarray(train_targets, np.float64)
        outside = int(np.sum((t < value_range[0]) | (t > value_range[1])))
        if outside:
            raise DataError(
                f"--range {value_range[0]:g} {value_range[1]:g}: {outside} training value(s) "
                f"lie outside it (min {t.min():g}, max {t.max():g}); widen --range"
            )
    k = ds.num_keypoints if cfg.task in ("point", "keypoints") else 0
    return ModelSpec(
        task=cfg.task,
        input_height=h,
        input_width=w,
        num_keypoints=k,
        value_range=value_range,
        target_name=getattr(ds, "target_name", "value") or "value",
        class_names=tuple(ds.class_names) if cfg.task == "class" else (),
        flip_pairs=tuple(tuple(p) for p in cfg.flip_pairs),
        invariances=tuple(cfg.invariances),
        backbone=f"{cfg.backbone}@{cfg.alpha:g}",
        name=Path(cfg.data_dir).name,
    )


def _load_images(ds: Any, spec: ModelSpec, what: str, log: _Logger) -> np.ndarray:
    h, w = spec.input_height, spec.input_width
    out = np.empty((len(ds), h, w, 3), np.uint8)
    for i, s in enumerate(log.progress(ds.samples, desc=f"loading {what} images", unit="img")):
        out[i] = resize_to_input(read_image(s.path), h, w, spec.interpolation)
    return out


# --------------------------------------------------------------------------- helpers
class _Logger:
    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    def __call__(self, msg: str) -> None:
        if self.verbose:
            print(msg, file=sys.stderr, flush=True)

    def progress(self, it: Any, **kw: Any) -> Any:
        from tqdm.auto import tqdm

        return tqdm(it, disable=not self.verbose, leave=False, file=sys.stderr, **kw)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise TrainingError(f"{path}: checkpoint unreadable ({e}); start the run again") from None


def _weights_arrays(model: Any, prefix: str = "m") -> dict[str, np.ndarray]:
    return {f"{prefix}{i:05d}": np.asarray(w) for i, w in enumerate(model.get_weights())}


def _set_weights(model: Any, arrays: dict[str, np.ndarray], prefix: str = "m") -> None:
    ws = [arrays[k] for k in sorted(k for k in arrays if k.startswith(prefix) and k[1:].isdigit())]
    try:
        model.set_weights(ws)
    except ValueError as e:
        raise TrainingError(f"checkpoint does not fit this model ({e})") from None


def _epoch_order(seed: int, epoch: int, n: int, length: int) -> np.ndarray:
    """Shuffled indices for one epoch, padded with a few repeats to whole batches.

    Every batch has the same size, so the train step is traced once (a smaller last batch
    would trace it again, which costs seconds on a CPU).
    """
    rng = np.random.default_rng((seed, epoch, 7))
    order = rng.permutation(n)
    if length > n:
        order = np.concatenate([order, rng.permutation(n)[: length - n]])
    return order


def _encode(spec: ModelSpec, y: np.ndarray) -> np.ndarray:
    if spec.task == "class":
        return np.asarray(y, np.int64)
    return spec.encode_target(y).reshape(len(y), -1).astype(np.float32)


def _predict(model: Any, x: np.ndarray, batch: int = 64) -> np.ndarray:
    outs = [
        np.asarray(model(x[i : i + batch].astype(np.float32), training=False))
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(outs, axis=0)


def _scalar_metrics(spec: ModelSpec, m: dict[str, Any]) -> dict[str, float]:
    from train.metrics import metric_keys

    return {
        k: float(m[k])
        for k in metric_keys(spec)
        if isinstance(m.get(k), (int, float)) and m.get(k) is not None
    }


def _configure_phase(model: Any, phase: str, cfg: TrainConfig) -> None:
    """Set what trains in a phase. BatchNorm stays in inference mode unless from scratch."""
    import keras

    from train.backbones import backbone_blocks
    from train.models import get_backbone

    bb = get_backbone(model)
    for layer in model.layers:
        layer.trainable = True
    if phase == "scratch":
        bb.trainable = True
        return
    if phase == "warmup":
        bb.trainable = False
        return
    bb.trainable = True
    blocks = backbone_blocks(bb)
    n = len(blocks) if cfg.fine_tune_blocks is None else min(cfg.fine_tune_blocks, len(blocks))
    top = {id(layer) for blk in blocks[len(blocks) - n :] for layer in blk}
    for blk in blocks:
        for layer in blk:
            layer.trainable = id(layer) in top
    for layer in _all_sublayers(bb):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # Keras 3: a frozen BatchNorm runs in inference mode


def _all_sublayers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_sublayers(layer))
    return out


def _compile(
    model: Any, spec: ModelSpec, lr: float, decay_steps: int, warmup_steps: int, wd: float
):
    import keras

    from train.models import loss_for

    if warmup_steps > 0:
        schedule = keras.optimizers.schedules.CosineDecay(
            lr * 0.1, decay_steps, alpha=0.02, warmup_target=lr, warmup_steps=warmup_steps
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps, alpha=0.02)
    opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=wd)
    # jit_compile off: XLA compiling MobileNet on a CPU costs minutes before the first step.
    model.compile(optimizer=opt, loss=loss_for(spec), jit_compile=False)
    return opt


def _deployable(model: Any) -> Any:
    """The trained network without its optimizer: the same layers in an uncompiled model.

    Saving the compiled model would also store AdamW's two moments per weight (about
    twice the weights again: 32 MB instead of 11 MB for MobileNetV2-1.0), which nothing
    downstream reads; resuming uses the checkpoint folder, not model.keras.
    """
    import keras

    return keras.Model(model.inputs, model.outputs, name=model.name)


# --------------------------------------------------------------------------- the run
class _Run:
    def __init__(self, cfg: TrainConfig, out: Path, log: _Logger, resume: bool) -> None:
        self.cfg, self.out, self.log, self.resume = cfg, out, log, resume
        self.ckdir = out / CHECKPOINT_DIR

    # phases: list of (name, first_epoch, end_epoch, lr, warmup_steps)
    def _phases(self, n_train: int) -> list[tuple[str, int, int, float]]:
        cfg = self.cfg
        total = cfg.epochs or default_epochs(n_train, cfg.batch_size or 16, cfg.task)
        if str(cfg.weights).lower() == "none":
            return [("scratch", 0, total, cfg.lr)]
        warm = cfg.warmup_epochs
        if warm is None:
            warm = max(1, round(WARMUP_SHARE * total)) if total > 1 else 1
        warm = min(warm, total)
        phases = [("warmup", 0, warm, cfg.lr)]
        if total > warm:
            ft_lr = cfg.fine_tune_lr or cfg.lr * FINE_TUNE_LR_FACTOR
            phases.append(("finetune", warm, total, ft_lr))
        return phases

    def run(self) -> Path:
        cfg, out, log = self.cfg, self.out, self.log
        t_start = time.monotonic()
        # The dataset checks run before TensorFlow is even imported: bad data fails fast.
        data = _load_data(cfg, log)

        import keras

        from train.augment import Augmenter, augment_batch
        from train.metrics import compute_metrics, primary_metric
        from train.models import build_model

        keras.utils.set_random_seed(cfg.seed)
        spec = data.spec
        n_train = len(data.x_train)
        if cfg.batch_size is None:
            cfg.batch_size = default_batch_size(n_train)
        if cfg.epochs is None:
            cfg.epochs = default_epochs(n_train, cfg.batch_size, cfg.task)
        bs = min(cfg.batch_size, n_train)
        steps = math.ceil(n_train / bs)
        phases = self._phases(n_train)
        key, higher = primary_metric(spec)

        state: dict[str, Any] = {
            "epoch": 0,  # epochs completed
            "history": [],
            "best_metric": None,
            "best_epoch": None,
            "best_file": None,
            "since_best": 0,
            "stopped": None,
            "elapsed_s": 0.0,
        }
        ck: dict[str, np.ndarray] | None = None
        if self.resume:
            ck = _read_npz(self.ckdir / LAST)
            state = json.loads(str(ck["state"]))
            log(
                f"resuming {out} after epoch {state['epoch']} (best so far: epoch "
                f"{state['best_epoch']}, {key} {state['best_metric']})"
            )
            keras.utils.set_random_seed(cfg.seed + 1000 * state["epoch"])
        else:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                out / "config.json",
                {**asdict(cfg), "status": "running", "class_names": list(spec.class_names)},
            )
            atomic_write_text(out / "spec.json", spec.to_json())
        self.ckdir.mkdir(parents=True, exist_ok=True)

        model = build_model(
            spec, backbone=cfg.backbone, alpha=cfg.alpha, weights=cfg.weights, dropout=cfg.dropout
        )
        if ck is not None:
            _set_weights(model, ck, "m")
        aug = Augmenter(spec) if cfg.augment else None
        y_val_enc = _encode(spec, data.y_val)
        loss_fn = None
        train_started = time.monotonic()
        elapsed0 = float(state.get("elapsed_s", 0.0))

        for name, first, end, lr in phases:
            if state["stopped"] or state["epoch"] >= end:
                continue
            if state["epoch"] == first:
                state["since_best"] = 0  # patience counts within a phase
            _configure_phase(model, name, cfg)
            warm_steps = steps if name == "finetune" else 0
            opt = _compile(
                model, spec, lr, max(1, (end - first) * steps), warm_steps, cfg.weight_decay
            )
            loss_fn = model.loss
            if ck is not None and state["epoch"] > first:
                opt.build(model.trainable_variables)
                saved = [ck[k] for k in sorted(k for k in ck if k.startswith("o"))]
                if len(saved) != len(opt.variables):
                    raise TrainingError(
                        f"{self.ckdir / LAST}: optimizer state has {len(saved)} variables, the "
                        f"model needs {len(opt.variables)}; start the run again"
                    )
                for var, arr in zip(opt.variables, saved, strict=True):
                    var.assign(arr)
            ck = None
            n_trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
            log(
                f"phase {name}: epochs {first + 1}-{end}, lr {lr:g}, "
                f"{n_trainable:,} trainable parameters, batch {bs}, {steps} steps/epoch"
            )
            for epoch in range(max(first, state["epoch"]), end):
                t0 = time.monotonic()
                x_aug, y_aug = augment_batch(aug, data.x_train, data.y_train, cfg.seed, epoch)
                order = _epoch_order(cfg.seed, epoch, n_train, steps * bs)
                y_enc = _encode(spec, y_aug)
                losses = []
                bar = log.progress(
                    range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs} {name}", unit="step"
                )
                for s in bar:
                    idx = order[s * bs : (s + 1) * bs]
                    loss = model.train_on_batch(x_aug[idx].astype(np.float32), y_enc[idx])
                    losses.append(float(np.asarray(loss).reshape(-1)[0]))
                    if hasattr(bar, "set_postfix"):
                        bar.set_postfix(loss=f"{np.mean(losses):.4g}")
                raw = _predict(model, data.x_val)
                val_loss = float(np.asarray(loss_fn(y_val_enc, raw)))
                m = compute_metrics(
                    spec,
                    data.y_val,
                    spec.decode_output(raw),
                    image_sizes=data.val_sizes,
                    train_targets=data.y_train,
                )
                scal = _scalar_metrics(spec, m)
                cur_lr = float(np.asarray(opt.learning_rate))
                row = {
                    "epoch": epoch + 1,
                    "phase": name,
                    "loss": float(np.mean(losses)),
                    "val_loss": val_loss,
                    "lr": cur_lr,
                    **{f"val_{k}": v for k, v in scal.items()},
                    "seconds": round(time.monotonic() - t0, 2),
                }
                state["history"].append(row)
                state["epoch"] = epoch + 1
                metric = scal.get(key)
                best = state["best_metric"]
                improved = metric is not None and (
                    best is None or (metric > best if higher else metric < best)
                )
                if improved:
                    state["best_metric"], state["best_epoch"] = metric, epoch + 1
                    state["since_best"] = 0
                    fname = f"best-{epoch + 1:04d}.npz"
                    atomic_write_bytes(self.ckdir / fname, _npz_bytes(_weights_arrays(model)))
                    old_best, state["best_file"] = state["best_file"], fname
                else:
                    old_best = None
                    state["since_best"] += 1
                elapsed = elapsed0 + time.monotonic() - train_started
                state["elapsed_s"] = elapsed
                patience = cfg.patience or max(10, cfg.epochs // 4)
                if name != "warmup" and state["since_best"] >= patience:
                    state["stopped"] = f"early stop: no better {key} for {patience} epochs"
                if cfg.max_minutes and elapsed > cfg.max_minutes * 60:
                    state["stopped"] = f"time budget of {cfg.max_minutes:g} min reached"
                self._checkpoint(model, opt, state)
                if old_best:
                    (self.ckdir / old_best).unlink(missing_ok=True)
                self._write_history(state["history"])
                log(
                    f"epoch {epoch + 1}/{cfg.epochs} {name}: loss {row['loss']:.4g} "
                    f"val_loss {val_loss:.4g} {key} {metric:.4g}"
                    f"{' *best*' if improved else ''} ({row['seconds']:.1f}s)"
                )
                if state["stopped"]:
                    log(state["stopped"])
                    break

        # ------------------------------------------------------------- final artifacts
        if not state["best_file"]:
            raise TrainingError(f"{out}: no epoch produced a validation metric; nothing to save")
        _set_weights(model, _read_npz(self.ckdir / state["best_file"]), "m")
        raw = _predict(model, data.x_val)
        y_pred = spec.decode_output(raw)
        metrics = compute_metrics(
            spec, data.y_val, y_pred, image_sizes=data.val_sizes, train_targets=data.y_train
        )
        metrics.update(
            {"best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "primary_metric": key}
        )
        spec_final = spec.with_extra(
            metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
            train_images=n_train,
            val_images=len(data.x_val),
        )
        with atomic_path(out / "model.keras") as tmp:
            _deployable(model).save(tmp)
        atomic_write_text(out / "spec.json", spec_final.to_json())
        atomic_write_json(out / "metrics.json", metrics)
        self._write_history(state["history"])
        plot_notes = self._plots(spec, data, y_pred)
        summary = self._summary(spec, data, state, metrics, time.monotonic() - t_start, plot_notes)
        atomic_write_text(out / "summary.txt", summary)
        atomic_write_json(
            out / "config.json",
            {**asdict(cfg), "status": "complete", "class_names": list(spec.class_names)},
        )
        shutil.rmtree(self.ckdir, ignore_errors=True)
        log(summary)
        return out

    def _checkpoint(self, model: Any, opt: Any, state: dict[str, Any]) -> None:
        arrays = _weights_arrays(model, "m")
        arrays.update({f"o{i:05d}": np.asarray(v) for i, v in enumerate(opt.variables)})
        arrays["state"] = np.array(json.dumps(state))
        atomic_write_bytes(self.ckdir / LAST, _npz_bytes(arrays))

    def _write_history(self, rows: list[dict[str, Any]]) -> None:
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, restval="")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(self.out / "history.csv", buf.getvalue())

    def _plots(self, spec: ModelSpec, data: _Data, y_pred: np.ndarray) -> list[str]:
        notes = []
        pdir = self.out / "plots"
        try:
            from train import plots
        except ImportError as e:  # pragma: no cover - plots ship with train/
            return [f"plots skipped: {e}"]
        jobs = [
            ("history.png", lambda p: plots.plot_history(self.out / "history.csv", p)),
            ("pred_vs_true.png", lambda p: plots.plot_pred_vs_true(spec, data.y_val, y_pred, p)),
            (
                "error_hist.png",
                lambda p: plots.plot_error_hist(
                    spec, data.y_val, y_pred, p, image_sizes=data.val_sizes
                ),
            ),
            (
                "examples.png",
                lambda p: plots.plot_examples(
                    spec,
                    [read_image(q) for q in data.val_paths[:16]],
                    data.y_val[:16],
                    y_pred[:16],
                    p,
                ),
            ),
        ]
        for fname, job in jobs:
            try:
                job(pdir / fname)
            except (AttributeError, ValueError, TypeError) as e:
                notes.append(f"plot {fname} not written: {e}")
        return notes

    def _summary(
        self,
        spec: ModelSpec,
        data: _Data,
        state: dict[str, Any],
        metrics: dict[str, Any],
        seconds: float,
        notes: list[str],
    ) -> str:
        from train import metrics as M

        cfg = self.cfg
        lines = [
            f"edgereg train: {cfg.task} on {cfg.data_dir}",
            f"backbone {cfg.backbone} alpha {cfg.alpha:g}, weights {cfg.weights}, input "
            f"{spec.input_height}x{spec.input_width}, seed {cfg.seed}",
            f"images: {len(data.x_train)} train, {len(data.x_val)} validation"
            + (f" ({data.n_dropped} bad rows dropped by --skip-bad)" if data.n_dropped else ""),
            f"epochs run: {state['epoch']} of {cfg.epochs}; best epoch {state['best_epoch']}"
            + (f"; {state['stopped']}" if state["stopped"] else ""),
            f"training time: {seconds / 60:.1f} min",
            "",
        ]
        fmt = getattr(M, "format_table", None)
        lines.append(fmt(spec, metrics) if fmt else json.dumps(metrics, indent=1, default=str))
        verdict = getattr(M, "verdict", None)
        v = verdict(spec, metrics) if verdict else None
        if v:
            lines += ["", v]
        lines += notes
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- sanity
def _sanity(cfg: TrainConfig, out: Path, log: _Logger) -> Path:
    """Overfit SANITY_IMAGES training images without augmentation; raise if it cannot."""
    data = _load_data(cfg, log, only_train=SANITY_IMAGES)

    import keras

    from train.models import build_model

    keras.utils.set_random_seed(cfg.seed)
    spec = data.spec
    x = data.x_train.astype(np.float32)
    y = data.y_train
    y_enc = _encode(spec, y)
    model = build_model(
        spec, backbone=cfg.backbone, alpha=cfg.alpha, weights=cfg.weights, dropout=0.0
    )
    _configure_phase(
        model,
        "scratch" if str(cfg.weights).lower() == "none" else "finetune",
        TrainConfig(**{**asdict(cfg), "fine_tune_blocks": None}),
    )
    from train.models import loss_for

    model.compile(optimizer=keras.optimizers.Adam(cfg.lr), loss=loss_for(spec), jit_compile=False)
    err = math.inf
    ok = False
    step = 0
    for step in log.progress(range(1, cfg.sanity_steps + 1), desc="sanity: overfit 8 images"):
        model.train_on_batch(x, y_enc)
        if step % SANITY_CHECK_EVERY == 0:
            pred = spec.decode_output(_predict(model, data.x_train))
            err, ok, what = _sanity_error(spec, y, pred)
            if ok:
                break
    result = {"ok": ok, "steps": step, "images": len(x), "error": err, "measure": what}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sanity.json", result)
    if not ok:
        raise TrainingError(
            f"--sanity: the model could not overfit {len(x)} training images in {step} steps "
            f"({what} {err:.4g}). Something upstream is wrong; check that: the labels match "
            "their images (row order, --y-up, --coords pixels), the images differ from each "
            "other, the --range covers the values, and the learning rate (--lr) is not far "
            "too low or high."
        )
    log(f"--sanity: passed; {len(x)} images fitted in {step} steps ({what} {err:.4g})")
    return out


def _sanity_error(spec: ModelSpec, y: np.ndarray, pred: np.ndarray) -> tuple[float, bool, str]:
    if spec.task in ("point", "keypoints"):
        d = float(np.mean(np.hypot(*(pred - y).reshape(-1, 2).T)))
        return d, d <= SANITY_MAX_COORD_ERROR, "mean normalized point error"
    if spec.task == "value":
        lo, hi = spec.value_range  # type: ignore[misc]
        e = float(np.mean(np.abs(pred - y)) / (hi - lo))
        return e, e <= SANITY_MAX_VALUE_ERROR, "mean absolute error / range"
    acc = float(np.mean(np.argmax(pred, axis=-1) == y))
    return acc, acc == 1.0, "training accuracy"
