"""Which epoch a run keeps (train/selection.py), the averaged weights, and k-fold (train/kfold.py).

The rule's cases are checked on the pure functions; real (tiny) runs check that the run
keeps what the rule says, that the kept weights are the averaged ones, that the average
is checkpointed, and that ``--folds`` validates every image exactly once.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_training import TINY, make_dataset

from train.selection import (
    Candidate,
    ema_momentum,
    final_choice,
    is_better,
    validation_resolution_note,
)


# --------------------------------------------------------------------------- the rule
def test_ties_of_the_metric_are_broken_by_the_validation_loss() -> None:
    best = Candidate(2, 1.0, 0.30)
    assert is_better(Candidate(5, 1.0, 0.10), best, higher=True)
    assert not is_better(Candidate(5, 1.0, 0.40), best, higher=True)
    assert not is_better(Candidate(5, 0.96, 0.01), best, higher=True)
    assert is_better(Candidate(5, 2.0, 9.0), Candidate(1, 2.5, 0.1), higher=False)
    assert not is_better(Candidate(5, float("nan"), 0.1), best, higher=True)
    assert is_better(Candidate(1, 0.5, 0.7), None, higher=True)


def test_a_warm_up_epoch_that_ties_or_wins_by_one_image_is_not_kept() -> None:
    warm = Candidate(2, 1.0, 0.05, "warmup", "w.npz")
    tied = Candidate(20, 1.0, 0.20, "finetune", "f.npz")
    chosen, why = final_choice(warm, tied, higher=True, n_val=28)
    assert chosen is tied and "tied" in why
    one_image = Candidate(20, 1.0 - 1 / 28, 0.20, "finetune", "f.npz")
    assert final_choice(warm, one_image, higher=True, n_val=28)[0] is one_image
    clearly = Candidate(20, 0.80, 0.5, "finetune", "f.npz")
    chosen, why = final_choice(warm, clearly, higher=True, n_val=28)
    assert chosen is warm and "margin" in why
    # errors: a warm-up RMSE must be more than 5 % lower
    ft = Candidate(20, 2.0, 0.1, "finetune", "f")
    assert final_choice(Candidate(2, 1.95, 0.1, "warmup", "w"), ft, False, 500)[0] is ft
    assert final_choice(Candidate(2, 1.80, 0.1, "warmup", "w"), ft, False, 500)[0].epoch == 2
    assert final_choice(None, ft, False, 500)[0] is ft
    # a fine-tuned epoch that is simply better: the summary says the warm-up was worse
    chosen, why = final_choice(Candidate(2, 6.2, 0.1, "warmup", "w"), ft, False, 500)
    assert chosen is ft and "worse (6.2 vs 2)" in why and "tied" not in why


def test_ema_horizon_and_the_small_split_note() -> None:
    assert ema_momentum(7) == pytest.approx(1 - 1 / 14)
    assert ema_momentum(1) == 0.9 and ema_momentum(10_000) == 0.999
    note = validation_resolution_note(28, "accuracy", True)
    assert "28 validation images" in note and "3.6 points" in note and "--folds" in note
    assert validation_resolution_note(300, "rmse", False) is None


# --------------------------------------------------------------------------- real runs
def _history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_run_keeps_the_rules_epoch_with_averaged_weights(tmp_path: Path) -> None:
    """Pretrained start (warm-up + fine-tune): kept epoch = the rule replayed on history."""
    import keras

    import train.models  # noqa: F401
    from bench.selection import replay
    from edge_runtime.spec import ModelSpec
    from train.training import _load_data, _Logger, _make_config, _predict, train

    data = make_dataset(tmp_path / "v", "value", 40)
    kw = {"input_size": 32, "epochs": 5, "warmup_epochs": 2, "batch_size": 8}
    out = train(data, "value", tmp_path / "run", verbose=False, value_range=(80, 350), **kw)
    rows = _history(out)
    assert [r["phase"] for r in rows] == ["warmup"] * 2 + ["finetune"] * 3
    assert all(r["raw_val_rmse"] and r["val_rmse"] for r in rows)
    # the average differs from the last step's weights once it spans several steps
    assert any(r["raw_val_rmse"] != r["val_rmse"] for r in rows[2:])
    hist = [{k: v if k == "phase" else float(v) for k, v in r.items() if v} for r in rows]
    picked = replay(hist, "rmse", False, n_val=8)["rule"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == picked["epoch"]
    # model.keras holds the averaged weights of that epoch: it scores that epoch's val_rmse
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    spec = ModelSpec.from_json((out / "spec.json").read_text())
    d = _load_data(_make_config(data, "value", {"value_range": (80, 350), **kw}), _Logger(False))
    err = spec.decode_output(_predict(model, d.x_val)) - d.y_val
    rmse = float(np.sqrt(np.mean(err**2)))
    assert rmse == pytest.approx(picked["val"], rel=1e-3)
    assert "selection: best rmse" in (out / "summary.txt").read_text()


@pytest.mark.slow
def test_the_checkpoint_carries_the_moving_average(tmp_path: Path) -> None:
    """The optimizer state in last.npz holds the EMA: more than AdamW's 2 moments/weight."""
    from train.training import _Logger, _make_config, _Run

    data = make_dataset(tmp_path / "p", "point", 16)
    cfg = _make_config(data, "point", {"epochs": 2, "batch_size": 8, **TINY})

    class Stop(_Run):
        def _finish(self, model, data, seconds):  # keep the checkpoint folder to inspect it
            return self.out

    out = Stop(cfg, tmp_path / "run", _Logger(False), resume=False).run()
    with np.load(out / "checkpoint" / "last.npz") as z:
        n_model = sum(1 for k in z.files if k.startswith("m"))
        n_opt = sum(1 for k in z.files if k.startswith("o"))
        state = json.loads(str(z["state"]))
    assert state["best_loss"] is not None and state["epoch"] == 2
    import keras

    from train.models import build_model

    m = build_model(cfg_spec := _spec_of(out), alpha=0.35, weights="none")
    del cfg_spec
    n_trainable = len(m.trainable_variables)
    assert n_model >= n_trainable
    assert n_opt >= 3 * n_trainable  # m, v and the average per trainable variable
    assert keras.__version__


