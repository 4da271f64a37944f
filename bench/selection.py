"""Which epoch to keep? Every selection rule scored on an untouched test split.

One training run per (task, seed) records, every epoch, the validation AND test figures
of both the raw weights and the moving average (EMA); the rules are then replayed on
that history, so they are compared on the very same trajectories:

- ``old``: the best raw validation metric, the first epoch to reach it wins (the recipe
  before docs/training.md "Selection");
- ``ema``: the same on the averaged weights;
- ``rule``: edgereg's rule (train/selection.py): averaged weights, ties broken by the
  validation loss, warm-up epochs only if better than fine-tuning by a real margin;
- ``last``: the last epoch's averaged weights.

    python -m bench.selection --task class --n 112 --n-val 28 --seeds 0,1,2 --epochs 30 \\
        --opt invariances=rot90,flip --out sel_out

Data: ``edgereg samples make`` with the seed for train/val, and seed + 1000 for the test
split (its val part, ``--n-test`` images), which selection never sees. Writes
``OUT/<task>-s<seed>/history.csv`` (with ``test_*`` columns) and ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from train.inputs import ImageSet
from train.selection import Candidate, final_choice, is_better
from train.training import _averaged_weights, _Run


class _MeasuredRun(_Run):
    """A normal run that also scores the test split each epoch (never used to select)."""

    test_dir: Path

    def _setup(self, data: Any) -> None:
        from train.dataset import label_options, load_dataset

        super()._setup(data)
        cfg = self.cfg
        kw = label_options(cfg.task, cfg.options)
        names = list(data.spec.class_names) or None
        ds = load_dataset(self.test_dir, cfg.task, class_names=names, **kw)
        self.x_test = ImageSet([s.path for s in ds.samples], data.spec, cfg.cache)
        self.y_test = ds.targets()
        self.test_sizes = ds.image_sizes()

    def _validate(self, model: Any, data: Any, epoch: int, name: str, loss: float, opt: Any):
        row = super()._validate(model, data, epoch, name, loss, opt)
        row[f"raw_test_{self.key}"] = self._test_metric(model, data)
        with _averaged_weights(model, opt):
            row[f"test_{self.key}"] = self._test_metric(model, data)
        return row

    def _test_metric(self, model: Any, data: Any) -> float:
        from train.metrics import compute_metrics
        from train.training import _predict

        spec = data.spec
        pred = spec.decode_output(_predict(model, self.x_test))
        m = compute_metrics(spec, self.y_test, pred, self.test_sizes, data.y_train)
        return float(m[self.key])


def _rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in history if r.get("val_loss") is not None]


def replay(history: list[dict[str, Any]], key: str, higher: bool, n_val: int) -> dict[str, Any]:
    """The epoch each rule keeps, with its validation and test figures."""
    rows = _rows(history)

    def first_best(col: str) -> dict[str, Any]:
        best = None
        for r in rows:
            v = r.get(col)
            if v is not None and (best is None or (v > best[col] if higher else v < best[col])):
                best = r
        return best or rows[-1]

    def rule() -> dict[str, Any]:
        best: dict[str, Candidate | None] = {"warmup": None, "other": None}
        for r in rows:
            part = "warmup" if r["phase"] == "warmup" else "other"
            c = Candidate(r["epoch"], r[f"val_{key}"], r["val_loss"], r["phase"])
            if is_better(c, best[part], higher):
                best[part] = c
        chosen, _ = final_choice(best["warmup"], best["other"], higher, n_val)
        return next(r for r in rows if r["epoch"] == chosen.epoch)

    picks = {
        "old": (first_best(f"raw_val_{key}"), "raw_"),
        "ema": (first_best(f"val_{key}"), ""),
        "rule": (rule(), ""),
        "last": (rows[-1], ""),
    }
    return {
        name: {
            "epoch": r["epoch"],
            "phase": r["phase"],
            "val": r[f"{p}val_{key}"],
            "test": r.get(f"{p}test_{key}"),
        }
        for name, (r, p) in picks.items()
    }


def loss_spike(history: list[dict[str, Any]]) -> float:
    """Largest training loss of a fine-tuning epoch over the lowest one before it."""
    losses = [r["loss"] for r in _rows(history) if r["phase"] != "warmup"]
    worst, low = 1.0, math.inf
    for x in losses:
        if low < math.inf and low > 0:
            worst = max(worst, x / low)
        low = min(low, x)
    return float(worst)


def _make_data(task: str, root: Path, seed: int, n: int, n_val: int, n_test: int) -> Path:
    from train.samples import make_samples

    if not (root / "val" / "labels.csv").exists():
        make_samples(root, task, n=n, n_val=n_val, seed=seed, progress=False)
    test = root.with_name(root.name + "-test")
    if not (test / "val" / "labels.csv").exists():
        make_samples(test, task, n=2, n_val=n_test, seed=seed + 1000, progress=False)
    return test / "val"


def _parse_opts(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for it in items:
        k, _, v = it.partition("=")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def run_one(a: argparse.Namespace, seed: int) -> dict[str, Any]:
    from train.training import _Logger, _make_config

    data = a.out / "data" / f"{a.task}-s{seed}"
    test_dir = _make_data(a.task, data, seed, a.n, a.n_val, a.n_test)
    run = a.out / f"{a.task}-s{seed}{a.tag}"
    opts = {**_parse_opts(a.opt), "val_dir": str(data / "val"), "seed": seed}
    if a.epochs:
        opts["epochs"] = a.epochs
    cfg = _make_config(data / "train", a.task, opts)
    if not (run / "history.csv").exists() or not (run / "model.keras").exists():
        r = _MeasuredRun(cfg, run, _Logger(not a.quiet), resume=(run / "checkpoint").exists())
        r.test_dir = test_dir
        r.run()
    import csv

    hist = [
        {
            k: (v if k == "phase" else float(v) if v not in ("", None) else None)
            for k, v in r.items()
        }
        for r in csv.DictReader(open(run / "history.csv"))
    ]
    from train import tasks

    key, higher = tasks.get(a.task).primary_metric
    return {
        "seed": seed,
        "key": key,
        "picks": replay(hist, key, higher, a.n_val),
        "loss_spike": loss_spike(hist),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.selection", description=__doc__)
    ap.add_argument("--task", required=True)
    ap.add_argument("--n", type=int, required=True, help="training images")
    ap.add_argument("--n-val", type=int, required=True, help="validation images")
    ap.add_argument("--n-test", type=int, default=200, help="test images (another seed)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--opt", action="append", default=[], help="train option key=value")
    ap.add_argument("--tag", default="", help="suffix of the run folders (variants)")
    ap.add_argument("--out", type=Path, default=Path("sel_out"))
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    results = [run_one(a, int(s)) for s in a.seeds.split(",")]
    summ = a.out / f"summary-{a.task}{a.tag}.json"
    summ.write_text(json.dumps(results, indent=2))
    for r in results:
        picks = "  ".join(
            f"{k}: ep{p['epoch']} val {p['val']:.4g} test {p['test']:.4g}"
            for k, p in r["picks"].items()
        )
        print(
            f"{a.task}{a.tag} seed {r['seed']} ({r['key']}) spike x{r['loss_spike']:.3g}: {picks}"
        )
    for name in ("old", "ema", "rule", "last"):
        t = np.array([r["picks"][name]["test"] for r in results])
        v = np.array([r["picks"][name]["val"] for r in results])
        print(f"  {name:5s} mean val {v.mean():.4g} test {t.mean():.4g} (sd {t.std():.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
