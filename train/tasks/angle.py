"""``angle`` on the workstation: which way something points, in degrees (a gauge needle).

Labels: ``image,angle`` in degrees. By default 0 is UP (12 o'clock) and angles grow
CLOCKWISE, like a clock or a compass; ``--zero right|down|left|DEG`` moves the zero and
``--counterclockwise`` turns the direction round (``--zero right --counterclockwise`` is
the maths convention). The model answers in the same convention.

``--gauge A0 A1 V0 V1 --units bar`` maps the angle to a dial's reading: the dial reads V0
at angle A0 and V1 at A1, sweeping from A0 in the direction angles grow (225 -> 135
clockwise is a 270-degree sweep through the top). Results then carry the reading too.

The model outputs (sin, cos) of the image direction (no wrap-around at 0/360) from a
linear layer on the stride-16 map; the loss is a Huber loss on both, which is wrap-aware;
metrics are wrap-aware (359 and 1 degrees are 2 degrees apart). Augmentation turns the
label with the image: a rotation by t adds t, a mirror flips its sign (see
train/augment.py, target ``direction``). The device half is edge_runtime/tasks/angle.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_runtime.errors import OptionError, SpecError
from edge_runtime.tasks.angle import (
    check_gauge,
    from_image,
    gauge_reading,
    parse_zero,
    to_image,
)

from . import register
from ._common import COMMON_CHECKLIST, PRED_COLOR, TRUE_COLOR, UNITS, as_values, histogram
from .base import (
    AugmentPolicy,
    BaselineRule,
    ImportRule,
    LabelColumns,
    SampleSet,
    TaskOption,
    TrainTask,
    one_column,
    parse_number,
)

if TYPE_CHECKING:  # pragma: no cover
    from edge_runtime.spec import ModelSpec

#: Channels of the 1x1 conv before flattening, and the dense layer's width.
HEAD_CHANNELS = 64
HEAD_UNITS = 256
#: The image transforms training augments with (the label turns with them); recorded in
#: the spec so test-time augmentation may average over them.
LEARNT_TRANSFORMS = ("hflip", "rot90", "rotate")
#: (train, val) sample images by default.
SAMPLE_COUNTS = (1000, 300)
#: The share of predictions within these errors is reported.
WITHIN_DEG = (2.0, 5.0)


def _zero(v: Any) -> float:
    try:
        return parse_zero(v)
    except SpecError as e:
        raise OptionError(f"--zero: {e}") from None


def _gauge(v: Any) -> list[float]:
    vals = [parse_number(x, "--gauge") for x in v]
    try:
        check_gauge(vals)
    except SpecError as e:
        raise OptionError(f"--{e}") from None
    return vals


ZERO = TaskOption(
    "zero",
    "--zero",
    "Where the labels' 0 degrees points: up (default), right, down, left, or degrees "
    "clockwise from up.",
    metavar="DIR",
    default=0.0,
    labels=True,
    parse=_zero,
)
COUNTERCLOCKWISE = TaskOption(
    "counterclockwise",
    "--counterclockwise",
    "The labels' angles grow counter-clockwise (default: clockwise, like a clock).",
    is_flag=True,
    default=False,
    labels=True,
    off_flag="--clockwise",
)
GAUGE = TaskOption(
    "gauge",
    "--gauge",
    "A dial's scale: it reads V0 at angle A0 and V1 at A1, sweeping the way angles grow "
    "(e.g. 225 135 0 10 for 0-10 over 270 degrees through the top); results add the reading.",
    type=float,
    nargs=4,
    metavar="A0 A1 V0 V1",
    parse=_gauge,
)


class AngleTrainTask(TrainTask):
    name = "angle"
    options = (ZERO, COUNTERCLOCKWISE, GAUGE, UNITS)
    default_input_size = 160
    default_steps = 2400
    max_default_epochs = 120
    trunk = "stride16"
    metric_keys = (
        "mean_error_deg",
        "median_error_deg",
        "within_2deg",
        "within_5deg",
        "mean_error_reading",
    )
    primary_metric = ("mean_error_deg", False)
    demo_train_args = ("--gauge", "225", "135", "0", "10", "--units", "bar")
    bench_bar = "mean angular error ≤ 1.5°"
    bench_metrics = ("mean_error_deg", "within_2deg", "mean_error_reading")
    handrolled = "vgg_degrees"
    examples_legend = "green = true, red = predicted needle direction"
    import_rule = ImportRule("number")

    def import_header(self, num_points: int) -> list[str]:
        return ["angle"]

    # ----------------------------------------------------------------- labels
    def label_columns(self, header: list[str], opts: Mapping[str, Any]) -> LabelColumns:
        return one_column(header, "angle", "an angle", " in degrees")

    def make_target(self, raw, width, height, cols, opts, vocabulary):
        return np.asarray(float(raw[0]) % 360.0, dtype=np.float32), []

    def describe(self, targets, vocabulary, target_name):
        a = np.asarray(targets, np.float64)
        mean, spread = circular_mean(a), circular_spread(a)
        stats = {"target": {"circular_mean": mean, "circular_std_deg": spread}}
        lines = [
            f"{target_name} (degrees): circular mean {mean:.1f}, spread {spread:.1f} "
            f"(min {a.min():.1f}, max {a.max():.1f})",
            "histogram:",
            *(f"  {h}" for h in histogram(a)),
        ]
        warnings = []
        if len(a) > 1 and spread < 1e-3:
            warnings.append("every label is the same angle: nothing to learn")
        return stats, lines, warnings

    # ----------------------------------------------------------------- the model
    def spec_fields(self, opts, ds, train_targets) -> dict[str, Any]:
        params: dict[str, Any] = {
            "zero_deg": float(opts.get("zero") or 0.0),
            "clockwise": not opts.get("counterclockwise"),
            "tta": list(LEARNT_TRANSFORMS),
        }
        if opts.get("gauge") is not None:
            params["gauge"] = [float(v) for v in opts["gauge"]]
        return {"params": params, "units": opts.get("units") or ""}

    def training_target(self, spec: ModelSpec, y: np.ndarray) -> np.ndarray:
        t = np.radians(to_image(np.asarray(y, np.float64), spec.params))
        return np.stack([np.sin(t), np.cos(t)], axis=-1).reshape(len(y), 2).astype(np.float32)

    def build_head(self, spec: ModelSpec, features: Any, dropout: float) -> Any:
        """Where the needle is matters: a 1x1 conv, the map flattened, dense layers, and a
        linear (sin, cos) output starting at zero."""
        import keras

        x = keras.layers.Conv2D(HEAD_CHANNELS, 1, activation="relu", name="head_reduce")(features)
        x = keras.layers.Flatten(name="head_flatten")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        x = keras.layers.Dense(HEAD_UNITS, activation="relu", name="head_dense")(x)
        return keras.layers.Dense(
            2,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="output",
        )(x)

    # ----------------------------------------------------------------- metrics
    def compute_metrics(self, spec, y_true, y_pred, image_sizes, train_targets):
        yt = as_values(y_true, "y_true")
        yp = as_values(y_pred, "y_pred")
        if len(yt) != len(yp):
            raise ValueError(f"y_true has {len(yt)} samples but y_pred has {len(yp)}")
        ref = yt if train_targets is None else as_values(train_targets, "train_targets")
        base = np.full_like(yt, circular_mean(ref) if ref.size else np.nan)
        gauge = spec.params.get("gauge")
        return _angle_metrics(yt, yp, gauge), _angle_metrics(yt, base, gauge)

    def baseline_rule(self, spec, metrics=None) -> BaselineRule:
        return BaselineRule("mean_error_deg", what="always answering the training mean direction")

    def checklist(self) -> list[str]:
        return [
            "the angle convention: 0 is up and angles grow clockwise unless --zero / "
            "--counterclockwise say otherwise; a label in the wrong convention is a mirror "
            "or a turn of the truth (look at plots/examples.png: green is the truth)",
            "the labels measure the direction IN THE IMAGE (pivot to tip), with the camera "
            "square to the dial",
            "the needle is visible and not cut off by the frame; glare hides it: light the "
            "dial from the side",
            *COMMON_CHECKLIST,
        ]

    def sanity_error(self, spec, y, pred):
        e = float(np.mean(angular_error(np.asarray(pred), np.asarray(y))))
        return e, e <= 3.0, "mean angular error (degrees)"

    def disagreement(self, spec, raw, ref, image_sizes):
        d = angular_error(spec.decode_output(raw), spec.decode_output(ref))
        return {"max_deg": float(d.max()), "mean_deg": float(d.mean())}

    # ----------------------------------------------------------------- augmentation
    def augment_policy(self, spec: ModelSpec) -> AugmentPolicy:
        """The label turns with the image: mirrors, quarter turns and any rotation, a mild
        warp, full photometry with glare (shiny dials)."""
        learnt = set(spec.params.get("tta", []))
        return AugmentPolicy(
            target="direction",
            hflip="hflip" in learnt,
            vflip="vflip" in learnt,
            rot90="rot90" in learnt,
            rotate="rotate" in learnt,
            warp=True,
            glare=True,
        )

    def to_geometry(self, spec: ModelSpec, target: np.ndarray) -> np.ndarray:
        return to_image(np.asarray(target, np.float64), spec.params)

    def from_geometry(self, spec: ModelSpec, geometry: np.ndarray) -> np.ndarray:
        return from_image(np.asarray(geometry, np.float64), spec.params)

    # ----------------------------------------------------------------- plots
    def plot_pred_vs_true(self, spec, y_true, y_pred, plt):
        yt = np.asarray(y_true, float).reshape(-1)
        # each prediction shown within 180 degrees of its truth: no jumps at the wrap
        yp = yt + signed_angular_error(np.asarray(y_pred, float).reshape(-1), yt)
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        ax.plot([0, 360], [0, 360], color="gray", linewidth=1, label="y = x")
        ax.scatter(yt, yp, s=12, alpha=0.6, color=PRED_COLOR, label="predictions")
        ax.set_xlim(0, 360)
        ax.set_ylim(-30, 390)
        ax.set_xticks(range(0, 361, 45))
        ax.set_xlabel("true angle (degrees)")
        ax.set_ylabel("predicted angle (degrees, unwrapped near the truth)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title(f"Predicted vs true (n={len(yt)})")
        return fig

    def plot_errors(self, spec, y_true, y_pred, image_sizes, ax):
        from train.plots import bins

        err = signed_angular_error(np.asarray(y_pred, float), np.asarray(y_true, float))
        err = err.reshape(-1)
        ax.hist(err[np.isfinite(err)], bins=bins(err), color=PRED_COLOR, alpha=0.8)
        ax.axvline(0.0, color="gray", linewidth=1)
        mean = float(np.mean(np.abs(err))) if err.size else float("nan")
        ax.set_xlabel(f"predicted - true angle (degrees; mean |error| {mean:.2f})")
        ax.set_ylabel("count")

    example_error_name = "angular error"

    def example_errors(self, spec: ModelSpec, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        t = np.asarray(y_true, np.float64).reshape(-1)
        return np.asarray(angular_error(np.asarray(y_pred, np.float64).reshape(-1), t))

    def plot_example(self, spec, ax, image, truth, pred):
        h, w = image.shape[:2]
        cx, cy, r = w / 2.0, h / 2.0, 0.42 * min(w, h)
        for value, color, width in ((truth, TRUE_COLOR, 3.5), (pred, PRED_COLOR, 2.0)):
            t = math.radians(float(to_image(float(np.asarray(value)), spec.params)))
            ax.annotate(
                "",
                xy=(cx + r * math.sin(t), cy - r * math.cos(t)),
                xytext=(cx, cy),
                arrowprops={"arrowstyle": "->", "color": color, "lw": width},
            )
        e = float(angular_error(np.asarray(pred, float), np.asarray(truth, float)))
        ax.set_title(f"true {float(truth):.1f}, pred {float(pred):.1f} ({e:.1f}°)", fontsize=9)

    def samples(self) -> SampleSet:
        from train import gauges

        return SampleSet(
            counts=SAMPLE_COUNTS,
            size=gauges.GAUGE_SIZE,
            params=gauges.gauge_params,
            render=gauges.render_gauge,
            label=gauges.gauge_label,
            header="image,angle",
            label_text=lambda a: f"{a:.3f}",
            description="analog gauge needle (0-10 bar over 225->135 degrees)",
        )


# --------------------------------------------------------------------------- angle maths
def signed_angular_error(pred: Any, truth: Any) -> np.ndarray:
    """pred - truth in degrees, wrapped to [-180, 180)."""
    d = np.asarray(pred, np.float64) - np.asarray(truth, np.float64)
    return (d + 180.0) % 360.0 - 180.0


def angular_error(pred: Any, truth: Any) -> np.ndarray:
    """|pred - truth| in degrees on the circle (0..180)."""
    return np.abs(signed_angular_error(pred, truth))


def circular_mean(deg: Sequence[float] | np.ndarray) -> float:
    """The mean direction of angles in degrees, in [0, 360)."""
    t = np.radians(np.asarray(deg, np.float64))
    return float(np.degrees(np.arctan2(np.sin(t).mean(), np.cos(t).mean())) % 360.0)


def circular_spread(deg: Sequence[float] | np.ndarray) -> float:
    """The circular standard deviation in degrees (0 when all angles agree)."""
    t = np.radians(np.asarray(deg, np.float64))
    r = float(np.hypot(np.sin(t).mean(), np.cos(t).mean()))
    return float(np.degrees(math.sqrt(max(0.0, -2.0 * math.log(max(r, 1e-12))))))


def _angle_metrics(yt: np.ndarray, yp: np.ndarray, gauge: Sequence[float] | None) -> dict:
    if yt.size == 0:
        return {k: None for k in AngleTrainTask.metric_keys}
    err = angular_error(yp, yt)
    out: dict[str, Any] = {
        "mean_error_deg": float(err.mean()),
        "median_error_deg": float(np.median(err)),
        "within_2deg": float((err <= WITHIN_DEG[0]).mean()),
        "within_5deg": float((err <= WITHIN_DEG[1]).mean()),
    }
    if gauge is not None:
        reading = np.abs(gauge_reading(yp, gauge) - gauge_reading(yt, gauge))
        out["mean_error_reading"] = float(reading.mean())
    return out


TASK = register(AngleTrainTask())
