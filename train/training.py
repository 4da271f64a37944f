"""The training recipe behind ``edgereg train``.

1. The dataset checks run first; bad data is refused with the full report (DataError)
   unless ``skip_bad``. Images are decoded and resized with
   :func:`edge_runtime.preprocess.resize_to_input` (the device's own resize) to the input
   size when first needed, then read from a cache (memory, disk or none: ``cache``), and
   streamed to the model by a tf.data pipeline that augments while the model trains
   (:mod:`train.inputs`). Devices, tf.distribute strategy and precision:
   :mod:`train.devices`.
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
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edge_runtime.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from edge_runtime.errors import (
    ClashError,
    DataError,
    OptionError,
    OutputError,
    SpecError,
    TrainingError,
)
from edge_runtime.images import read_image
from edge_runtime.outputs import check_outputs
from edge_runtime.ownership import MARKER, claim_folder, entries, mark
from edge_runtime.spec import ModelSpec, parse_invariances
from train import tasks
from train.inputs import ImageSet
from train.interrupt import check as check_interrupt
from train.interrupt import deferred_interrupt
from train.limits import check_numbers

CHECKPOINT_DIR = "checkpoint"
LAST = "last.npz"
#: The kind in a run folder's ownership marker (edge_runtime/ownership.py).
RUN_KIND = "run"
#: What a run folder holds: removed when a run is replaced (--overwrite) or started
#: again; anything else a user put in the folder is kept.
RUN_ARTIFACTS = (
    "model.keras",
    "spec.json",
    "config.json",
    "metrics.json",
    "history.csv",
    "summary.txt",
    "sanity.json",
    CHECKPOINT_DIR,
    "plots",
    "export",
)
#: Share of the epochs spent on the head warm-up (pretrained start).
WARMUP_SHARE = 0.15
#: Fine-tune learning rate = lr * FINE_TUNE_LR_FACTOR (measured: 0.3 with every block
#: unfrozen beat 0.1 with the top 6 on the point sample data, see docs/training.md).
FINE_TUNE_LR_FACTOR = 0.3
#: The --sanity check: images, steps, and what "fitted" means per task.
SANITY_IMAGES = 8
SANITY_CHECK_EVERY = 25
#: Settings of the machine, not of the recipe: ``--resume`` takes them as given.
MACHINE_OPTIONS = ("devices", "precision", "cache")


@dataclass
class TrainConfig:
    """Everything that defines a run. Saved as ``config.json`` (a run can be resumed from it)."""

    data_dir: str
    task: str
    val_dir: str | None = None
    val_fraction: float = 0.2
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
    invariances: list[str] = field(default_factory=list)
    augment: bool = True
    seed: int = 0
    max_minutes: float | None = None
    max_steps: int | None = None  # stop after this many optimizer steps (quick checks, bench)
    sanity_steps: int = 300
    #: Validate and keep the optimizer's moving average of the weights over about this
    #: many epochs of steps (train/selection.py); 0 turns the average off.
    ema_epochs: float = 2.0
    #: Clip each step's gradients to this global norm (None or 0: no clipping).
    clipnorm: float | None = 1.0
    #: k-fold cross-validation (train/kfold.py): K folds (0: off), and which fold this
    #: run validates on (set by train/kfold.py for its fold runs).
    folds: int = 0
    fold: int | None = None
    #: "best" (the selection rule) or "last" (k-fold's final model: nothing to select on).
    keep: str = "best"
    #: Where and how it runs (train/devices.py, train/inputs.py); may change on --resume.
    devices: str = "auto"
    precision: str = "auto"
    cache: str = "auto"
    #: The task's own options (train/tasks/<task>.py), e.g. y_up, value_range, flip_pairs.
    options: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- public API
def train(
    data_dir: str | Path,
    task: str,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    sanity: bool = False,
    verbose: bool = True,
    **options: Any,
) -> Path:
    """Train a model and write the run directory ``out``; returns ``out``.

    ``options`` are :class:`TrainConfig` fields and the task's own options (its module in
    train/tasks, e.g. ``y_up``, ``value_range``, ``flip_pairs``); ``invariances`` and
    ``flip_pairs`` may be given as strings like ``"rot90,flip"`` and ``"0:1,2:3"``.

    ``out`` must be new, empty or an edgereg run (:func:`run_state`); it may not be or
    hold an input. ``resume=True`` continues the interrupted run in ``out`` with its saved
    configuration; ``overwrite=True`` replaces the run in ``out``. A run that stopped
    before its first epoch ended starts again (with a message) either way.
    ``sanity=True`` only checks that the model can overfit 8 training images, and raises
    TrainingError if not.
    """
    out = Path(out)
    log = _Logger(verbose)
    if resume and overwrite:
        raise OptionError("--resume continues a run and --overwrite replaces it: give one")
    state = run_state(out)
    if sanity:  # writes only sanity.json: any run folder will do, nothing is replaced
        cfg = _saved_or_new_config(data_dir, task, out, options, resume)
        _check_places(cfg, out, state)
        return _sanity(cfg, out, log)
    from train.devices import is_chief_task, tf_config

    if not is_chief_task(tf_config()):  # another worker of a cluster: the chief writes
        return _worker_run(data_dir, task, out, options, resume, log)
    if resume and (out / "kfold.json").is_file() and not (out / CHECKPOINT_DIR / LAST).is_file():
        from train.kfold import load_kfold_config  # the folds of an interrupted --folds run

        cfg, clear = load_kfold_config(out), False
    else:
        cfg, resume, clear = _plan_run(state, data_dir, task, out, options, resume, overwrite, log)
    _check_places(cfg, out, state)
    _check_cluster(cfg)
    try:
        with _run_lock(out):
            if cfg.folds and cfg.fold is None and cfg.keep == "best":
                from train.kfold import train_kfold

                return train_kfold(cfg, out, log)
            return _Run(cfg, out, log, resume=resume, clear=clear).run()
    except BaseException:  # bad data, Ctrl-C while loading: leave no folder that says "run"
        if state in ("new", "empty"):
            _undo_new_folder(out, remove=state == "new")
        raise


@contextlib.contextmanager
def _run_lock(out: Path) -> Iterator[None]:
    """One training process per run directory (a second one would interleave checkpoints)."""
    import fcntl

    try:
        out.mkdir(parents=True, exist_ok=True)
        mark(out, RUN_KIND)
        f = open(out / ".lock", "w")  # noqa: SIM115 - held for the whole run
    except OSError as e:
        raise OutputError(f"{out}: cannot create the run folder ({e.strerror or e})") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise TrainingError(
                f"{out}: another edgereg train is running in this run directory; wait for it "
                "or stop it first"
            ) from None
        yield


# --------------------------------------------------------------------------- the run folder
def _is_legacy_run(folder: Path) -> bool:
    """A run written before folders carried edgereg's marker: its config.json."""
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and "task" in raw and "data_dir" in raw


