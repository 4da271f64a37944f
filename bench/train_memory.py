"""Where does training memory go? RSS after each step of one model (docs/scaling.md).

    nice -n 10 python -m bench.train_memory                 # value, 224 px, batch 32
    python -m bench.train_memory --input-size 96 --weights none

One process, random images: TensorFlow imported, the model built, three train steps of
the head warm-up (backbone frozen), three of fine-tuning (every block, BatchNorm frozen),
then validation-style inference on ``--predict-batch`` images, once through a traced
``tf.function`` (what ``edgereg train`` does) and then eagerly (what it did before
streaming). Prints the process's RSS and peak RSS (``/proc/self/status``) after each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def rss() -> str:
    cur = peak = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                cur = int(line.split()[1]) / 1e6
            elif line.startswith("VmHWM"):
                peak = int(line.split()[1]) / 1e6
    return f"RSS {cur:.2f} GB (peak {peak:.2f} GB)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--predict-batch", type=int, default=64)
    ap.add_argument("--weights", default="imagenet")
    args = ap.parse_args(argv)
    print("start", rss(), flush=True)
    import tensorflow as tf

    from edge_runtime.spec import ModelSpec
    from train.models import build_model
    from train.training import TrainConfig, _compile, _configure_phase, _encode

    print("TensorFlow imported", rss(), flush=True)
    s = args.input_size
    spec = ModelSpec(task="value", input_height=s, input_width=s, value_range=(0.0, 1.0))
    model = build_model(spec, weights=args.weights)
    print("model built", rss(), flush=True)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (args.batch, s, s, 3)).astype(np.float32)
    y = _encode(spec, rng.random(args.batch).astype(np.float32))
    for phase in ("warmup", "finetune"):
        _configure_phase(model, phase, TrainConfig("-", "value"))
        _compile(model, spec, 1e-3, 100, 0, 1e-4)
        for i in range(3):
            t = time.perf_counter()
            model.train_on_batch(x, y)
            print(f"{phase} step {i} ({time.perf_counter() - t:.1f} s)", rss(), flush=True)
    xv = rng.integers(0, 255, (args.predict_batch, s, s, 3)).astype(np.float32)
    forward = tf.function(lambda b: model(b, training=False))
    for i in range(2):
        forward(xv)
        print(f"traced predict of {args.predict_batch} ({i})", rss(), flush=True)
    for i in range(2):
        model(xv, training=False)
        print(f"eager predict of {args.predict_batch} ({i})", rss(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
