"""Real-world keypoint labels: missing keypoints are masked out of the loss, and a short
real run on sample data with corners outside the frame and hidden corners trains, scores
and saves a model that loads in safe mode."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from train.tasks._coordinates import HUBER_DELTA, masked_huber


def _np(t) -> np.ndarray:
    return np.asarray(t, np.float64)


def test_masked_huber_equals_huber_without_missing_points() -> None:
    import keras

    rng = np.random.default_rng(0)
    yt = rng.uniform(0, 1, (6, 8)).astype(np.float32)
    yp = (yt + rng.normal(0, 0.05, yt.shape)).astype(np.float32)
    ours = float(_np(masked_huber()(yt, yp)))
    ref = float(_np(keras.losses.Huber(delta=HUBER_DELTA)(yt, yp)))
    assert ours == pytest.approx(ref, rel=1e-5)


def test_masked_huber_ignores_missing_coordinates_in_value_and_gradient() -> None:
    import tensorflow as tf

    yt = np.array([[0.2, 0.3, np.nan, np.nan], [0.5, 0.5, 0.9, 0.1]], np.float32)
    yp = tf.Variable([[0.2, 0.35, 5.0, -5.0], [0.5, 0.5, 0.9, 0.1]], dtype=tf.float32)
    loss = masked_huber()
    with tf.GradientTape() as tape:
        value = loss(yt, yp)
    grad = _np(tape.gradient(value, yp))
    # one coordinate is off by 0.05 (> delta): delta * (0.05 - delta / 2); mean over the 6 given
    want = HUBER_DELTA * (0.05 - HUBER_DELTA / 2) / 6
    assert float(_np(value)) == pytest.approx(want, rel=1e-5)
    assert np.all(np.isfinite(grad))
    assert np.all(grad[0, 2:] == 0.0), "a missing keypoint must not pull the prediction"
    assert grad[0, 1] == pytest.approx(HUBER_DELTA / 6, rel=1e-5)
    # all missing: zero, not NaN
    assert float(_np(loss(np.full((1, 4), np.nan, np.float32), yp[:1]))) == 0.0


def test_the_loss_round_trips_through_keras_serialization() -> None:
    import keras

    loss = masked_huber(0.05)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again).__name__ == "MaskedHuber" and again.delta == 0.05


@pytest.mark.slow
def test_a_run_on_corners_outside_and_hidden_trains_and_loads_in_safe_mode(tmp_path: Path):
    import keras

    import train.models  # noqa: F401
    from edge_runtime.spec import ModelSpec
    from train.dataset import check_dataset
    from train.samples import make_samples
    from train.training import train

    data = make_samples(
        tmp_path / "kp", "keypoints", n=16, n_val=8, options={"outside": 0.3, "occluded": 0.3}
    )
    stats = check_dataset(data / "train", "keypoints").stats
    assert sum(stats["missing"].values()) == 5 and sum(stats["outside_frame"].values()) >= 5
    out = train(
        data / "train",
        "keypoints",
        tmp_path / "run",
        val_dir=str(data / "val"),
        epochs=1,
        batch_size=8,
        verbose=False,
        input_size=32,
        alpha=0.35,
        weights="none",
    )
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(np.isfinite(float(r["loss"])) and np.isfinite(float(r["val_loss"])) for r in rows)
    metrics = json.loads((out / "metrics.json").read_text())
    for k in ("mean_error_px", "pck@0.05", "baseline_mean_error_px"):
        assert np.isfinite(metrics[k]), k
    assert {"pred_vs_true.png", "examples.png", "error_hist.png"} <= {
        p.name for p in (out / "plots").glob("*.png")
    }
    # the deployable model carries no loss: it loads with safe mode on, no custom objects
    model = keras.saving.load_model(out / "model.keras", safe_mode=True, compile=True)
    spec = ModelSpec.from_json((out / "spec.json").read_text())
    y = np.asarray(model(np.zeros((1, 32, 32, 3), np.float32)))
    assert y.shape == (1, spec.output_size)


def test_device_bounds_points_to_the_margin_says_inside_and_draws_outside_points() -> None:
    """The device decoder: predictions bounded to [-0.25, 1.25], ``inside`` per point
    (after the ROI is undone), and drawing a point beyond the frame does not crash: it is
    a ring on the border."""
    from edge_runtime.draw import annotate
    from edge_runtime.postprocess import decode_result
    from edge_runtime.spec import ModelSpec

    spec = ModelSpec(task="keypoints", input_height=32, input_width=32, num_keypoints=3)
    raw = np.array([0.5, 0.5, 1.1, -0.05, 7.0, -9.0], np.float32)
    res = decode_result(spec, raw, 100, 80)
    np.testing.assert_allclose(res.points, [[0.5, 0.5], [1.1, -0.05], [1.25, -0.25]], atol=1e-6)
    assert res.inside == [True, False, False]
    assert res.to_dict()["inside"] == [True, False, False]
    # an ROI at the right edge: a point inside the ROI's margin lands outside the frame
    roi = decode_result(
        spec, np.array([0.5, 0.5, 1.2, 0.5, 0.1, 0.1], np.float32), 100, 80, roi=(50, 0, 50, 80)
    )
    assert roi.inside == [True, False, True]
    img = annotate(np.zeros((80, 100, 3), np.uint8), res, spec)
    assert img[:6, 90:].any(), "the point past the top-right corner is drawn on the border"
