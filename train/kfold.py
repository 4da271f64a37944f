"""k-fold cross-validation (``edgereg train --folds K``): an honest figure for a small set.

With 140 images a 20 % validation split is 28 images, so one image moves the accuracy by
3.6 points, and the kept epoch is chosen on those same 28. Cross-validation instead:

1. splits DATA_DIR into K folds (stratified like the normal split, deterministic in
   ``--seed``);
2. trains K ordinary runs (``OUT/folds/fold-k/``), each validated on its own fold, so
   every image is validated on exactly once;
3. reports the primary metric's mean ± standard deviation over the folds (and each fold);
4. trains the final model on ALL the images for the chosen length (the median of the
   folds' kept epochs), keeping its last epoch (there is nothing left to select on): the
   figure that describes it is the cross-validated one, not its own training-set score.

Every run is an ordinary run directory, so ``--resume`` continues whichever was interrupted.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.atomic import atomic_write_json, atomic_write_text
from edge_runtime.errors import DataError, TrainingError
from train import tasks

FOLDS_DIR = "folds"


def fold_split(ds: Any, folds: int, fold: int, seed: int) -> tuple[Any, Any]:
    """(train, val) for fold ``fold`` of ``folds``: stratified, deterministic in ``seed``."""
    n = len(ds)
    if not 2 <= folds <= n:
        raise DataError(f"--folds {folds}: needs 2 to {n} folds for {n} images")
    rng = np.random.default_rng((seed, 11))
    strata = tasks.get(ds.task).strata(ds.targets())
    groups = (
        [np.arange(n)]
        if strata is None
        else [np.flatnonzero(strata == c) for c in np.unique(strata)]
    )
    assign = np.empty(n, np.int64)
    offset = 0
    for idx in groups:  # round robin over a shuffled stratum: every fold gets its share
        perm = rng.permutation(idx)
        assign[perm] = (np.arange(len(perm)) + offset) % folds
        offset += len(perm)
    val = np.flatnonzero(assign == fold)
    train = np.flatnonzero(assign != fold)
    return ds.subset(train.tolist()), ds.subset(val.tolist())


def split_for(ds: Any, cfg: Any) -> tuple[Any, Any]:
    """The run's (train, val): a fold, all images (k-fold's final model), or the usual split."""
    from train.dataset import split_dataset

    if cfg.fold is not None:
        return fold_split(ds, cfg.folds, cfg.fold, cfg.seed)
    if cfg.keep == "last" and cfg.val_fraction == 0:
        return ds, ds  # the final model trains on everything; "val" only shows the fit
    return split_dataset(ds, cfg.val_fraction, cfg.seed)


def _fold_result(run: Path) -> dict[str, Any]:
    m = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in m.items() if isinstance(v, (int, float, str))}


def _run_fold(cfg: Any, k: int, out: Path, log: Any) -> dict[str, Any]:
    from train.training import CHECKPOINT_DIR, LAST, _Run

    run = out / FOLDS_DIR / f"fold-{k + 1}"
    cfg_k = replace(cfg, fold=k, folds=cfg.folds, options=dict(cfg.options))
    if (run / "metrics.json").is_file() and not (run / CHECKPOINT_DIR / LAST).is_file():
        log(f"k-fold: fold {k + 1}/{cfg.folds} already done ({run})")
        return _fold_result(run)
    resume = (run / CHECKPOINT_DIR / LAST).is_file()
    if resume:
        from train.training import _load_config_for_resume

        cfg_k = _load_config_for_resume(run, {})
    log(f"k-fold: fold {k + 1}/{cfg.folds} -> {run}")
    _Run(cfg_k, run, log, resume=resume).run()
    return _fold_result(run)


def cv_summary(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Mean, standard deviation and per-fold values of ``key``; the chosen length."""
    vals = [float(r[key]) for r in results]
    epochs = [int(r["best_epoch"]) for r in results]
    return {
        f"cv_{key}_mean": float(np.mean(vals)),
        f"cv_{key}_sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
        f"cv_{key}_folds": vals,
        "cv_best_epochs": epochs,
        # at least 2: a pretrained start needs a warm-up and a fine-tuning epoch
        "cv_epochs_chosen": max(2, int(round(statistics.median(epochs)))),
        "cv_folds": len(vals),
    }


def cv_text(cv: dict[str, Any], key: str, n_images: int) -> str:
    folds = ", ".join(f"{v:.4g}" for v in cv[f"cv_{key}_folds"])
    return (
        f"k-fold cross-validation ({cv['cv_folds']} folds over {n_images} images, each "
        f"image validated once): {key} {cv[f'cv_{key}_mean']:.4g} ± "
        f"{cv[f'cv_{key}_sd']:.2g} (folds: {folds}); kept epochs {cv['cv_best_epochs']} -> "
        f"the final model trained on all {n_images} images for {cv['cv_epochs_chosen']} "
        "epochs, last epoch kept. This cross-validated figure is the one to quote; the "
        "final run's own metrics table is on its training images."
    )


def train_kfold(cfg: Any, out: Path, log: Any) -> Path:
    """K fold runs, then the final model on all images; writes ``cv`` into the run."""
    from train.training import _Run

    if cfg.val_dir:
        raise TrainingError(
            "--folds: cross-validation validates on DATA_DIR's own images; drop --val"
        )
    key, _ = tasks.get(cfg.task).primary_metric
    save_kfold_config(cfg, out)
    results = [_run_fold(cfg, k, out, log) for k in range(cfg.folds)]
    cv = cv_summary(results, key)
    n_images = int(sum(r.get("n", 0) for r in results))
    log(cv_text(cv, key, n_images))
    final = replace(
        cfg,
        fold=None,
        keep="last",
        val_fraction=0.0,
        epochs=cv["cv_epochs_chosen"],
        patience=None,
        options=dict(cfg.options),
    )
    resume = (out / "checkpoint" / "last.npz").is_file()
    if resume:
        from train.training import _load_config_for_resume

        final = _load_config_for_resume(out, {})
    _Run(final, out, log, resume=resume).run()
    _record_cv(out, cv, cv_text(cv, key, n_images))
    return out


def _record_cv(out: Path, cv: dict[str, Any], text: str) -> None:
    """The cross-validated figures go into metrics.json, spec.json's extra and summary.txt."""
    from edge_runtime.spec import ModelSpec

    metrics = json.loads((out / "metrics.json").read_text())
    atomic_write_json(out / "metrics.json", {**metrics, **cv})
    spec = ModelSpec.from_json((out / "spec.json").read_text())
    flat = {k: v for k, v in cv.items() if isinstance(v, (int, float))}
    spec = spec.with_extra(metrics={**spec.extra.get("metrics", {}), **flat})
    atomic_write_text(out / "spec.json", spec.to_json())
    summary = (out / "summary.txt").read_text()
    atomic_write_text(out / "summary.txt", summary + "\n" + text + "\n")


def save_kfold_config(cfg: Any, out: Path) -> None:
    """``OUT/kfold.json``: the settings, so ``--resume`` can continue the folds."""
    from dataclasses import asdict

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "kfold.json", asdict(cfg))


def load_kfold_config(out: Path) -> Any:
    from train.dataset import run_options
    from train.training import TrainConfig

    raw = json.loads((out / "kfold.json").read_text())
    kw = {k: v for k, v in raw.items() if k in TrainConfig.__dataclass_fields__}
    kw["options"] = run_options(raw)
    return TrainConfig(**kw)
