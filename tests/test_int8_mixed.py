"""int8 precision by default: the int8 change is always reported, a loss past the target
is loud, and ``int8_mixed`` keeps the fewest layers in float that bring it back
(convert/selective.py), with real TF conversion, the real QuantizationDebugger and LiteRT.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from test_convert import SIZE, make_run

from edge_runtime.metadata import read_spec

pytestmark = pytest.mark.slow


def _relabel_near_keras(run: Path, noise: float = 0.002) -> None:
    """Validation labels = Keras's answers + a small fixed offset: Keras's error is small
    and known, so int8's few-percent disagreement is a large relative loss."""
    import keras

    from edge_runtime.images import read_image
    from edge_runtime.preprocess import resize_to_input

    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    val = Path(json.loads((run / "config.json").read_text())["val_dir"])
    rows = list(csv.reader((val / "labels.csv").open()))
    for i, row in enumerate(rows[1:]):
        x = resize_to_input(read_image(val / row[0]), SIZE, SIZE)[None].astype(np.float32)
        px, py = np.asarray(model(x))[0]
        d = noise if i % 2 else -noise
        row[1:3] = [f"{px + d:.6f}", f"{py - d:.6f}"]
    with (val / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def _float_tensors(path: Path) -> int:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return sum(1 for t in it.get_tensor_details() if t["dtype"] == np.float32)


def test_int8_past_the_target_is_loud_and_int8_mixed_brings_it_back(tmp_path: Path) -> None:
    from convert.export import ConvertOptions, convert_run

    run = make_run(tmp_path, n=16, n_val=8)
    _relabel_near_keras(run)
    rep = convert_run(run, ConvertOptions(variants=("fp32", "int8", "int8_mixed"), calib=16,
                                          latency_runs=2))  # fmt: skip
    checks = {c["variant"]: c for c in rep["verification"]}
    assert checks["int8"]["relative_drop"] > 0.05, "the setup must make int8 miss the target"
    assert rep["int8_change"]["relative_drop"] == checks["int8"]["relative_drop"]
    assert any(n.startswith("WARNING: int8 vs the float model") for n in rep["notes"])
    # the selective variant: within the target, with named float layers, verified like others
    sel = rep["selective"]
    assert sel["layers_measured"] >= 3 and sel["worst_layers"][0]["rmse_over_scale"] > 0
    mixed = checks["int8_mixed"]
    assert sel["within_target"] and mixed["relative_drop"] + mixed["relative_drop_se"] <= 0.05
    chosen = sel["chosen"]
    assert 1 <= len(chosen["denylisted"]) < sel["layers_measured"] + 1
    # fewest layers: no candidate within the target used fewer
    fewer = [c for c in sel["tried"] if c["float_layers"] < len(chosen["denylisted"])]
    assert all(c["relative_drop"] + c["se"] > 0.05 for c in fewer)
    spec = read_spec(run / "export" / "model_int8_mixed.tflite")
    assert spec.extra["export"]["variant"] == "int8_mixed"
    assert spec.extra["export"]["float_layers"] == chosen["denylisted"]
    note = next(n for n in rep["notes"] if n.startswith("int8_mixed:"))
    assert "kept in float" in note and "KiB" in note and "ms" in note and "Edge TPU" in note
    # the Edge TPU's file stays fully integer; the mixed one really computes some layers in float
    exp = run / "export"
    assert _float_tensors(exp / "model_int8_mixed.tflite") > _float_tensors(
        exp / "model_int8.tflite"
    )
    assert "int8_mixed" in (exp / "report.md").read_text()


def test_int8_within_the_target_builds_no_mixed_model(tmp_path: Path) -> None:
    from convert.export import ConvertOptions, convert_run

    run = make_run(tmp_path, n=16, n_val=8)
    rep = convert_run(run, ConvertOptions(variants=("int8", "int8_mixed"), calib=16,
                                          latency_runs=2, max_drop=10.0))  # fmt: skip
    assert "selective" not in rep
    assert not (run / "export" / "model_int8_mixed.tflite").exists()
    assert any("int8_mixed not built: int8 is within" in n for n in rep["notes"])

    # a target int8 meets on this split but not by one standard error: int8_mixed is built
    ch = rep["int8_change"]
    assert ch["se"] > 0
    between = ch["relative_drop"] + ch["se"] / 2
    rep = convert_run(run, ConvertOptions(variants=("int8", "int8_mixed"), calib=16,
                                          latency_runs=2, max_drop=between))  # fmt: skip
    assert any("but not by one standard error" in n for n in rep["notes"]), rep["notes"]
    assert not any(n.startswith("WARNING") for n in rep["notes"])
    assert "selective" in rep


def test_standard_error_of_a_change_shrinks_with_more_images() -> None:
    """The paired bootstrap: no change has no spread; the same per-image noise measured
    on 4x the images has about half the standard error."""
    from convert.selective import Candidate
    from convert.verify import ValidationSet, relative_drop_se
    from edge_runtime.spec import ModelSpec

    spec = ModelSpec(task="point", input_width=SIZE, input_height=SIZE, num_keypoints=1)
    rng = np.random.default_rng(0)

    def se(n: int) -> float:
        truth = rng.uniform(0.2, 0.8, (n, 2)).astype(np.float32)
        ref = truth + rng.normal(0, 0.02, (n, 2)).astype(np.float32)
        new = ref + rng.normal(0, 0.01, (n, 2)).astype(np.float32)
        val = ValidationSet([np.zeros((SIZE, SIZE, 3), np.uint8)] * n, truth.reshape(n, 1, 2),
                            np.full((n, 2), SIZE, np.float32))  # fmt: skip
        assert relative_drop_se(spec, val, ref, ref) == 0.0
        return relative_drop_se(spec, val, ref, new)

    small, large = se(60), se(960)
    assert 0 < large < small / 2.5, (small, large)
    # within the target means within it one standard error up
    assert Candidate("o", [], 0.03, 1.0, 0.01).within(0.05)
    assert not Candidate("o", [], 0.045, 1.0, 0.01).within(0.05)
    assert Candidate("o", [], 0.045, 1.0, float("nan")).within(0.05)


def test_search_that_meets_no_target_tries_every_prefix_and_keeps_the_best(
    tmp_path: Path,
) -> None:
    """An impossible target walks both orders to the end: never all layers in float (the
    debugger cannot build that; it failed a real angle conversion), and the kept
    candidate is the smallest loss, reported as not within the target."""
    from convert import export, quantize, selective, verify

    run = make_run(tmp_path, n=16, n_val=8)
    spec = export.load_run_spec(run)
    static = export.static_batch_model(export.load_run_model(run), spec)
    saved = export.export_saved_model(static, tmp_path / "saved")
    train_ds, val_ds = quantize.load_splits(run)
    imgs = quantize.calibration_images(quantize.train_paths(train_ds), spec, 16)
    ctx = export.ConvertContext(spec, representative=quantize.representative_dataset(imgs))
    dbg = selective.make_debugger(saved, ctx, imgs)
    layers = selective.layer_errors(dbg)
    val = verify.ValidationSet.from_datasets(val_ds, train_ds)
    kraw = verify.keras_raw(static, spec, val.images)
    key, higher = verify.primary_metric(spec)
    kv = float(verify.compute_metrics(spec, val.targets, spec.decode_output(kraw), val.sizes)[key])
    score = selective.scorer(spec, val, kv, higher, key, kraw)
    res = selective.search(dbg, layers, score, target=-1.0)
    n = len(layers)
    assert max(len(c.denylisted) for c in res.tried) == n - 1
    assert {c.order for c in res.tried} == {"debugger", "output path"}
    assert res.chosen is not None and res.model is not None
    assert res.chosen.relative_drop == min(c.relative_drop for c in res.tried)
    assert not res.to_dict()["within_target"]
