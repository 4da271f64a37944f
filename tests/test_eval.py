"""Evaluation of real Keras / TFLite models on real image files, the eval CLI, and the plots.

The models are tiny but exact: their answer is known from the image (the centroid of the
red pixels, the mean red level, red-vs-blue), so a wrong resize, colour order or decoding
shows up as a large error, and the metrics can be asserted tightly.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.errors import ModelFileError, SpecError
from edge_runtime.spec import ModelSpec

keras = pytest.importorskip("keras")

SIZE = 32
POINT = ModelSpec(task="point", input_height=SIZE, input_width=SIZE, num_keypoints=1)
VALUE = ModelSpec(
    task="value", input_height=SIZE, input_width=SIZE, value_range=(80.0, 350.0), units="mg/L"
)
CLASS = ModelSpec(task="class", input_height=SIZE, input_width=SIZE, class_names=("red", "blue"))


# --------------------------------------------------------------------------- tiny models
def centroid_model(batch_size: int | None = None):
    """Point = softmax-weighted centroid of the red channel (exact for a red blob)."""
    h = w = SIZE
    inp = keras.Input((h, w, 3), batch_size=batch_size)
    x = keras.layers.Rescaling(24.0 / 255.0)(inp)
    x = keras.layers.Permute((3, 1, 2))(x)
    x = keras.layers.Reshape((3, h * w))(x)
    x = keras.layers.Softmax(axis=-1)(x)
    dense = keras.layers.Dense(2, use_bias=False)
    x = dense(x)  # (3, 2): per-channel centroid
    x = keras.layers.Cropping1D((0, 2))(x)  # keep the red channel's
    out = keras.layers.Flatten()(x)
    model = keras.Model(inp, out)
    yy, xx = np.mgrid[0:h, 0:w]
    grid = np.stack([(xx.ravel() + 0.5) / w, (yy.ravel() + 0.5) / h], axis=1)
    dense.set_weights([grid.astype(np.float32)])
    return model


def red_level_model():
    """Normalized value = mean red level / 255 (decoded as 80 + y * 270)."""
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    dense = keras.layers.Dense(1)
    out = dense(x)
    model = keras.Model(inp, out)
    dense.set_weights([np.array([[1 / 255], [0], [0]], np.float32), np.zeros(1, np.float32)])
    return model


def red_vs_blue_model():
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    dense = keras.layers.Dense(2, activation="softmax")
    out = dense(x)
    model = keras.Model(inp, out)
    k = np.array([[0.1, -0.1], [0, 0], [-0.1, 0.1]], np.float32)
    dense.set_weights([k, np.zeros(2, np.float32)])
    return model


def save_model(model, spec: ModelSpec, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.keras"
    model.save(path)
    (folder / "spec.json").write_text(spec.to_json())
    return path


# --------------------------------------------------------------------------- datasets
def point_data(folder: Path, n: int = 12, seed: int = 0, w: int = 80, h: int = 48) -> Path:
    """Non-square images with one red blob; labels normalized, origin top-left."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["image,x,y"]
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, :, 1] = 40  # some green background, ignored by the model
        cx, cy = int(rng.integers(10, w - 10)), int(rng.integers(8, h - 8))
        cv2.circle(img, (cx, cy), 4, (0, 0, 255), -1)  # BGR: red
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
        rows.append(f"{i:03d}.png,{(cx + 0.5) / w:.5f},{(cy + 0.5) / h:.5f}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def value_data(folder: Path, values: list[float]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["image,value"]
    for i, v in enumerate(values):
        red = round((v - 80.0) / 270.0 * 255)
        img = np.zeros((40, 40, 3), np.uint8)
        img[:, :, 2] = red
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
        rows.append(f"{i:03d}.png,{80.0 + red / 255 * 270:.4f}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def class_data(folder: Path, labels: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["image,label"]
    for i, lab in enumerate(labels):
        img = np.zeros((24, 24, 3), np.uint8)
        img[:, :, 2 if lab == "red" else 0] = 200
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
        rows.append(f"{i:03d}.png,{lab}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def point_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A run directory (model.keras, spec.json, config.json) and its train / eval data."""
    root = tmp_path_factory.mktemp("point_run")
    train_dir = point_data(root / "train", n=10, seed=1)
    val_dir = point_data(root / "val", n=12, seed=2)
    run = root / "run"
    save_model(centroid_model(), POINT, run)
    cfg = {
        "data_dir": str(train_dir),
        "val_dir": None,
        "task": "point",
        "y_up": False,
        "coords": "normalized",
        "target": None,
        "val_fraction": 0.0,
        "seed": 0,
    }
    (run / "config.json").write_text(json.dumps(cfg))
    return run, train_dir, val_dir


# --------------------------------------------------------------------------- Keras
def test_evaluate_run_directory_point_in_original_pixels(point_run):
    from train.evaluate import evaluate

    run, train_dir, val_dir = point_run
    m = evaluate(run, val_dir, return_predictions=True)
    assert m["n"] == 12 and m["task"] == "point" and m["model_kind"] == "keras"
    # The centroid model is exact up to the 80x48 -> 32x32 resize: ~1 px at most.
    assert m["mean_error_px"] < 1.5
    assert m["pck@0.05"] == 1.0
    assert m["mean_error_pct_width"] == pytest.approx(100 * m["mean_error_px"] / 80, rel=0.3)
    # baseline: the TRAINING mean, read back through config.json
    assert m["baseline_source"] == "training data"
    assert m["baseline_mean_error_px"] > 5 * m["mean_error_px"]
    assert m["beats_baseline"] is True
    preds = m["predictions"]
    assert preds["y_pred"].shape == (12, 1, 2)
    assert preds["image_sizes"].tolist()[0] == [80, 48]
    json.dumps({k: v for k, v in m.items() if k != "predictions"})  # JSON-safe


def test_evaluate_keras_file_with_y_up_labels(tmp_path):
    """--y-up flips the labels; the same exact model must then still score perfectly."""
    from train.evaluate import evaluate

    data = point_data(tmp_path / "data", n=6)
    rows = (data / "labels.csv").read_text().splitlines()
    flipped = [rows[0]] + [
        f"{r.split(',')[0]},{r.split(',')[1]},{1 - float(r.split(',')[2]):.5f}" for r in rows[1:]
    ]
    (data / "labels.csv").write_text("\n".join(flipped) + "\n")
    # static batch of 1 (as exported for the Edge TPU): the evaluator must cope
    path = save_model(centroid_model(batch_size=1), POINT, tmp_path / "m")
    good = evaluate(path, data, y_up=True)
    bad = evaluate(path, data, y_up=False)
    assert good["mean_error_px"] < 1.5
    assert bad["mean_error_px"] > 5
    assert good["baseline_source"] == "evaluation data"


def test_evaluate_value_and_class_models(tmp_path):
    from train.evaluate import evaluate, evaluate_model
    from train.metrics import verdict

    vals = [90.0, 120.0, 150.0, 200.0, 260.0, 340.0]
    vpath = save_model(red_level_model(), VALUE, tmp_path / "v")
    m = evaluate(vpath, value_data(tmp_path / "vd", vals))
    assert m["rmse"] < 1.0 and m["r2"] > 0.999 and m["baseline_rmse"] > 50
    cpath = save_model(red_vs_blue_model(), CLASS, tmp_path / "c")
    ev = evaluate_model(cpath, class_data(tmp_path / "cd", ["red"] * 7 + ["blue"] * 5))
    assert ev.metrics["accuracy"] == 1.0 and ev.metrics["macro_f1"] == 1.0
    assert ev.metrics["baseline_accuracy"] == pytest.approx(7 / 12)
    assert ev.metrics["confusion_matrix"] == [[7, 0], [0, 5]]
    assert verdict(ev.spec, ev.metrics) is None


def test_verdict_for_a_model_that_ignores_the_image(tmp_path):
    from train.evaluate import evaluate_model
    from train.metrics import verdict

    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    dense = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inp, dense(x))
    dense.set_weights([np.zeros((3, 1), np.float32), np.zeros(1, np.float32)])  # always mid
    path = save_model(model, VALUE, tmp_path / "m")
    ev = evaluate_model(path, value_data(tmp_path / "d", [90.0, 100.0, 300.0, 340.0]))
    assert ev.metrics["beats_baseline"] is False
    assert "NOT clearly better" in (verdict(ev.spec, ev.metrics) or "")


def test_tta_needs_invariances_and_averages_over_them(tmp_path):
    from train.evaluate import evaluate

    # A model that only looks at the LEFT half; images: left half at level a, right at b.
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Cropping2D(((0, 0), (0, SIZE // 2)))(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(1)
    model = keras.Model(inp, dense(x))
    dense.set_weights([np.array([[1 / 255], [0], [0]], np.float32), np.zeros(1, np.float32)])
    path = save_model(model, VALUE, tmp_path / "m")
    data = tmp_path / "d"
    data.mkdir()
    rows = ["image,value"]
    for i, (a, b) in enumerate([(0, 255), (51, 153), (255, 0), (102, 102), (204, 0)]):
        img = np.zeros((40, 40, 3), np.uint8)
        img[:, :20, 2], img[:, 20:, 2] = a, b
        cv2.imwrite(str(data / f"{i}.png"), img)
        rows.append(f"{i}.png,{80 + (a + b) / 2 / 255 * 270:.4f}")  # label = mean of halves
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(SpecError, match="invariances"):
        evaluate(path, data, tta=True)
    inv = ModelSpec.from_dict({**VALUE.to_dict(), "invariances": ["hflip"]})
    (tmp_path / "m" / "spec.json").write_text(inv.to_json())
    plain = evaluate(path, data)
    tta = evaluate(path, data, tta=True)
    assert plain["rmse"] > 50  # sees one half only
    assert tta["tta"] is True and tta["rmse"] < 1.0  # hflip average sees both halves


def test_lambda_model_is_refused_with_safe_mode_on(tmp_path):
    from train.evaluate import evaluate

    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="sigmoid")(x)
    path = save_model(keras.Model(inp, out), POINT, tmp_path / "lam")
    data = point_data(tmp_path / "d", n=2)
    with pytest.raises(ModelFileError, match="Lambda"):
        evaluate(path, data)


def test_bad_model_files_are_clear_errors(tmp_path):
    from train.evaluate import evaluate

    data = point_data(tmp_path / "d", n=2)
    junk = tmp_path / "junk" / "model.keras"
    junk.parent.mkdir()
    junk.write_bytes(b"not a zip")
    (junk.parent / "spec.json").write_text(POINT.to_json())
    with pytest.raises(ModelFileError, match="not a Keras 3 model"):
        evaluate(junk, data)
    with pytest.raises(ModelFileError, match="no such model"):
        evaluate(tmp_path / "missing.keras", data)
    with pytest.raises(ModelFileError, match="run directory needs model.keras"):
        evaluate(tmp_path / "d", data)
    lone = tmp_path / "lone" / "m.keras"
    lone.parent.mkdir()
    centroid_model().save(lone)
    with pytest.raises(SpecError, match="spec.json"):
        evaluate(lone, data)
    with pytest.raises(SpecError, match="--task"):
        evaluate(junk.parent, data, task="value")
    wrong = ModelSpec(task="point", input_height=16, input_width=16, num_keypoints=1)
    (lone.parent / "spec.json").write_text(wrong.to_json())
    with pytest.raises(SpecError, match="16x16"):
        evaluate(lone, data)


# --------------------------------------------------------------------------- TFLite
def test_evaluate_tflite_through_the_device_runtime(tmp_path, point_run):
    pytest.importorskip(
        "edge_runtime.predictor", reason="edge_runtime.predictor (device runtime) not landed yet"
    )
    import tensorflow as tf

    from edge_runtime.metadata import embed_spec
    from train.evaluate import evaluate

    run, _, val_dir = point_run
    model = centroid_model(batch_size=1)
    export = tmp_path / "export"
    model.export(str(export), verbose=False)
    data = tf.lite.TFLiteConverter.from_saved_model(str(export)).convert()
    loose = tmp_path / "point.tflite"
    loose.write_bytes(embed_spec(data, POINT))
    m = evaluate(loose, val_dir)
    assert m["model_kind"] == "tflite" and m["n"] == 12
    assert m["mean_error_px"] < 1.5 and m["pck@0.05"] == 1.0
    assert m["baseline_source"] == "evaluation data"
    k = evaluate(run, val_dir)
    assert m["mean_error_px"] == pytest.approx(k["mean_error_px"], abs=0.05)
    # inside runs/NAME/export/, the run's config and training baseline are used
    in_run = run / "export" / "point.tflite"
    in_run.parent.mkdir(exist_ok=True)
    in_run.write_bytes(loose.read_bytes())
    r = evaluate(in_run, val_dir)
    assert r["baseline_source"] == "training data"
    assert r["baseline_mean_error_px"] == pytest.approx(k["baseline_mean_error_px"])


# --------------------------------------------------------------------------- CLI
def test_eval_cli_prints_table_and_writes_json(run_cli, point_run, tmp_path):
    run, _, val_dir = point_run
    out = tmp_path / "m.json"
    r = run_cli("eval", run, val_dir, "--json", out, "--plots", tmp_path / "plots")
    assert r.returncode == 0, r.stderr
    assert "baseline" in r.stdout and "mean_error_px" in r.stdout
    assert "NOT clearly better" not in r.stdout
    m = json.loads(out.read_text())
    for key in (
        "mean_error_px",
        "mean_error_pct_width",
        "pck@0.05",
        "baseline_mean_error_px",
        "baseline_pck@0.05",
        "n",
    ):
        assert key in m
    for name in ("pred_vs_true", "error_hist", "examples"):
        img = cv2.imread(str(tmp_path / "plots" / f"{name}.png"))
        assert img is not None and img.size > 0


def test_eval_cli_lambda_model_exit_code(run_cli, tmp_path):
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    save_model(keras.Model(inp, out), POINT, tmp_path / "lam")
    data = point_data(tmp_path / "d", n=2)
    r = run_cli("eval", tmp_path / "lam", data)
    assert r.returncode == ModelFileError.exit_code
    last = r.stderr.strip().splitlines()[-1]  # TensorFlow may log above it
    assert last.startswith("error:") and "Lambda" in last
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------- plots
def _decodes(path: Path) -> None:
    assert path.stat().st_size > 1000
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 100


@pytest.mark.parametrize("spec", [POINT, VALUE, CLASS], ids=lambda s: s.task)
def test_plots_write_png_that_decode(tmp_path, spec):
    from train.plots import plot_error_hist, plot_examples, plot_pred_vs_true

    rng = np.random.default_rng(0)
    n = 10
    if spec.task == "point":
        yt = rng.uniform(0.1, 0.9, (n, 1, 2))
        yp = yt + rng.normal(0, 0.02, yt.shape)
    elif spec.task == "value":
        yt = rng.uniform(80, 350, n)
        yp = yt + rng.normal(0, 5, n)
    else:
        yt = rng.integers(0, 2, n)
        yp = rng.dirichlet([1, 1], n)
    imgs = [rng.integers(0, 255, (30, 50, 3), dtype=np.uint8) for _ in range(n)]
    for f, args in (
        (plot_pred_vs_true, (spec, yt, yp)),
        (plot_error_hist, (spec, yt, yp)),
        (plot_examples, (spec, imgs, yt, yp)),
    ):
        out = tmp_path / f"{f.__name__}.png"
        assert f(*args, out) == out
        _decodes(out)
    assert not list(tmp_path.glob(".*tmp*")), "temp files left behind"


def test_plot_history_with_phases(tmp_path):
    from train.plots import plot_history

    csv_path = tmp_path / "history.csv"
    lines = ["epoch,phase,loss,val_loss,val_rmse,lr"]
    lines += [
        f"{e},{'head' if e < 4 else 'finetune'},{1 / e},{1.2 / e},{9 / e},0.001"
        for e in range(1, 9)
    ]
    csv_path.write_text("\n".join(lines) + "\n")
    out = plot_history(csv_path, tmp_path / "plots" / "history.png")
    _decodes(out)


def test_nan_predictions_give_null_metrics_and_a_verdict(tmp_path):
    from train.evaluate import evaluate_model
    from train.metrics import verdict

    model = red_level_model()
    model.layers[-1].set_weights([np.full((3, 1), np.nan, np.float32), np.zeros(1, np.float32)])
    path = save_model(model, VALUE, tmp_path / "m")
    ev = evaluate_model(path, value_data(tmp_path / "d", [100.0, 200.0, 300.0]))
    assert ev.metrics["rmse"] is None and ev.metrics["beats_baseline"] is False
    json.dumps(ev.metrics, allow_nan=False)  # strict JSON
    assert verdict(ev.spec, ev.metrics) is not None