def run_state(out: str | Path) -> str:
    """What ``out`` holds: ``"new"`` (nothing there), ``"empty"``, ``"complete"`` (a
    finished run), ``"interrupted"`` (a run with a checkpoint to resume from),
    ``"unstarted"`` (a run that stopped before its first epoch ended) or ``"foreign"``
    (files that are not an edgereg run; see :func:`_check_places`)."""
    p = Path(out)
    try:
        kind = claim_folder("--out", p, RUN_KIND, legacy=_is_legacy_run, purpose="a run")
    except ClashError:
        return "foreign"
    if kind in ("new", "empty"):
        return kind
    if (p / CHECKPOINT_DIR / LAST).is_file():
        return "interrupted"
    if (p / "model.keras").is_file() or _saved_status(p) == "complete":
        return "complete"
    return "unstarted"


def _saved_status(out: Path) -> str | None:
    try:
        raw = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw.get("status") if isinstance(raw, dict) else None


def _plan_run(
    state: str,
    data_dir: str | Path,
    task: str,
    out: Path,
    options: dict[str, Any],
    resume: bool,
    overwrite: bool,
    log: _Logger,
) -> tuple[TrainConfig, bool, bool]:
    """(configuration, resume?, clear the old run first?) for ``out`` in ``state``."""
    if state == "foreign":  # _check_places refuses it, naming an input clash if any
        if not task:
            claim_folder("--out", out, RUN_KIND, legacy=_is_legacy_run, purpose="a run")
        return _make_config(data_dir, _required_task(task), options), False, False
    if state == "interrupted" and resume:
        return _load_config_for_resume(out, options), True, False
    if state == "complete" and resume:
        raise TrainingError(f"{out}: this run is already complete; nothing to resume")
    if state == "interrupted" and not overwrite:
        raise TrainingError(
            f"{out}: holds an interrupted run; continue it with --resume, replace it with "
            "--overwrite, or choose another --out"
        )
    if state == "complete" and not overwrite:
        raise TrainingError(
            f"{out}: already holds a run, finished; choose another --out, or replace it "
            "with --overwrite"
        )
    if state == "unstarted":
        log.warn(
            f"{out}: holds a run that stopped before its first epoch ended (no checkpoint); "
            "starting it again from epoch 1"
        )
        if resume and _is_legacy_run(out):
            return _load_config_for_resume(out, options), False, True
        if resume and not task:
            raise TrainingError(
                f"{out}: the run stopped before it saved its settings; start it again "
                "without --resume (with --task)"
            )
    elif resume:  # new or empty
        if not task:
            raise TrainingError(
                f"{out}: {'no such folder' if state == 'new' else 'an empty folder'}, so "
                "there is no run to resume; start a new one without --resume (with --task)"
            )
        log.warn(
            f"{out}: {'does not exist' if state == 'new' else 'is empty'}: there is no run "
            "to resume; starting a new run"
        )
    cfg = _make_config(data_dir, _required_task(task), options)
    return cfg, False, state in ("unstarted", "interrupted", "complete")


def _worker_run(
    data_dir: str | Path,
    task: str | None,
    out: Path,
    options: dict[str, Any],
    resume: bool,
    log: _Logger,
) -> Path:
    """A worker of a ``TF_CONFIG`` cluster other than the chief: it trains its share and
    writes nothing (the chief checks and writes ``out``), so none of the folder rules apply."""
    resume = resume and (out / CHECKPOINT_DIR / LAST).is_file()
    cfg = _saved_or_new_config(data_dir, task, out, options, resume)
    _check_cluster(cfg)
    return _Run(cfg, out, log, resume=resume).run()


def _saved_or_new_config(
    data_dir: str | Path, task: str | None, out: Path, options: dict[str, Any], resume: bool
) -> TrainConfig:
    """The run's saved settings (``--resume``) or new ones from the command line."""
    if resume:
        return _load_config_for_resume(out, options)
    return _make_config(data_dir, _required_task(task), options)


def _check_cluster(cfg: TrainConfig) -> None:
    """k-fold runs its folds one after another on one machine: not across a cluster."""
    from train.devices import tf_config

    if cfg.folds and tf_config() is not None:
        raise OptionError(
            "--folds trains its folds on one machine; unset TF_CONFIG (a cluster of "
            "workers) or leave out --folds"
        )


