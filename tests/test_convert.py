"""``edgereg convert`` on a real (tiny) run: real TF conversion, real LiteRT, real files.

The run directory is built here: a sample dataset (``train.samples``), a small
contract-conforming Keras model (raw 0..255 input, sigmoid head) saved with the Keras
saver, and ``spec.json``/``config.json`` as ``edgereg train`` writes them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import ModelFileError, QualityGateError
from edge_runtime.metadata import read_spec
from edge_runtime.spec import ModelSpec

pytestmark = pytest.mark.slow
SIZE = 32
REPO = Path(__file__).resolve().parents[1]


def _tiny_model(spec: ModelSpec, seed: int = 0):
    """Conv net whose outputs depend smoothly on the image (so metrics are meaningful)."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((spec.input_height, spec.input_width, 3))
    x = keras.layers.Rescaling(1 / 127.5, -1)(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu6")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    act = "softmax" if spec.task == "class" else "sigmoid"
    out = keras.layers.Dense(spec.output_size, activation=act)(x)
    return keras.Model(inp, out)


def make_run(root: Path, task: str = "point", n: int = 24, n_val: int = 6) -> Path:
    from train.samples import make_samples

    data = make_samples(root / "data", task, n=n, n_val=n_val, seed=0, workers=1)
    kw: dict = {"point": {"num_keypoints": 1}, "value": {"value_range": (80.0, 350.0)}}.get(
        task, {}
    )
    spec = ModelSpec(task=task, input_height=SIZE, input_width=SIZE, **kw)
    run = root / "runs" / task
    run.mkdir(parents=True)
    _tiny_model(spec).save(run / "model.keras")
    (run / "spec.json").write_text(spec.to_json())
    cfg = {
        "data_dir": str(data / "train"),
        "val_dir": str(data / "val"),
        "task": task,
        "y_up": False,
        "coords": "normalized",
        "target": None,
        "val_fraction": 0.2,
        "seed": 0,
        "input_size": SIZE,
    }
    (run / "config.json").write_text(json.dumps(cfg))
    return run


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """One full conversion (all variants, verification) shared by the tests below."""
    from convert.export import ConvertOptions, convert_run

    root = tmp_path_factory.mktemp("conv")
    run = make_run(root)
    opts = ConvertOptions(io="uint8", calib=16, latency_runs=3)
    report = convert_run(run, opts)
    return run, report


def test_all_variants_written_with_embedded_spec(converted):
    run, report = converted
    export = run / "export"
    names = {"fp32", "fp16", "dynamic", "int8", "int16x8"}
    written = {f["variant"] for f in report["files"]}
    # int8_mixed (a default) is built only when int8 misses the precision target
    assert written - {"int8_mixed"} == names
    assert ("int8_mixed" in written) == (report["int8_change"]["relative_drop"] > 0.05)
    for v in names:
        path = export / f"model_{v}.tflite"
        spec = read_spec(path)
        assert spec is not None, path
        assert spec.task == "point" and spec.input_width == SIZE
        assert spec.extra["export"]["variant"] == v
    # reports are complete, valid files
    rep = json.loads((export / "report.json").read_text())
    assert len(rep["verification"]) == len(written)
    # every file was verified through the device runtime's own Predictor
    assert {c["runner"] for c in rep["verification"]} == {"edge_runtime.Predictor"}
    md = (export / "report.md").read_text()
    assert "| int8 |" in md and "mean_error_px" in md
    # no temp files left
    assert not list(export.glob(".*tmp*"))


def test_uint8_input_takes_camera_bytes(converted):
    _, report = converted
    q = next(f for f in report["files"] if f["variant"] == "int8")["quantization"]
    assert q["input"]["dtype"] == "uint8"
    assert q["input"]["zero_point"] == 0
    assert abs(q["input"]["scale"] - 1.0) < 0.01
    assert q["output"]["dtype"] == "uint8"
    # the report states the output's real int8 step (read from the file, not assumed)
    assert q["output"]["integer_scale"] == q["output"]["scale"] > 0
    note = next(n for n in report["notes"] if n.startswith("int8: the output is int8"))
    assert f"{q['output']['scale']:.4g}" in note


def test_small_training_sets_are_topped_up_with_mirror_images(tmp_path):
    import cv2

    from convert.quantize import calibration_images

    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        p = tmp_path / f"im{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
        paths.append(p)
    spec = ModelSpec(task="point", input_height=SIZE, input_width=SIZE, num_keypoints=1)
    x = calibration_images(paths, spec, n=8)
    assert x.shape == (8, SIZE, SIZE, 3)
    np.testing.assert_array_equal(x[5:, 1:], x[:3, 1:, ::-1])  # row 0 of x[0] is pinned
    assert x.min() == 0 and x.max() == 255
    assert len(calibration_images(paths, spec, n=100)) == 10  # at most one mirror each
    assert len(calibration_images(paths, spec, n=3)) == 3  # enough images: no mirrors


def test_int8_runs_in_litert_and_tracks_keras(converted):
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from edge_runtime.images import read_image
    from edge_runtime.preprocess import resize_to_input

    run, report = converted
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    it = Interpreter(model_path=str(run / "export" / "model_int8.tflite"))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = out["quantization"]
    val = sorted((run.parent.parent / "data" / "val").glob("*.jpg"))[:4]
    assert val
    diffs = []
    for p in val:
        x = resize_to_input(read_image(p), SIZE, SIZE)
        it.set_tensor(inp["index"], x[None].astype(np.uint8))
        it.invoke()
        y = (it.get_tensor(out["index"]).astype(np.float32) - zp) * scale
        k = np.asarray(model(x[None].astype(np.float32)))
        diffs.append(np.abs(y - k).max())
    # a few int8 output steps (1/256 each), not a different function
    assert max(diffs) < 0.05, diffs
    check = next(c for c in report["verification"] if c["variant"] == "int8")
    assert check["disagreement"][0]["max"] < 0.05
    assert check["latency_ms"]["1_thread"] > 0


def test_fp32_matches_keras_exactly_enough(converted):
    _, report = converted
    check = next(c for c in report["verification"] if c["variant"] == "fp32")
    assert check["disagreement"][0]["max"] < 1e-4
    assert abs(check["relative_drop"]) < 1e-3


def test_max_drop_gate_both_ways(converted):
    from convert.verify import VariantCheck, check_gate

    _, report = converted
    checks = [VariantCheck(**c) for c in report["verification"]]
    worst = max(c.relative_drop for c in checks)
    check_gate(checks, max(worst, 0.0) + 0.01)  # passes
    # a gate tighter than the worst real drop fails, naming the variant and what to try
    bad = VariantCheck(**{**report["verification"][3], "value": 2.0, "keras_value": 1.0})
    bad.relative_drop = 1.0
    with pytest.raises(QualityGateError, match="int16x8|more calibration"):
        check_gate([*checks, bad], 0.05)


def test_max_drop_cli_passes(converted, run_cli):
    run, _ = converted
    ok = run_cli("convert", run, "--variants", "fp32", "--max-drop", "0.01", "--latency-runs", "2")
    assert ok.returncode == 0, ok.stderr
    assert "passed" in (run / "export" / "report.md").read_text()


def _relabel_val_with_keras(run: Path) -> None:
    """Make the validation labels the Keras model's own answers: Keras error ~0, so any
    quantized variant is relatively far worse (a deterministic gate failure)."""
    import csv

    import keras

    from edge_runtime.images import read_image
    from edge_runtime.preprocess import resize_to_input

    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    val = Path(json.loads((run / "config.json").read_text())["val_dir"])
    rows = list(csv.reader((val / "labels.csv").open()))
    for row in rows[1:]:
        x = resize_to_input(read_image(val / row[0]), SIZE, SIZE)[None].astype(np.float32)
        px, py = np.asarray(model(x))[0]
        row[1:3] = [f"{px:.6f}", f"{py:.6f}"]
    with (val / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_max_drop_cli_fails_and_says_what_to_try(tmp_path, run_cli):
    run = make_run(tmp_path, n=8, n_val=4)
    _relabel_val_with_keras(run)
    bad = run_cli(
        "convert",
        run,
        "--variants",
        "int8",
        "--calib",
        "8",
        "--max-drop",
        "0.5",
        "--latency-runs",
        "2",
    )
    assert bad.returncode == 9, bad.stderr
    assert "error: --max-drop 0.5" in bad.stderr and "int8:" in bad.stderr
    assert "int16x8" in bad.stderr and "calibration images" in bad.stderr
    assert "Traceback" not in bad.stderr
    rep = json.loads((run / "export" / "report.json").read_text())
    assert rep["gate"]["result"].startswith("FAILED")
    assert rep["keras"]["value"] < 0.01  # the labels are Keras's own answers
    assert (run / "export" / "model_int8.tflite").is_file()  # files and report still written


@pytest.mark.parametrize("keep", [0.33, 0.9, 0.999])
def test_truncated_tflite_is_a_model_file_error(converted, tmp_path, keep):
    from convert.edgetpu import analyse
    from convert.verify import device_raw, measure_latency

    run, _ = converted
    data = (run / "export" / "model_int8.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelFileError, match="cut.tflite"):
        analyse(cut.read_bytes(), str(cut))
    # verification and its latency run files through the device runtime, which refuses it too
    with pytest.raises(ModelFileError, match="cut.tflite"):
        device_raw(cut, [np.zeros((SIZE, SIZE, 3), np.uint8)])
    with pytest.raises(ModelFileError, match="cut.tflite"):
        measure_latency(cut, 1, runs=1)


def test_unknown_variant_and_missing_run(tmp_path, run_cli):
    r = run_cli("convert", tmp_path / "nope", "--variants", "fp64")
    assert r.returncode == 2 and "fp64" in r.stderr  # a bad option: exit 2 (OptionError)
    r = run_cli("convert", tmp_path / "nope", "--variants", "fp32")
    assert r.returncode in (5, 6) and "nope" in r.stderr and "Traceback" not in r.stderr


def test_sigkill_during_conversion_leaves_no_half_file(converted, tmp_path):
    """kill -9 a real `edgereg convert` after its first new file: earlier artifacts intact."""
    from ai_edge_litert.interpreter import Interpreter

    run, _ = converted
    export = run / "export"
    before = {p.name: p.read_bytes() for p in export.glob("model_*.tflite")}
    report_before = (export / "report.json").read_bytes()
    start = time.time()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgereg",
            "convert",
            str(run),
            "--variants",
            "fp32,int8,int16x8,fp16",
            "--no-verify",
            "--calib",
            "16",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        fp32 = export / "model_fp32.tflite"
        while time.time() - start < 300 and proc.poll() is None:
            if fp32.stat().st_mtime > start:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "conversion finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # every file under a final name is complete: it loads, carries its spec
    for p in export.glob("model_*.tflite"):
        assert read_spec(p) is not None, p
        Interpreter(model_path=str(p)).allocate_tensors()
    # the ones the killed run had not reached are byte-for-byte the earlier ones
    for name in ("model_fp16.tflite", "model_dynamic.tflite"):
        assert (export / name).read_bytes() == before[name]
    assert (export / "report.json").read_bytes() == report_before
    # a later conversion cleans the killed run's temp files
    from convert.export import clean_stale_temps

    clean_stale_temps(export)
    assert not [p for p in export.iterdir() if ".tmp" in p.name]


def test_adding_a_variant_is_one_registry_entry(converted, monkeypatch):
    from convert import export

    run, _ = converted
    extra = export.Variant("fp32_copy", "copy", export.fp32, ("litert",), description="test")
    monkeypatch.setitem(export.VARIANTS, extra.name, extra)
    assert export.parse_variants("fp32_copy") == ("fp32_copy",)
    rep = export.convert_run(run, export.ConvertOptions(variants=("fp32_copy",), verify=False))
    path = run / "export" / "model_copy.tflite"
    assert read_spec(path).extra["export"]["variant"] == "fp32_copy"
    assert rep["files"][0]["backends"] == ["litert"]


def test_lambda_layer_model_is_refused_with_safe_mode(tmp_path):
    import keras

    from convert.export import load_run_model

    inp = keras.Input((SIZE, SIZE, 3))
    out = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    keras.Model(inp, out).save(tmp_path / "model.keras")
    with pytest.raises(ModelFileError, match="safe mode"):
        load_run_model(tmp_path)
