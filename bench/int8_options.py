"""Which way of keeping int8 precise wins? The alternatives, measured on one run.

    python -m bench.int8_options RUN_DIR [--test DATA_DIR] [--calib 256,1000]

On the run's validation split (and ``--test``, an untouched split, when given), through
the device runtime, each against the Keras model:

- ``int8`` at each ``--calib`` count (more calibration images);
- ``int8 per-tensor`` (one scale per tensor instead of per output channel);
- ``int16x8`` (16-bit activations everywhere: LiteRT cannot mix 16x8 with int8 per layer,
  so "int16x8 on the last block only" is not a model the converter can make);
- ``int8_mixed`` (convert/selective.py: the fewest float layers that meet the target).

Prints a markdown table (relative change vs Keras, size, 1-thread latency) and writes
``RUN_DIR/int8_options.json``. Files go to a temporary folder, not the run's export/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _per_tensor(conv: Any, ctx: Any) -> None:
    from convert.export import int8

    int8(conv, ctx)
    conv._experimental_disable_per_channel = True  # the converter's only switch for it


def _score(path: Path, spec: Any, val: Any, kv: float, key: str, higher: bool) -> float:
    from convert.verify import compute_metrics, device_raw, relative_drop

    raw = device_raw(path, val.images)
    m = compute_metrics(spec, val.targets, spec.decode_output(raw), val.sizes, val.train_targets)
    return relative_drop(kv, float(m[key]), higher)


def main(argv: list[str] | None = None) -> int:
    from convert import export, quantize, selective, verify
    from train.dataset import load_dataset

    ap = argparse.ArgumentParser(prog="python -m bench.int8_options", description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--test", type=Path, default=None, help="an untouched dataset folder")
    ap.add_argument("--calib", default="256,1000")
    ap.add_argument("--target", type=float, default=selective.INT8_TARGET)
    a = ap.parse_args(argv)

    spec = export.load_run_spec(a.run)
    static = export.static_batch_model(export.load_run_model(a.run), spec)
    train_ds, val_ds = quantize.load_splits(a.run)
    sets = {"val": verify.ValidationSet.from_datasets(val_ds, train_ds)}
    if a.test:
        sets["test"] = verify.ValidationSet.from_datasets(load_dataset(a.test, spec.task), train_ds)
    key, higher = verify.primary_metric(spec)
    keras = {}
    for name, s in sets.items():
        raw = verify.keras_raw(static, spec, s.images)
        m = verify.compute_metrics(
            spec, s.targets, spec.decode_output(raw), s.sizes, s.train_targets
        )
        keras[name] = float(m[key])
    paths = quantize.train_paths(train_ds)
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="edgereg_int8opts_"))
    try:
        saved = export.export_saved_model(static, tmp / "saved")
        calibs = {
            int(c): quantize.calibration_images(paths, spec, int(c)) for c in a.calib.split(",")
        }

        def one(label: str, variant: Any, images: np.ndarray, model: bytes | None = None) -> None:
            ctx = export.ConvertContext(
                spec, representative=quantize.representative_dataset(images)
            )
            if model is None:
                model = export.convert_variant(saved, variant, ctx)
            from edge_runtime.metadata import embed_spec

            p = tmp / f"{label.replace(' ', '_')}.tflite"
            p.write_bytes(embed_spec(model, spec.with_extra(export={"variant": variant.name})))
            row = {"option": label, "calibration": len(images), "size_kib": p.stat().st_size / 1024,
                   "ms_1_thread": verify.measure_latency(p, 1, 30)}  # fmt: skip
            for name, s in sets.items():
                row[f"{name}_drop"] = _score(p, spec, s, keras[name], key, higher)
            rows.append(row)
            print(row, file=sys.stderr, flush=True)

        for imgs in calibs.values():
            one(f"int8, calib {len(imgs)}", export.VARIANTS["int8"], imgs)
        base = calibs[min(calibs)]
        per_tensor = export.Variant("int8_pt", "int8_pt", _per_tensor, ("litert",))
        one("int8 per-tensor", per_tensor, base)
        one("int16x8", export.VARIANTS["int16x8"], base)
        ctx = export.ConvertContext(spec, representative=quantize.representative_dataset(base))
        dbg = selective.make_debugger(saved, ctx, base)
        layers = selective.layer_errors(dbg)
        for order, names in selective.orders(layers).items():
            for k in (1, 2, 4, 8):
                model = selective.denylisted_model(dbg, names[:k])
                one(f"int8_mixed, {order}, {k} float", export.VARIANTS["int8_mixed"], base, model)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"run": str(a.run), "metric": key, "keras": keras, "rows": rows}
    (a.run / "int8_options.json").write_text(json.dumps(out, indent=2))
    cols = [c for c in ("val_drop", "test_drop") if c in rows[0]]
    print(
        f"| option | calibration images | {' | '.join(c.replace('_drop', ' change') for c in cols)} | size (KiB) | ms (1 thread) |"
    )
    print("|---|---|" + "---|" * len(cols) + "---|---|")
    for r in rows:
        ch = " | ".join(f"{100 * r[c]:+.2f} %" for c in cols)
        print(
            f"| {r['option']} | {r['calibration']} | {ch} | {r['size_kib']:.0f} | {r['ms_1_thread']:.2f} |"
        )
    print(f"Keras {key}: " + ", ".join(f"{k} {v:.4g}" for k, v in keras.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