def _spec_of(run: Path):
    from edge_runtime.spec import ModelSpec

    return ModelSpec.from_json((run / "spec.json").read_text())


# --------------------------------------------------------------------------- k-fold
def test_folds_are_stratified_disjoint_and_cover_every_image(tmp_path: Path) -> None:
    from train.dataset import load_dataset
    from train.kfold import fold_split

    ds = load_dataset(make_dataset(tmp_path / "c", "class", 23), "class")
    seen: list[str] = []
    for k in range(4):
        tr, va = fold_split(ds, 4, k, seed=0)
        names_tr = {s.path.name for s in tr.samples}
        names_va = [s.path.name for s in va.samples]
        assert not names_tr & set(names_va) and len(names_tr) + len(names_va) == 23
        labels = [int(t) for t in va.targets()]
        assert 0 < sum(labels) < len(labels)  # both classes in every fold
        seen += names_va
    assert sorted(seen) == sorted(s.path.name for s in ds.samples)
    assert [s.path for s in fold_split(ds, 4, 1, seed=0)[1].samples] == [
        s.path for s in fold_split(ds, 4, 1, seed=0)[1].samples
    ]


@pytest.mark.slow
def test_folds_cli_reports_mean_and_spread_then_trains_on_all_images(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "c", "class", 18)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "edgereg", "train", str(data), "--task", "class", "-q"]
    cmd += ["--out", str(out), "--folds", "2", "--epochs", "2", "--batch-size", "8"]
    cmd += ["--input-size", "32", "--alpha", "0.35", "--weights", "none"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    for k in (1, 2):
        assert (out / "folds" / f"fold-{k}" / "model.keras").is_file()
        assert json.loads((out / "folds" / f"fold-{k}" / "metrics.json").read_text())["n"] == 9
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["cv_accuracy_folds"]) == 2 and m["cv_folds"] == 2
    assert m["cv_accuracy_mean"] == pytest.approx(np.mean(m["cv_accuracy_folds"]))
    assert m["cv_accuracy_sd"] >= 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["keep"] == "last" and cfg["epochs"] == m["cv_epochs_chosen"] >= 2
    summary = (out / "summary.txt").read_text()
    assert "k-fold cross-validation (2 folds over 18 images" in summary
    assert "18 train" in summary  # the final model saw every image
    assert "cv_accuracy_mean" in _spec_of(out).extra["metrics"]