def _required_task(task: str | None) -> str:
    if not task:
        raise OptionError("--task is required (except with --resume)")
    return task


def _check_places(cfg: TrainConfig, out: Path, state: str) -> None:
    """--out may not be, hold or lie inside an input; and it must be ours (run_state)."""
    weights = str(cfg.weights)
    inputs = [] if weights.lower() in ("imagenet", "none") else [("--weights", weights)]
    check_outputs(
        inputs,
        [],
        input_folders=[("DATA_DIR", cfg.data_dir), ("--val", cfg.val_dir)],
        output_folders=[("--out", out)],
    )
    if state == "foreign":  # raises the ClashError that names what is there
        claim_folder("--out", out, RUN_KIND, legacy=_is_legacy_run, purpose="a run")


def _undo_new_folder(out: Path, remove: bool) -> None:
    """A run that failed before it wrote anything (bad data, Ctrl-C while loading) leaves
    its folder as it found it: gone, or empty."""
    if not set(entries(out)) <= {".lock", MARKER}:
        return
    for name in (".lock", MARKER):
        with contextlib.suppress(OSError):
            (out / name).unlink()
    if remove:
        with contextlib.suppress(OSError):
            out.rmdir()


def _clear_run(out: Path) -> None:
    """Remove a run's own files (RUN_ARTIFACTS and temp files); anything else is kept."""
    names = [n for n in entries(out) if n in RUN_ARTIFACTS or (n.startswith(".") and ".tmp" in n)]
    try:
        for name in names:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    except OSError as e:
        raise OutputError(f"{out}: cannot remove the old run ({e.strerror or e})") from None


