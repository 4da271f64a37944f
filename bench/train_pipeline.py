"""Does the input pipeline starve training? images/s of load + augment vs the train step.

    python -m bench.train_pipeline                 # default input sizes, point and value
    python -m bench.train_pipeline --tasks point,value,keypoints,class --steps 10
    python -m bench.train_pipeline --quick --json out.json

Per task, on that task's sample data (``train.samples.make_samples``) at the default
input size and batch size:

- load: ``read_image`` + ``resize_to_input`` (once per image and run with a cache);
- augment: :func:`train.augment.augment_batch` (every epoch; one core here);
- train step: ``train_on_batch`` of the default model in its fine-tuning phase (the
  slowest phase), after one warm-up step.

Before streaming (docs/scaling.md), training ran augmentation and the train step one
after the other, so the share of epoch time spent augmenting was
``step_rate / (step_rate + augment_rate)``; now the tf.data input threads augment while
the model trains, and that share is the cost of the augmenting threads' CPU time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def measure(task: str, n_images: int, steps: int, weights: str, alpha: float) -> dict[str, Any]:
    from edge_runtime.images import read_image
    from edge_runtime.preprocess import resize_to_input
    from train.augment import Augmenter, augment_batch
    from train.dataset import load_dataset
    from train.samples import make_samples
    from train.training import (
        TrainConfig,
        _compile,
        _configure_phase,
        _encode,
        _make_spec,
        default_batch_size,
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = make_samples(Path(tmp) / task, task, n=n_images, n_val=2, seed=0)
        ds = load_dataset(root / "train", task)
        cfg = TrainConfig(str(root / "train"), task, weights=weights, alpha=alpha)
        spec = _make_spec(cfg, ds, ds.targets())
        h, w = spec.input_height, spec.input_width
        t0 = time.perf_counter()
        x = np.stack(
            [resize_to_input(read_image(s.path), h, w, spec.interpolation) for s in ds.samples]
        )
        load_s = time.perf_counter() - t0
    y = ds.targets()
    aug = Augmenter(spec)
    augment_batch(aug, x[:4], y[:4], 0, 0)  # warm-up
    t0 = time.perf_counter()
    augment_batch(aug, x, y, 0, 1)
    aug_s = time.perf_counter() - t0

    from train import tasks
    from train.models import build_model

    # the batch size a default run on the task's full sample set would use
    bs = default_batch_size(tasks.get(task).samples().counts[0])
    try:
        model = build_model(spec, alpha=alpha, weights=weights)
        used = weights
    except Exception:  # no pretrained weights here: same architecture, random init
        model = build_model(spec, alpha=alpha, weights="none")
        used = "none"
    _configure_phase(model, "finetune" if used != "none" else "scratch", cfg)
    _compile(model, spec, 1e-4, 1000, 0, 1e-4)
    idx = np.arange(bs) % len(x)
    xb = x[idx].astype(np.float32)
    yb = _encode(spec, y[idx])
    model.train_on_batch(xb, yb)  # trace + warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(xb, yb)
    step_s = time.perf_counter() - t0
    load_rate = _rate(len(x), load_s)
    aug_rate = _rate(len(x), aug_s)
    step_rate = _rate(steps * bs, step_s)
    return {
        "task": task,
        "input": f"{h}x{w}",
        "batch": bs,
        "weights": used,
        "load_img_s": round(load_rate, 1),
        "augment_img_s": round(aug_rate, 1),
        "train_step_img_s": round(step_rate, 1),
        "augment_share_of_epoch": round(step_rate / (step_rate + aug_rate), 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.train_pipeline", description=__doc__)
    ap.add_argument("--tasks", default="point,value")
    ap.add_argument("--images", type=int, default=64, help="sample images per task")
    ap.add_argument("--steps", type=int, default=5, help="timed train steps")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true", help="tiny: 16 images, 2 steps")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args(argv)
    if a.quick:
        a.images, a.steps = 16, 2
    rows = [measure(t.strip(), a.images, a.steps, a.weights, a.alpha) for t in a.tasks.split(",")]
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(wd) for c, wd in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(wd) for c, wd in zip(cols, widths, strict=True)))
    if a.json:
        from edge_runtime.atomic import atomic_write_json

        atomic_write_json(a.json, {"rows": rows, "images": a.images, "steps": a.steps})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
