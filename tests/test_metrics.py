"""Metrics in the user's units, baselines and the verdict, on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_runtime.spec import ModelSpec
from train.metrics import compute_metrics, format_table, primary_metric, verdict

POINT = ModelSpec(task="point", input_height=32, input_width=32, num_keypoints=1)
KP2 = ModelSpec(task="keypoints", input_height=32, input_width=64, num_keypoints=2)
VALUE = ModelSpec(task="value", input_height=32, input_width=32, value_range=(80.0, 350.0))
CLASS3 = ModelSpec(task="class", input_height=32, input_width=32, class_names=("a", "b", "c"))


def test_point_pixels_use_each_original_image_size():
    # Two non-square images: 200x100 and 100x400 (width, height).
    yt = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])
    yp = np.array([[[0.53, 0.54]], [[0.5, 0.5]]])  # dx=0.03*200=6 px, dy=0.04*100=4 px
    sizes = np.array([[200, 100], [100, 400]])
    m = compute_metrics(POINT, yt, yp, image_sizes=sizes)
    err0 = math.hypot(6.0, 4.0)
    assert m["n"] == 2
    assert m["mean_error_px"] == pytest.approx(err0 / 2)
    assert m["median_error_px"] == pytest.approx(err0 / 2)
    # % of each image's own width: 100*err0/200 and 0.
    assert m["mean_error_pct_width"] == pytest.approx((100 * err0 / 200) / 2)
    # normalized distance 0.05 exactly -> counted as within.
    assert m["pck@0.05"] == pytest.approx(1.0)


def test_point_without_sizes_uses_model_input_size():
    yt = np.array([[[0.0, 0.0]]])
    yp = np.array([[[0.25, 0.0]]])
    m = compute_metrics(POINT, yt, yp)
    assert m["mean_error_px"] == pytest.approx(0.25 * 32)
    assert m["mean_error_pct_width"] == pytest.approx(25.0)


def test_pck_threshold_and_keypoints_flat_input():
    yt = np.zeros((2, 2, 2))
    # distances: 0.049, 0.051 (sample 0), 0.0, 0.3 (sample 1)
    yp = np.array([[[0.049, 0.0], [0.0, 0.051]], [[0.0, 0.0], [0.3, 0.0]]])
    m = compute_metrics(KP2, yt, yp.reshape(2, 4))  # flat (N, 2K) accepted too
    assert m["pck@0.05"] == pytest.approx(0.5)
    # model input is 64 wide x 32 high
    px = [0.049 * 64, 0.051 * 32, 0.0, 0.3 * 64]
    assert m["mean_error_px"] == pytest.approx(np.mean(px))


def test_point_baseline_is_training_mean():
    yt = np.array([[[0.2, 0.2]], [[0.4, 0.4]]])
    train = np.array([[[0.5, 0.5]], [[0.5, 0.5]], [[0.5, 0.5]]])
    m = compute_metrics(POINT, yt, yt, train_targets=train)
    assert m["mean_error_px"] == 0.0 and m["pck@0.05"] == 1.0
    d0, d1 = math.hypot(0.3, 0.3), math.hypot(0.1, 0.1)
    assert m["baseline_mean_error_px"] == pytest.approx(32 * (d0 + d1) / 2)
    assert m["baseline_pck@0.05"] == 0.0
    # without train targets the baseline is the evaluation mean (0.3, 0.3)
    m2 = compute_metrics(POINT, yt, yt)
    assert m2["baseline_mean_error_px"] == pytest.approx(32 * math.hypot(0.1, 0.1))


def test_missing_keypoints_are_left_out_of_metrics_and_baseline():
    nan = np.nan
    yt = np.array([[[0.1, 0.1], [nan, nan]], [[0.5, 0.5], [0.25, 0.5]]])
    # a wild prediction for the missing keypoint must not count
    yp = np.array([[[0.1, 0.1], [0.9, 0.9]], [[0.5, 0.5 + 2 / 32], [0.25, 0.5]]])
    train = np.array([[[0.2, 0.2], [nan, nan]], [[0.4, 0.2], [0.25, 0.5]]])
    m = compute_metrics(KP2, yt, yp, train_targets=train)
    # three given points: errors 0, 2 px (0.0625 of the 32 px height), 0
    assert m["mean_error_px"] == pytest.approx(2 / 3)
    assert m["median_error_px"] == 0.0
    assert m["pck@0.05"] == pytest.approx(2 / 3)
    # baseline: keypoint 0's mean over both rows (0.3, 0.2); keypoint 1's over the row
    # that gives it (0.25, 0.5): NaN rows take no part
    d = [math.hypot(0.2 * 64, 0.1 * 32), math.hypot(0.2 * 64, 0.3 * 32), 0.0]
    assert m["baseline_mean_error_px"] == pytest.approx(np.mean(d))
    assert all(math.isfinite(v) for k, v in m.items() if isinstance(v, float))


def test_points_outside_the_frame_are_scored_like_any_other():
    yt = np.array([[[1.1, -0.1]]])
    m = compute_metrics(POINT, yt, np.array([[[1.0, -0.1]]]))
    assert m["mean_error_px"] == pytest.approx(0.1 * 32)


def test_no_given_point_gives_no_metric():
    yt = np.full((1, 2, 2), np.nan)
    m = compute_metrics(KP2, yt, np.zeros((1, 2, 2)))
    assert m["mean_error_px"] is None and m["pck@0.05"] is None


def test_value_metrics_and_r2():
    yt = np.array([100.0, 200.0, 300.0])
    yp = np.array([110.0, 190.0, 300.0])
    m = compute_metrics(VALUE, yt, yp)
    assert m["mae"] == pytest.approx(20 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(200 / 3))
    assert m["r2"] == pytest.approx(1 - 200 / 20000)
    assert m["baseline_r2"] == pytest.approx(0.0)  # the mean of y_true itself
    assert m["baseline_mae"] == pytest.approx(200 / 3)
    # a training mean of 150 -> baseline errors 50, 50, 150
    m2 = compute_metrics(VALUE, yt, yp, train_targets=np.array([100.0, 200.0]))
    assert m2["baseline_mae"] == pytest.approx(250 / 3)
    assert m2["baseline_rmse"] == pytest.approx(math.sqrt((2500 + 2500 + 22500) / 3))
    assert m2["baseline_r2"] == pytest.approx(1 - 27500 / 20000)
    # constant truth: r2 is undefined, reported as None (JSON null), not NaN
    assert compute_metrics(VALUE, [5.0, 5.0], [5.0, 6.0])["r2"] is None


def test_class_metrics_macro_f1_confusion_and_majority_baseline():
    yt = np.array([0, 0, 1, 2])
    probs = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0, 1, 0], [0, 1, 0]])
    m = compute_metrics(CLASS3, yt, probs, train_targets=np.array([2, 2, 1]))
    assert m["accuracy"] == 0.5
    # F1: a = 2*1/(2+1) , b = 2*1/(1+3), c = 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert m["class_names"] == ["a", "b", "c"]
    # majority class of the training targets is "c"
    assert m["baseline_class"] == "c"
    assert m["baseline_accuracy"] == 0.25
    # F1 per class: a = 0, b = 0, c = 2*1/(1+4); all three occur in the truth
    assert m["baseline_macro_f1"] == pytest.approx((0 + 0 + 2 / 5) / 3)
    # integer predictions work the same as probabilities
    m2 = compute_metrics(CLASS3, yt, probs.argmax(1))
    assert m2["accuracy"] == m["accuracy"]


def test_macro_f1_ignores_classes_absent_from_truth_and_predictions():
    m = compute_metrics(CLASS3, [0, 1], [0, 1])
    assert m["macro_f1"] == 1.0


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="y_pred"):
        compute_metrics(POINT, np.zeros((2, 1, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="samples"):
        compute_metrics(VALUE, [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="image_sizes"):
        compute_metrics(POINT, np.zeros((2, 1, 2)), np.zeros((2, 1, 2)), image_sizes=[[1, 1]])
    with pytest.raises(ValueError, match="class indices"):
        compute_metrics(CLASS3, [0, 3], [0, 1])


def test_primary_metric_directions():
    assert primary_metric(POINT) == ("mean_error_px", False)
    assert primary_metric(KP2) == ("mean_error_px", False)
    assert primary_metric(VALUE) == ("rmse", False)
    assert primary_metric(CLASS3) == ("accuracy", True)


def test_verdict_loud_for_a_model_no_better_than_baseline():
    rng = np.random.default_rng(0)
    yt = rng.uniform(80, 350, 50)
    # a "model" that always answers the mean: exactly the stuck-at-the-mean failure
    m = compute_metrics(VALUE, yt, np.full_like(yt, yt.mean()))
    v = verdict(VALUE, m)
    assert v is not None and "NOT clearly better" in v
    assert "--range" in v and "--sanity" in v
    # points: a model that answers the centre whatever the image
    pts = rng.uniform(0.2, 0.8, (40, 1, 2))
    mp = compute_metrics(POINT, pts, np.full_like(pts, 0.5))
    vp = verdict(POINT, mp)
    assert vp is not None and "--y-up" in vp and "--coords pixels" in vp
    # class: stuck on the majority class (the "accuracy 0.3066" story)
    yc = np.array([0] * 7 + [1] * 3)
    mc = compute_metrics(CLASS3, yc, np.zeros(10, dtype=int))
    vc = verdict(CLASS3, mc)
    assert vc is not None and "'a'" in vc


def test_no_verdict_for_a_good_model():
    rng = np.random.default_rng(1)
    yt = rng.uniform(80, 350, 50)
    assert verdict(VALUE, compute_metrics(VALUE, yt, yt + rng.normal(0, 3, 50))) is None
    pts = rng.uniform(0.2, 0.8, (40, 1, 2))
    assert verdict(POINT, compute_metrics(POINT, pts, pts + 0.01)) is None
    yc = np.array([0] * 7 + [1] * 3)
    assert verdict(CLASS3, compute_metrics(CLASS3, yc, yc)) is None


def test_verdict_when_predictions_are_nan():
    yt = np.array([100.0, 200.0, 300.0])
    m = compute_metrics(VALUE, yt, np.full(3, np.nan))
    assert verdict(VALUE, m) is not None


def test_format_table_lists_model_and_baseline():
    m = compute_metrics(VALUE, [100.0, 200.0, 300.0], [110.0, 190.0, 300.0])
    t = format_table(VALUE, m)
    assert "rmse" in t and "baseline" in t and "n = 3" in t
    tc = format_table(CLASS3, compute_metrics(CLASS3, [0, 1, 2], [0, 1, 1]))
    assert "predicted" in tc