# --------------------------------------------------------------------------- config
def _make_config(data_dir: str | Path, task: str, options: dict[str, Any]) -> TrainConfig:
    kind = tasks.get(task)  # DataError naming the known tasks
    fields = set(TrainConfig.__dataclass_fields__) - {"options"}
    task_opts = {k: v for k, v in options.items() if k not in fields}
    opts = {k: v for k, v in options.items() if k in fields and v is not None}
    if isinstance(opts.get("invariances"), str) or opts.get("invariances"):
        try:
            opts["invariances"] = list(parse_invariances(opts.get("invariances")))
        except SpecError as e:
            raise OptionError(f"--invariant: {e}") from None
    if isinstance(opts.get("input_size"), tuple):
        opts["input_size"] = list(opts["input_size"])
    check_numbers(opts)
    from train.backbones import check_alpha

    check_alpha(opts.get("backbone", "mobilenet_v2"), float(opts.get("alpha", 1.0)))
    cfg = TrainConfig(
        data_dir=str(Path(data_dir).resolve()),
        task=task,
        options=_jsonable(tasks.task_options(kind, task_opts)),
        **opts,
    )
    if cfg.val_dir is not None:
        cfg.val_dir = str(Path(cfg.val_dir).resolve())
    return cfg


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """Tuples become lists: the options are stored in config.json as they are."""

    def conv(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v

    return {k: conv(v) for k, v in d.items()}


def _load_config_for_resume(out: Path, options: dict[str, Any]) -> TrainConfig:
    path = out / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TrainingError(f"{path}: cannot read the run's configuration ({e})") from None
    fields = set(TrainConfig.__dataclass_fields__)
    machine = {k: v for k, v in options.items() if k in MACHINE_OPTIONS and v is not None}
    ignored = sorted(
        k for k, v in options.items() if v not in (None, False, (), []) and k not in MACHINE_OPTIONS
    )
    if ignored:
        from edge_runtime.log import get_logger

        get_logger("train").warning(
            f"--resume: using the settings saved in {path}; ignoring {', '.join(ignored)}"
        )
    from train.dataset import run_options

    kw = {k: v for k, v in raw.items() if k in fields}
    kw["options"] = run_options(raw)
    return TrainConfig(**{**kw, **machine})


def default_epochs(n_train: int, batch_size: int, task: str = "point") -> int:
    """About the task's ``default_steps`` optimizer steps: 15 to its ``max_default_epochs``."""
    kind = tasks.get(task)
    steps = max(1, math.ceil(n_train / batch_size))
    want = math.ceil(kind.default_steps / steps)
    return int(min(kind.max_default_epochs, max(15, want)))


def default_batch_size(n_train: int) -> int:
    return 32 if n_train >= 500 else 16


# --------------------------------------------------------------------------- data
@dataclass
class _Data:
    spec: ModelSpec
    x_train: ImageSet  # read through its cache (train/inputs.py), not held whole
    y_train: np.ndarray  # user units (dataset form)
    x_val: ImageSet
    y_val: np.ndarray
    val_sizes: np.ndarray
    val_paths: list[Path]
    n_dropped: int


def _load_data(cfg: TrainConfig, log: _Logger, only_train: int | None = None) -> _Data:
    from train.dataset import label_options, load_dataset
    from train.kfold import split_for

    kw = {"skip_bad": cfg.skip_bad, **label_options(cfg.task, cfg.options)}
    ds = load_dataset(cfg.data_dir, cfg.task, **kw)
    _say_report(ds, log)
    if getattr(ds, "dropped", 0):
        log(f"--skip-bad: dropped {ds.dropped} bad row(s) of {cfg.data_dir}")
    if cfg.val_dir:
        tr = ds
        va = load_dataset(cfg.val_dir, cfg.task, class_names=ds.class_names or None, **kw)
        _say_report(va, log, "--val ")
        _warn_shared_images(cfg, tr, va, log)
    else:
        tr, va = split_for(ds, cfg)
    if only_train is not None:
        tr = tr.subset(range(min(only_train, len(tr))))
    if len(tr) == 0 or len(va) == 0:
        raise DataError(
            f"{cfg.data_dir}: {len(tr)} training and {len(va)} validation images; both "
            "need at least one (add images, or give --val DIR)"
        )
    spec = _make_spec(cfg, ds, tr.targets())
    x_tr, x_va = _image_sets(cfg, tr, va, spec, log)
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


def _say_report(ds: Any, log: _Logger, what: str = "") -> None:
    """The dataset check's notes (how labels.csv was read) and its warnings."""
    report = getattr(ds, "report", None)
    if report is None:
        return
    for note in report.notes:
        log(f"{what}{ds.root}: {note}")
    for w in report.warnings:
        log.warn(f"{what}{ds.root}: {w}")


def _warn_shared_images(cfg: TrainConfig, tr: Any, va: Any, log: _Logger) -> None:
    """--val should be other images: the same ones make the metrics look better than
    they are (a warning, not an error: a deliberate check on training data is allowed)."""
    if Path(cfg.val_dir or "").resolve() == Path(cfg.data_dir).resolve():
        log.warn(
            f"--val {cfg.val_dir} is DATA_DIR itself: every validation image is a training "
            "image, so the validation metrics will look better than the model is; give "
            "--val a folder of other images (or leave it out for a 20 % split)"
        )
        return
    shared = {s.path for s in tr.samples} & {s.path for s in va.samples}
    if shared:
        log.warn(
            f"{len(shared)} of the {len(va)} --val images are training images too "
            f"(e.g. {sorted(shared)[0]}): the validation metrics will look better than "
            "the model is"
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
    task_fields = tasks.get(cfg.task).spec_fields(cfg.options, ds, train_targets)
    cfg.options = _jsonable(cfg.options)  # the task may record derived defaults (a range)
    return ModelSpec(
        task=cfg.task,
        input_height=h,
        input_width=w,
        target_name=getattr(ds, "target_name", "value") or "value",
        invariances=tuple(cfg.invariances),
        backbone=f"{cfg.backbone}@{cfg.alpha:g}",
        name=Path(cfg.data_dir).name,
        **task_fields,
    )


def _image_sets(
    cfg: TrainConfig, tr: Any, va: Any, spec: ModelSpec, log: _Logger
) -> tuple[ImageSet, ImageSet]:
    """The two splits behind one cache choice (``--cache auto`` looks at both together)."""
    from train.inputs import choose_cache

    paths_tr = [s.path for s in tr.samples]
    paths_va = [s.path for s in va.samples]
    per_image = spec.input_height * spec.input_width * 3
    mode = choose_cache(cfg.cache, (len(paths_tr) + len(paths_va)) * per_image)
    x_tr, x_va = ImageSet(paths_tr, spec, mode), ImageSet(paths_va, spec, mode)
    log(f"images: train {x_tr.describe()}; validation {x_va.describe()}")
    return x_tr, x_va


# --------------------------------------------------------------------------- helpers
class _Logger:
    """Training's messages (the ``edgereg.train`` logger) and progress displays."""

    def __init__(self, verbose: bool) -> None:
        from edge_runtime.log import get_logger

        self.verbose = verbose
        self.logger = get_logger("train")

    def __call__(self, msg: str) -> None:
        if self.verbose:
            self.logger.info(msg)

    def warn(self, msg: str) -> None:
        """Shown even with --quiet (a warning): something the user should know."""
        self.logger.warning(f"warning: {msg}")

    def progress(self, it: Any, **kw: Any) -> Any:
        from edge_runtime.log import progress

        return progress(it, enabled=self.verbose, **kw)


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


def _encode(spec: ModelSpec, y: np.ndarray) -> np.ndarray:
    """Dataset-form targets -> what the task's loss compares the output with."""
    return tasks.get(spec.task).training_target(spec, y)


def _predict(model: Any, x: ImageSet | np.ndarray) -> np.ndarray:
    """The model's raw outputs, batch by batch (train/inputs.py: never all images at once)."""
    from train.inputs import predict

    return predict(model, x)


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
    model: Any,
    spec: ModelSpec,
    lr: float,
    decay_steps: int,
    warmup_steps: int,
    wd: float,
    cfg: TrainConfig | None = None,
    steps_per_epoch: int = 1,
):
    import keras

    from train.models import loss_for

    if warmup_steps > 0:
        schedule = keras.optimizers.schedules.CosineDecay(
            lr * 0.1, decay_steps, alpha=0.02, warmup_target=lr, warmup_steps=warmup_steps
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps, alpha=0.02)
    opt = _make_optimizer(schedule, wd, cfg, steps_per_epoch)
    # jit_compile off: XLA compiling MobileNet on a CPU costs minutes before the first step.
    model.compile(optimizer=opt, loss=loss_for(spec), jit_compile=False)
    return opt


def _make_optimizer(schedule: Any, wd: float, cfg: TrainConfig | None, steps_per_epoch: int):
    """AdamW with the run's weight averaging (EMA) and gradient clipping.

    The EMA's variables are optimizer variables, so every checkpoint carries them and
    ``--resume`` continues the same average.
    """
    import keras

    from train.selection import ema_momentum

    kw: dict[str, Any] = {}
    if cfg is not None and cfg.ema_epochs and cfg.ema_epochs > 0:
        kw.update(use_ema=True, ema_momentum=ema_momentum(steps_per_epoch, cfg.ema_epochs))
    if cfg is not None and cfg.clipnorm:
        kw["global_clipnorm"] = float(cfg.clipnorm)
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=wd, **kw)


@contextlib.contextmanager
def _averaged_weights(model: Any, opt: Any) -> Iterator[None]:
    """Inside: the model holds the optimizer's moving-average weights; after: its own."""
    if not getattr(opt, "use_ema", False) or not getattr(opt, "built", False):
        yield
        return
    own = [np.asarray(v) for v in model.trainable_variables]
    opt.finalize_variable_values(model.trainable_variables)
    try:
        yield
    finally:
        for v, a in zip(model.trainable_variables, own, strict=True):
            v.assign(a)


def _deployable(model: Any) -> Any:
    """The trained network without its optimizer: the same layers in an uncompiled model.

    Saving the compiled model would also store AdamW's two moments per weight (about
    twice the weights again: 32 MB instead of 11 MB for MobileNetV2-1.0), which nothing
    downstream reads; resuming uses the checkpoint folder, not model.keras.
    """
    import keras

    return keras.Model(model.inputs, model.outputs, name=model.name)


# --------------------------------------------------------------------------- the run
@dataclass
class RunState:
    """Where a run is: saved in every checkpoint, so ``--resume`` picks up from here."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int | None = None
    best_file: str | None = None
    #: The kept epoch's validation loss: it breaks ties of the primary metric.
    best_loss: float | None = None
    #: The best warm-up epoch, put aside when fine-tuning starts (train/selection.py).
    warmup_best: dict[str, Any] | None = None
    #: Why the kept epoch was kept, when the warm-up/fine-tune rule decided.
    selection_note: str = ""
    since_best: int = 0
    stopped: str | None = None
    elapsed_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunState:
        raw = json.loads(text)
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


class Phase(NamedTuple):
    """One training phase: what trains, over which epochs, at which learning rate."""

    name: str  # warmup | finetune | scratch
    first: int  # first epoch (0-based)
    end: int  # one past the last epoch
    lr: float


class _Run:
    """One training run, step by step: set up, train each phase, write the artifacts."""

    def __init__(
        self, cfg: TrainConfig, out: Path, log: _Logger, resume: bool, clear: bool = False
    ) -> None:
        self.cfg, self.out, self.log, self.resume = cfg, out, log, resume
        #: remove the run already in ``out`` (--overwrite, or a restart) once the new
        #: data has loaded: bad new data never costs the old run
        self.clear = clear
        self.ckdir = out / CHECKPOINT_DIR
        self.state = RunState()
        self.dev: Any = None  # train.devices.DeviceSetup, chosen when the run starts

    def _lr_scale(self) -> float:
        return self.dev.lr_scale() if self.dev is not None else 1.0

    def _phases(self, n_train: int) -> list[Phase]:
        cfg = self.cfg
        total = cfg.epochs or default_epochs(n_train, cfg.batch_size or 16, cfg.task)
        if str(cfg.weights).lower() == "none":
            return [Phase("scratch", 0, total, cfg.lr * self._lr_scale())]
        warm = cfg.warmup_epochs
        if warm is None:
            warm = max(1, round(WARMUP_SHARE * total)) if total > 1 else 1
        warm = min(warm, total)
        phases = [Phase("warmup", 0, warm, cfg.lr)]
        if total > warm:
            ft_lr = cfg.fine_tune_lr or cfg.lr * FINE_TUNE_LR_FACTOR
            phases.append(Phase("finetune", warm, total, ft_lr))
        return [p._replace(lr=p.lr * self._lr_scale()) for p in phases]

    # ----------------------------------------------------------------- the run
    def run(self) -> Path:
        t_start = time.monotonic()
        # The dataset checks run before TensorFlow is even imported: bad data fails fast.
        data = _load_data(self.cfg, self.log)

        import keras

        from train.devices import setup_devices

        # A new run's folder is cleared (--overwrite) and its config.json written only
        # once TensorFlow has loaded and the devices are chosen (the batch depends on them).
        self.dev = setup_devices(self.cfg.devices, self.cfg.precision)
        self.log(self.dev.describe())
        keras.utils.set_random_seed(self.cfg.seed)
        self._setup(data)
        with deferred_interrupt():  # Ctrl-C from here on stops at a step's end, never lost
            model = self._train(data)
        if self.dev.is_chief:
            self._finish(model, data, time.monotonic() - t_start)
        with self.dev.guard():
            self.dev.barrier()  # the other workers stay until the chief has written the run
        return self.out

    def _train(self, data: _Data) -> Any:
        """Start or resume the run, build the model and train every phase."""
        ck = self._start_or_resume(data.spec)  # a resumed run reseeds for its epoch
        with self.dev.scope():
            model = self._build_model(data.spec)
        self.dev.sync_batchnorm(model)
        if ck is not None:
            _set_weights(model, ck, "m")
        check_interrupt()
        self.train_started = time.monotonic()  # --max-minutes counts training, not loading
        with self.dev.guard():
            for phase in self.phases:
                if self.state.stopped or self.state.epoch >= phase.end:
                    continue
                self._run_phase(model, phase, data, ck)
                ck = None
        return model

    def _build_model(self, spec: ModelSpec, weights: str | None = None) -> Any:
        from train.models import build_model

        cfg = self.cfg
        return build_model(
            spec,
            backbone=cfg.backbone,
            alpha=cfg.alpha,
            weights=cfg.weights if weights is None else weights,
            dropout=cfg.dropout,
        )

    def _setup(self, data: _Data) -> None:
        """Batch size, epochs, steps and phases for this data (defaults filled in)."""
        from train.augment import Augmenter
        from train.inputs import TrainStream
        from train.metrics import primary_metric

        cfg = self.cfg
        n_train = len(data.x_train)
        if cfg.batch_size is None:
            cfg.batch_size = default_batch_size(n_train)
        # --batch-size is per replica: the global batch grows with the devices (train/devices.py)
        replicas = self.dev.replicas
        self.bs = min(cfg.batch_size, math.ceil(n_train / replicas)) * replicas
        if cfg.epochs is None:
            cfg.epochs = default_epochs(n_train, self.bs, cfg.task)
        self.steps = math.ceil(n_train / self.bs)
        self.phases = self._phases(n_train)
        self.key, self.higher = primary_metric(data.spec)
        spec = data.spec
        self.stream = TrainStream(
            data.x_train,
            data.y_train,
            lambda y: _encode(spec, y),
            (lambda: Augmenter(spec)) if cfg.augment else None,
            cfg.seed,
        )
        self.y_val_enc = _encode(data.spec, data.y_val)
        self.train_started = time.monotonic()

    def _start_or_resume(self, spec: ModelSpec) -> dict[str, np.ndarray] | None:
        """A new run writes its config and spec; a resumed one reads its last checkpoint."""
        out = self.out
        ck: dict[str, np.ndarray] | None = None
        if self.resume:
            import keras

            self._check_same_replicas()
            ck = _read_npz(self.ckdir / LAST)
            self.state = RunState.from_json(str(ck["state"]))
            st = self.state
            self.log(
                f"resuming {out} after epoch {st.epoch} (best so far: epoch "
                f"{st.best_epoch}, {self.key} {st.best_metric})"
            )
            keras.utils.set_random_seed(self.cfg.seed + 1000 * st.epoch)
        elif self.dev.is_chief:
            if self.clear:
                _clear_run(out)
            out.mkdir(parents=True, exist_ok=True)
            self._write_config("running", spec)
            atomic_write_text(out / "spec.json", spec.to_json())
        if self.dev.is_chief:
            self.ckdir.mkdir(parents=True, exist_ok=True)
        self.elapsed0 = float(self.state.elapsed_s)
        return ck

    def _write_config(self, status: str, spec: ModelSpec) -> None:
        atomic_write_json(
            self.out / "config.json",
            {
                **asdict(self.cfg),
                "status": status,
                "class_names": list(spec.class_names),
                "replicas": self.dev.replicas,
            },
        )

    def _check_same_replicas(self) -> None:
        """The global batch and learning rate depend on the replicas: a run keeps them."""
        try:
            saved = json.loads((self.out / "config.json").read_text()).get("replicas", 1)
        except (OSError, ValueError):
            return  # _load_config_for_resume has reported an unreadable config already
        if int(saved) != self.dev.replicas:
            raise TrainingError(
                f"{self.out}: this run trained on {saved} replica(s) (devices x workers) and "
                f"would resume on {self.dev.replicas}; the global batch and learning rate "
                f"depend on it. Resume with the same --devices and TF_CONFIG cluster."
            )

    # ----------------------------------------------------------------- a phase
    def _run_phase(
        self, model: Any, phase: Phase, data: _Data, ck: dict[str, np.ndarray] | None
    ) -> None:
        cfg, st = self.cfg, self.state
        if st.epoch == phase.first:
            st.since_best = 0  # patience counts within a phase
        _configure_phase(model, phase.name, cfg)
        warm_steps = self.steps if phase.name == "finetune" else 0
        decay = max(1, (phase.end - phase.first) * self.steps)
        with self.dev.scope():
            opt = _compile(
                model, data.spec, phase.lr, decay, warm_steps, cfg.weight_decay, cfg, self.steps
            )
            if ck is not None and st.epoch > phase.first:
                self._restore_optimizer(model, opt, ck)
        n_trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
        self.log(
            f"phase {phase.name}: epochs {phase.first + 1}-{phase.end}, lr {phase.lr:g}, "
            f"{n_trainable:,} trainable parameters, batch {self.bs}, {self.steps} steps/epoch"
        )
        for epoch in range(max(phase.first, st.epoch), phase.end):
            t0 = time.monotonic()
            loss = self._train_epoch(model, data, epoch, phase.name)
            row = self._validate(model, data, epoch, phase.name, loss, opt)
            row["seconds"] = round(time.monotonic() - t0, 2)
            if math.isfinite(self.train_rate):
                row["train_images_per_s"] = round(self.train_rate, 2)
            self._end_epoch(model, opt, row, phase)
            check_interrupt()  # after the epoch's checkpoint: --resume continues from it
            if st.stopped:
                self.log(st.stopped)
                break

    def _restore_optimizer(self, model: Any, opt: Any, ck: dict[str, np.ndarray]) -> None:
        opt.build(model.trainable_variables)
        saved = [ck[k] for k in sorted(k for k in ck if k.startswith("o"))]
        if len(saved) != len(opt.variables):
            raise TrainingError(
                f"{self.ckdir / LAST}: optimizer state has {len(saved)} variables, the "
                f"model needs {len(opt.variables)}; start the run again"
            )
        for var, arr in zip(opt.variables, saved, strict=True):
            var.assign(arr)

    def _train_epoch(self, model: Any, data: _Data, epoch: int, name: str) -> float:
        """One pass over the (augmented, shuffled) training images; the mean loss."""
        from train.inputs import fit_epoch

        steps = self.steps
        if self.cfg.max_steps:  # the step budget may end this epoch early
            steps = max(1, min(steps, self.cfg.max_steps - epoch * self.steps))
        dataset = self.stream.dataset(epoch, steps, self.bs, self.dev.strategy)
        bar = self.log.progress(
            range(steps), desc=f"epoch {epoch + 1}/{self.cfg.epochs} {name}", unit="step"
        )
        probe = self.stream.probe()
        loss, steps_per_s = fit_epoch(model, dataset, self.dev.strategy, steps, bar, probe)
        self.train_rate = steps_per_s * self.bs  # images/s after the first (tracing) step
        return loss

    def _validate(
        self, model: Any, data: _Data, epoch: int, name: str, loss: float, opt: Any
    ) -> dict[str, Any]:
        """The epoch's history row: losses, learning rate and validation metrics.

        ``val_*`` score the averaged weights (the selection's candidate); ``raw_val_*``
        the last step's own weights, to show what the averaging changes.
        """
        raw_loss, raw_scal = self._score(model, data)
        with _averaged_weights(model, opt):
            val_loss, scal = self._score(model, data)
        return {
            "epoch": epoch + 1,
            "phase": name,
            "loss": loss,
            "val_loss": val_loss,
            "lr": float(np.asarray(opt.learning_rate)),
            **{f"val_{k}": v for k, v in scal.items()},
            "raw_val_loss": raw_loss,
            f"raw_val_{self.key}": raw_scal.get(self.key),
        }

    def _score(self, model: Any, data: _Data) -> tuple[float, dict[str, float]]:
        """Validation loss and scalar metrics of the model's current weights."""
        from train.metrics import compute_metrics

        spec = data.spec
        raw = _predict(model, data.x_val)
        val_loss = float(np.asarray(model.loss(self.y_val_enc, raw)))
        m = compute_metrics(
            spec,
            data.y_val,
            spec.decode_output(raw),
            image_sizes=data.val_sizes,
            train_targets=data.y_train,
        )
        return val_loss, _scalar_metrics(spec, m)

    def _end_epoch(self, model: Any, opt: Any, row: dict[str, Any], phase: Phase) -> None:
        """Keep the best weights, decide on stopping, checkpoint, and say how it went."""
        cfg, st, key = self.cfg, self.state, self.key
        st.history.append(row)
        st.epoch = row["epoch"]
        metric = row.get(f"val_{key}")
        self._set_aside_warmup_best(phase)
        improved, old_best = self._select(row, phase), None
        if improved:
            fname = f"best-{st.epoch:04d}.npz"
            if self.dev.is_chief:
                with _averaged_weights(model, opt):
                    atomic_write_bytes(self.ckdir / fname, _npz_bytes(_weights_arrays(model)))
            old_best, st.best_file = st.best_file, fname
        st.elapsed_s = self.elapsed0 + time.monotonic() - self.train_started
        patience = cfg.patience or max(10, (cfg.epochs or 1) // 4)
        if phase.name != "warmup" and st.since_best >= patience:
            st.stopped = f"early stop: no better {key} for {patience} epochs"
        if cfg.max_minutes and st.elapsed_s > cfg.max_minutes * 60:
            st.stopped = f"time budget of {cfg.max_minutes:g} min reached"
        if cfg.max_steps and st.epoch * self.steps >= cfg.max_steps:
            st.stopped = f"step budget of {cfg.max_steps} steps reached"
        if self.dev.any_worker(bool(st.stopped)) and not st.stopped:
            st.stopped = "another worker of the cluster stopped (its time budget)"
        if not self.dev.is_chief:  # every worker decides alike; only the chief writes
            return
        self._checkpoint(model, opt)
        if old_best and old_best != self._warmup_file():
            (self.ckdir / old_best).unlink(missing_ok=True)
        self._write_history(st.history)
        shown = f"{metric:.4g}" if metric is not None else "n/a"
        self.log(
            f"epoch {st.epoch}/{cfg.epochs} {phase.name}: loss {row['loss']:.4g} "
            f"val_loss {row['val_loss']:.4g} {key} {shown}"
            f"{' *best*' if improved else ''} ({row['seconds']:.1f}s)"
        )

    # ----------------------------------------------------------------- selection
    def _select(self, row: dict[str, Any], phase: Phase) -> bool:
        """Is this epoch the phase's new best (train/selection.py)? Updates the state."""
        from train.selection import Candidate, is_better

        st = self.state
        new = Candidate(st.epoch, row.get(f"val_{self.key}"), row["val_loss"], phase.name)
        if self.cfg.keep == "last":  # k-fold's final model: the last epoch is the model
            st.best_metric, st.best_epoch, st.best_loss, st.since_best = (
                new.metric,
                new.epoch,
                new.loss,
                0,
            )
            return True
        best = None
        if st.best_metric is not None:
            loss = st.best_loss if st.best_loss is not None else math.inf
            best = Candidate(st.best_epoch or 0, st.best_metric, loss)
        if new.metric is None or not is_better(new, best, self.higher):
            st.since_best += 1
            return False
        st.best_metric, st.best_epoch, st.best_loss = new.metric, new.epoch, new.loss
        st.since_best = 0
        return True

    def _set_aside_warmup_best(self, phase: Phase) -> None:
        """At the first fine-tuning epoch, the warm-up's best steps aside (compared at the end)."""
        st = self.state
        if phase.name != "finetune" or st.warmup_best is not None or st.best_file is None:
            return
        if self.cfg.keep == "last":
            return
        if st.best_epoch is None or st.best_epoch > phase.first:
            return
        st.warmup_best = {
            "epoch": st.best_epoch,
            "metric": st.best_metric,
            "loss": st.best_loss,
            "phase": "warmup",
            "file": st.best_file,
        }
        st.best_metric = st.best_epoch = st.best_loss = st.best_file = None

    def _warmup_file(self) -> str | None:
        return (self.state.warmup_best or {}).get("file")

    def _kept_file(self, n_val: int) -> str:
        """The file of the kept epoch: the best fine-tuned one unless warm-up won clearly."""
        from train.selection import Candidate, final_choice

        st = self.state
        ft = None
        if st.best_file is not None:
            loss = st.best_loss if st.best_loss is not None else math.inf
            ft = Candidate(st.best_epoch or 0, st.best_metric, loss, "finetune", st.best_file)
        chosen, note = final_choice(Candidate.from_dict(st.warmup_best), ft, self.higher, n_val)
        if chosen is None or chosen.file is None:
            raise TrainingError(
                f"{self.out}: no epoch produced a validation metric; nothing to save"
            )
        st.selection_note = note
        st.best_epoch, st.best_metric, st.best_file = chosen.epoch, chosen.metric, chosen.file
        return chosen.file

    # ----------------------------------------------------------------- the artifacts
    def _finish(self, model: Any, data: _Data, seconds: float) -> Path:
        """The best epoch's model, spec, metrics, plots and summary: the run directory."""
        from train.metrics import compute_metrics

        out, st, spec = self.out, self.state, data.spec
        self.data_spec = spec
        _set_weights(model, _read_npz(self.ckdir / self._kept_file(len(data.x_val))), "m")
        y_pred = spec.decode_output(_predict(model, data.x_val))
        metrics = compute_metrics(
            spec, data.y_val, y_pred, image_sizes=data.val_sizes, train_targets=data.y_train
        )
        metrics.update(
            {"best_epoch": st.best_epoch, "epochs_run": st.epoch, "primary_metric": self.key}
        )
        spec_final = spec.with_extra(
            metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
            train_images=len(data.x_train),
            val_images=len(data.x_val),
        )
        with atomic_path(out / "model.keras") as tmp:
            _deployable(self._float32(model)).save(tmp)
        atomic_write_text(out / "spec.json", spec_final.to_json())
        atomic_write_json(out / "metrics.json", metrics)
        self._write_history(st.history)
        plot_notes = self._plots(spec, data, y_pred)
        summary = self._summary(spec, data, metrics, seconds, plot_notes)
        atomic_write_text(out / "summary.txt", summary)
        self._write_config("complete", spec)
        shutil.rmtree(self.ckdir, ignore_errors=True)
        self.log(summary)
        return out

    def _float32(self, model: Any) -> Any:
        """The model in float32 (what conversion reads), whatever the training precision."""
        self.dev.sync_batchnorm(model, on=False)
        if self.dev.precision == "float32":
            return model
        from train.devices import float32_policy

        with float32_policy():
            copy = self._build_model(self.data_spec, weights="none")
        copy.set_weights(model.get_weights())
        return copy

    def _checkpoint(self, model: Any, opt: Any) -> None:
        arrays = _weights_arrays(model, "m")
        arrays.update({f"o{i:05d}": np.asarray(v) for i, v in enumerate(opt.variables)})
        arrays["state"] = np.array(self.state.to_json())
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
        worst = plots.worst_examples(spec, data.y_val, y_pred, 16)
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
                    [read_image(data.val_paths[i]) for i in worst],
                    data.y_val[worst],
                    y_pred[worst],
                    p,
                    of=len(data.y_val),
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
        metrics: dict[str, Any],
        seconds: float,
        notes: list[str],
    ) -> str:
        from train import metrics as M

        cfg, st = self.cfg, self.state
        lines = [
            f"edgereg train: {cfg.task} on {cfg.data_dir}",
            f"backbone {cfg.backbone} alpha {cfg.alpha:g}, weights {cfg.weights}, input "
            f"{spec.input_height}x{spec.input_width}, seed {cfg.seed}",
            f"images: {len(data.x_train)} train, {len(data.x_val)} validation"
            + (f" ({data.n_dropped} bad rows dropped by --skip-bad)" if data.n_dropped else ""),
            f"epochs run: {st.epoch} of {cfg.epochs}; best epoch {st.best_epoch}"
            + (f"; {st.stopped}" if st.stopped else ""),
            f"training time: {seconds / 60:.1f} min",
            "",
        ]
        lines.append(M.format_table(spec, metrics))
        v = M.verdict(spec, metrics)
        if v:
            lines += ["", v]
        lines += self._selection_lines(len(data.x_val))
        lines += notes
        return "\n".join(lines) + "\n"

    def _selection_lines(self, n_val: int) -> list[str]:
        """How the kept epoch was chosen, and how coarse a small validation split is."""
        from train.selection import validation_resolution_note

        cfg, st = self.cfg, self.state
        lines = [""]
        avg = f"weights averaged over ~{cfg.ema_epochs:g} epochs" if cfg.ema_epochs else "raw"
        if cfg.keep == "last":
            return lines + [f"selection: none, the last epoch is kept ({avg})"]
        lines.append(f"selection: best {self.key} ({avg}), ties broken by validation loss")
        if st.selection_note:
            lines.append(st.selection_note)
        note = validation_resolution_note(n_val, self.key, self.higher)
        if note and cfg.fold is None:  # a fold run is already part of k-fold
            lines.append(note)
        return lines


# --------------------------------------------------------------------------- sanity
def _sanity(cfg: TrainConfig, out: Path, log: _Logger) -> Path:
    """Overfit SANITY_IMAGES training images without augmentation; raise if it cannot."""
    data = _load_data(cfg, log, only_train=SANITY_IMAGES)

    import keras

    from train.models import build_model

    keras.utils.set_random_seed(cfg.seed)
    spec = data.spec
    x = data.x_train.array().astype(np.float32)
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
    mark(out, RUN_KIND)
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
    return tasks.get(spec.task).sanity_error(spec, y, pred)
