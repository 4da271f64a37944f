"""``value`` on the workstation: one number per image, in the user's units.

Labels: ``image,value`` (or ``--target COLUMN``). The model learns the value normalized
over ``--range LOW HIGH`` (default: the training data's range plus a 5 % margin on each
side); predictions are bounded to the range. Sample data: the user story of
``seeds/001``, wells of a reaction plate whose colour encodes a concentration (80-350);
rotations and mirrors do not change it (``--invariant rot90,flip``).
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge_runtime.errors import OptionError
from train.samples import _finish, _grid, _lighting, _noise, _paste, _photo_params

from . import register
from ._common import (
    COMMON_CHECKLIST,
    PRED_COLOR,
    TRUE_COLOR,
    UNITS,
    as_values,
    histogram,
    linear_output,
    value_metrics,
)
from .base import (
    AugmentPolicy,
    HeaderProblem,
    ImportRule,
    LabelColumns,
    Params,
    SampleSet,
    TaskOption,
    TrainTask,
    exact,
    parse_number,
)

if TYPE_CHECKING:  # pragma: no cover
    from edge_runtime.spec import ModelSpec

SAMPLE_SIZE = (250, 250)
SAMPLE_COUNTS = (5000, 1000)
SAMPLE_RANGE = (80.0, 350.0)
#: Width of the dense layer of the head.
HEAD_UNITS = 128
#: Margin added on each side of the data's range when --range is not given.
RANGE_MARGIN = 0.05


def _range(v: Any) -> list[float]:
    lo, hi = (parse_number(x, "--range") for x in v)
    if not hi > lo:
        raise OptionError(f"--range: HIGH must be above LOW, got {exact(lo)} {exact(hi)}")
    return [lo, hi]


RANGE = TaskOption(
    "value_range",
    "--range",
    "LOW HIGH of the target in your units (default: data range + 5 % margin).",
    type=float,
    nargs=2,
    metavar="LOW HIGH",
    parse=_range,
)
TARGET = TaskOption(
    "target",
    "--target",
    "The labels.csv column to learn (default: value).",
    metavar="COLUMN",
    labels=True,
)


class ValueTrainTask(TrainTask):
    name = "value"
    options = (TARGET, RANGE, UNITS)
    default_input_size = 96
    metric_keys = ("mae", "rmse", "r2")
    primary_metric = ("rmse", False)
    demo_train_args = ("--range", "80", "350", "--invariant", "rot90,flip")
    #: The story's default is 5,000 images; the demo keeps to its time budget with fewer.
    demo_sample_args = ("--n", "1500", "--n-val", "300")
    bench_bar = "RMSE ≤ 4 units"
    bench_metrics = ("rmse", "mae", "r2")
    handrolled = "vgg_value"
    import_rule = ImportRule("number")

    def import_header(self, num_points: int) -> list[str]:
        return ["value"]

    # ----------------------------------------------------------------- labels
    def label_columns(self, header: list[str], opts: Mapping[str, Any]) -> LabelColumns:
        lc = [h.lower() for h in header]
        given = opts.get("target")
        want = (given or "value").strip().lower()
        others = [h for h in header if h.lower() != "image"]
        if want == "image":
            raise HeaderProblem(
                f"--target {given}: that is the image path column; name the column that "
                f"holds the numbers ({', '.join(others) or 'none here'})",
                "image",
            )
        if want not in lc:
            if given:
                msg = (
                    f"--target {given}: labels.csv has no column {given!r} (its header is "
                    f"'{','.join(header)}'); give one of: {', '.join(others) or 'none'}"
                )
            else:
                msg = (
                    f"missing header column 'value' (header is '{','.join(header)}'); a value "
                    "CSV needs image,value, or --target COLUMN to learn another column"
                    + (f" (here: {', '.join(others)})" if others else "")
                )
            raise HeaderProblem(msg, want)
        i = lc.index(want)
        return LabelColumns([i], [header[i]], header[i])

    def label_options_from_spec(self, spec: ModelSpec, data_dir: Any) -> dict[str, Any]:
        """The spec's target column, when labels.csv has a column of that name."""
        name = spec.target_name
        if not name or name == "value":
            return {}
        from train.dataset import read_header

        header = read_header(Path(data_dir) / "labels.csv")
        return {"target": name} if name.lower() in (h.strip().lower() for h in header) else {}

    def make_target(self, raw, width, height, cols, opts, vocabulary):
        return np.asarray(raw[0], dtype=np.float32), []

    def describe(
        self, targets: np.ndarray, vocabulary: tuple[str, ...], target_name: str
    ) -> tuple[dict[str, Any], list[str], list[str]]:
        v = np.asarray(targets, np.float64)
        stats = {
            "name": target_name,
            "min": float(v.min()),
            "max": float(v.max()),
            "mean": float(v.mean()),
            "std": float(v.std()),
        }
        lines = [
            f"{target_name}: min {v.min():.4g}, max {v.max():.4g}, mean {v.mean():.4g}, "
            f"std {v.std():.4g}",
            "histogram:",
            *(f"  {h}" for h in histogram(v)),
        ]
        warnings = []
        if len(v) > 1 and float(v.max()) == float(v.min()):
            warnings.append(
                f"every {target_name} is {exact(float(v[0]))}: one value only, nothing to "
                "learn (is --target the column you mean?)"
            )
        return {"target": stats}, lines, warnings

    # ----------------------------------------------------------------- the model
    def spec_fields(self, opts: dict[str, Any], ds: Any, train_targets: np.ndarray) -> dict:
        """The value range (recorded in ``opts`` when derived from the data)."""
        t = np.asarray(train_targets, np.float64)
        if opts.get("value_range") is None:
            lo, hi = float(t.min()), float(t.max())
            span = hi - lo if hi > lo else max(1.0, abs(hi) * 0.1)
            # A margin: outputs are clipped to the range, and new data may go a bit beyond.
            lo, hi = lo - RANGE_MARGIN * span, hi + RANGE_MARGIN * span
            opts["value_range"] = [round(lo, 6), round(hi, 6)]
        lo, hi = (float(x) for x in opts["value_range"])
        outside = int(np.sum((t < lo) | (t > hi)))
        if outside:
            raise OptionError(
                f"--range {exact(lo)} {exact(hi)}: {outside} training value(s) lie outside "
                f"it (min {exact(t.min())}, max {exact(t.max())}); widen --range"
            )
        return {"value_range": (lo, hi), "units": opts.get("units") or ""}

    def training_target(self, spec: ModelSpec, y: np.ndarray) -> np.ndarray:
        lo, hi = spec.value_range  # type: ignore[misc]
        t = (np.asarray(y, np.float32) - lo) / (hi - lo)
        return t.reshape(len(t), 1).astype(np.float32)

    def build_head(self, spec: ModelSpec, features: Any, dropout: float) -> Any:
        import keras

        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        x = keras.layers.Dense(HEAD_UNITS, activation="relu", name="head_dense")(x)
        return linear_output(1)(x)

    # ----------------------------------------------------------------- metrics
    def compute_metrics(self, spec, y_true, y_pred, image_sizes, train_targets):
        yt = as_values(y_true, "y_true")
        yp = as_values(y_pred, "y_pred")
        if len(yt) != len(yp):
            raise ValueError(f"y_true has {len(yt)} samples but y_pred has {len(yp)}")
        ref = yt if train_targets is None else as_values(train_targets, "train_targets")
        base = np.full_like(yt, ref.mean() if ref.size else np.nan)
        return value_metrics(yt, yp), value_metrics(yt, base)

    def checklist(self) -> list[str]:
        return [
            "the target column (--target) is the one you mean, in the units you mean",
            "the value range (--range LOW HIGH) covers all targets; predictions are clipped to it",
            "declared invariances (--invariant) are true for your data: a rotation or flip "
            "that changes the answer breaks the labels",
            "colour is the signal: no colour/white-balance augmentation, fixed camera "
            "exposure and white balance when recording",
            *COMMON_CHECKLIST,
        ]

    def sanity_error(self, spec, y, pred):
        lo, hi = spec.value_range  # type: ignore[misc]
        e = float(np.mean(np.abs(pred - y)) / (hi - lo))
        return e, e <= 0.02, "mean absolute error / range"

    def disagreement(self, spec, raw, ref, image_sizes):
        lo, hi = spec.value_range  # type: ignore[misc]
        u = np.abs(np.asarray(raw) - np.asarray(ref))[:, 0] * (hi - lo)
        units = spec.units or "units"
        return {f"max_{units}": float(u.max()), f"mean_{units}": float(u.mean())}

    # ----------------------------------------------------------------- augmentation
    def augment_policy(self, spec: ModelSpec) -> AugmentPolicy:
        """Only the declared invariances (a crop or zoom may change how much of the liquid
        is seen), and colour-safe photometry: colour is the signal."""
        inv = set(spec.invariances)
        return AugmentPolicy(
            hflip="hflip" in inv,
            vflip="vflip" in inv,
            rot90="rot90" in inv,
            rotate="rotate" in inv,
            photometric="exposure",
        )

    # ----------------------------------------------------------------- plots
    def plot_pred_vs_true(self, spec, y_true, y_pred, plt):
        yt = np.asarray(y_true, dtype=float).reshape(-1)
        yp = np.asarray(y_pred, dtype=float).reshape(-1)
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        vr = spec.value_range
        lo = float(np.nanmin([yt.min(initial=np.inf), yp.min(initial=np.inf), vr[0]]))
        hi = float(np.nanmax([yt.max(initial=-np.inf), yp.max(initial=-np.inf), vr[1]]))
        ax.plot([lo, hi], [lo, hi], color="gray", linewidth=1, label="y = x")
        ax.scatter(yt, yp, s=12, alpha=0.6, color=PRED_COLOR, label="predictions")
        unit = f" ({spec.units})" if spec.units else ""
        ax.set_xlabel(f"true {spec.target_name}{unit}")
        ax.set_ylabel(f"predicted {spec.target_name}{unit}")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title(f"Predicted vs true (n={len(yt)})")
        return fig

    def plot_errors(self, spec, y_true, y_pred, image_sizes, ax):
        from train.plots import bins

        err = np.asarray(y_pred, float).reshape(-1) - np.asarray(y_true, float).reshape(-1)
        ax.hist(err[np.isfinite(err)], bins=bins(err), color=PRED_COLOR, alpha=0.8)
        ax.axvline(0.0, color="gray", linewidth=1)
        unit = f" ({spec.units})" if spec.units else ""
        rmse = float(np.sqrt(np.nanmean(err**2))) if err.size else float("nan")
        ax.set_xlabel(f"predicted - true {spec.target_name}{unit}   (RMSE {rmse:.3g})")
        ax.set_ylabel("count")

    def plot_example(self, spec, ax, image, truth, pred):
        t, p = float(np.asarray(truth)), float(np.asarray(pred))
        ax.set_title(f"true {t:.4g}", fontsize=9, color=TRUE_COLOR, loc="left")
        ax.set_title(f"pred {p:.4g}", fontsize=9, color=PRED_COLOR, loc="right")

    def samples(self) -> SampleSet:
        return SampleSet(
            counts=SAMPLE_COUNTS,
            size=SAMPLE_SIZE,
            params=value_params,
            render=render_value,
            label=value_label,
            header="image,value",
            label_text=lambda label: f"{label:.2f}",
            description="concentration from colour (5,000 images)",
        )


# =========================================================================== sample data
def value_color(conc: float | np.ndarray) -> np.ndarray:
    """Concentration (80..350) -> RGB 0..255 of the liquid: a smooth, non-linear ramp.

    Hue falls from yellow (60 deg) through orange and red to crimson (-18 deg) on a
    saturating curve (fast at low concentrations, slow at high ones); saturation rises
    and brightness falls with concentration. Hue and brightness are strictly monotone.
    """
    c = np.atleast_1d(np.asarray(conc, np.float64))
    t = np.clip((c - SAMPLE_RANGE[0]) / (SAMPLE_RANGE[1] - SAMPLE_RANGE[0]), 0, 1)
    g = (1 - np.exp(-1.4 * t)) / (1 - np.exp(-1.4))
    hue = (60.0 - 78.0 * g) / 360.0
    sat = 0.30 + 0.60 * t**1.3
    val = 0.97 - 0.42 * t**1.5
    out = np.array(
        [colorsys.hsv_to_rgb(hh % 1.0, s, v) for hh, s, v in zip(hue, sat, val, strict=True)]
    )
    out = out * 255.0
    return out[0] if np.ndim(conc) == 0 else out


def value_params(rng: np.random.Generator, size: tuple[int, int] = SAMPLE_SIZE) -> Params:
    """Every random choice of one value-task image (a well of a reaction plate)."""
    h, w = size
    s = min(h, w)
    return {
        "size": [h, w],
        "conc": float(np.round(rng.uniform(*SAMPLE_RANGE), 2)),
        "radius": float(rng.uniform(0.27, 0.34) * s),
        "offset": [float(v) for v in rng.uniform(-0.04, 0.04, 2) * s],
        "plate": [float(v) for v in rng.uniform(205, 240) + rng.uniform(-8, 8, 3)],
        "rim": float(rng.uniform(0.08, 0.14)),
        "meniscus": float(rng.uniform(0.08, 0.22)),
        "tex": float(rng.uniform(0.01, 0.04)),
        "tex_seed": int(rng.integers(2**62)),
        "bubbles": [
            [float(v) for v in rng.uniform(-0.7, 0.7, 2)] + [float(rng.uniform(1.5, 5))]
            for _ in range(int(rng.integers(0, 5)))
        ],
        "highlight": [
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.uniform(0.3, 0.6)),
            float(rng.uniform(0.35, 0.85)),
        ],
        "angle": float(rng.uniform(0, 360)),
        "mirror": bool(rng.random() < 0.5),
        **_photo_params(rng, (0.88, 1.12), 0.06, 0.2, (0.0, 1.0), (1.5, 4.5)),
    }


def render_value(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """Draw a value image. Returns (RGB uint8, liquid mask float32 after rotation)."""
    h, w = p["size"]
    trng = np.random.default_rng(p["tex_seed"])  # plate texture first, then the liquid's
    cx, cy = (w - 1) / 2 + p["offset"][0], (h - 1) / 2 + p["offset"][1]
    img = _plate(p, trng, cx, cy)
    img = _plate_marking(img, p, cx, cy)
    img, liquid = _well(img, p, trng, cx, cy)
    img = _bubbles(img, p, cx, cy)
    img = _highlight(img, p, cx, cy)
    img, liquid = _rotate_and_mirror(img, liquid, p)
    img = _finish(_lighting(np.ascontiguousarray(img), p), p)
    return img, np.ascontiguousarray(liquid)


def _plate(p: Params, trng: np.random.Generator, cx: float, cy: float) -> np.ndarray:
    """Step 1 of render_value: the textured plate and the neighbouring (empty) wells of its
    grid, partly in view."""
    h, w = p["size"]
    img = np.empty((h, w, 3), np.float32)
    img[:] = p["plate"]
    img *= (1 + 0.03 * _noise(trng, h, w, 40))[..., None]
    r = p["radius"]
    yy, xx = _grid(h, w)
    pitch = 2.35 * r
    u, v = (xx - cx) / pitch, (yy - cy) / pitch
    dn = np.hypot(u - np.round(u), v - np.round(v)) * (pitch / r)
    one, rim = np.float32(1.0), np.float32(0.7)
    img *= np.where(dn < 1.0, 0.80 + 0.12 * dn, np.where(dn < 1.1, rim, one))[..., None]
    return img


def _plate_marking(img: np.ndarray, p: Params, cx: float, cy: float) -> np.ndarray:
    """Step 2 of render_value: a plate marking, asymmetric so that rotation and mirroring
    are visible."""
    s = min(p["size"])
    r = p["radius"]
    mark = img.astype(np.uint8)
    cv2.putText(
        mark,
        "B3",
        (int(cx - 1.45 * r), int(cy - 0.95 * r)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.55 * s / 250,
        (70, 70, 75),
        2,
        cv2.LINE_AA,
    )
    cv2.fillPoly(
        mark,
        [
            np.array(
                [
                    [int(cx + 1.1 * r), int(cy - 1.35 * r)],
                    [int(cx + 1.35 * r), int(cy - 1.35 * r)],
                    [int(cx + 1.35 * r), int(cy - 1.1 * r)],
                ],
                np.int32,
            )
        ],
        (90, 90, 95),
        cv2.LINE_AA,
    )
    return mark.astype(np.float32)


def _well(
    img: np.ndarray, p: Params, trng: np.random.Generator, cx: float, cy: float
) -> tuple[np.ndarray, np.ndarray]:
    """Step 3 of render_value: the well's shadowed rim and the liquid (colour from the
    ramp, darker towards the wall, faint texture). Returns the image and the liquid mask."""
    h, w = p["size"]
    r = p["radius"]
    yy, xx = _grid(h, w)
    d = np.hypot(xx - cx, yy - cy) / r
    rim_in = 1.0 - p["rim"]
    # rim: a shadowed ring of the well wall
    wall = (d >= rim_in) & (d < 1.0)
    img *= np.where(wall, np.float32(0.72), np.float32(1.0))[..., None]
    # liquid: colour from the ramp, darker towards the wall (meniscus), faint texture
    liquid = np.clip((rim_in - d) * r, 0, 1).astype(np.float32)  # 1-px anti-aliased edge
    base = value_color(p["conc"]).astype(np.float32)
    shade = 1.0 - p["meniscus"] * np.clip(d / rim_in, 0, 1) ** 3
    shade = shade * (1 + p["tex"] * _noise(trng, h, w, 12))
    liq = base[None, None, :] * shade[..., None]
    return _paste(img, liq, liquid), liquid


def _bubbles(img: np.ndarray, p: Params, cx: float, cy: float) -> np.ndarray:
    """Step 4 of render_value: small bubbles in the liquid, rings with a brighter edge."""
    s = min(p["size"])
    r = p["radius"]
    rim_in = 1.0 - p["rim"]
    u8 = np.clip(img, 0, 255).astype(np.uint8)
    for bx, by, br in p["bubbles"]:
        c = (int(cx + bx * r * rim_in), int(cy + by * r * rim_in))
        cv2.circle(u8, c, int(round(br * s / 250)), (235, 235, 235), 1, cv2.LINE_AA)
    return u8.astype(np.float32)


def _highlight(img: np.ndarray, p: Params, cx: float, cy: float) -> np.ndarray:
    """Step 5 of render_value: a specular highlight, a soft white ellipse off-centre."""
    h, w = p["size"]
    r = p["radius"]
    ang, dist, strength = p["highlight"]
    hx, hy = cx + dist * r * math.cos(ang), cy + dist * r * math.sin(ang)
    spot = np.zeros((h, w), np.float32)
    cv2.ellipse(
        spot,
        (int(hx), int(hy)),
        (max(2, int(0.16 * r)), max(1, int(0.07 * r))),
        math.degrees(ang) + 90,
        0,
        360,
        1.0,
        -1,
        cv2.LINE_AA,
    )
    spot = cv2.GaussianBlur(spot, (0, 0), 0.04 * r) * strength
    return _paste(img, np.full_like(img, 255.0), np.clip(spot, 0, 1))


def _rotate_and_mirror(
    img: np.ndarray, liquid: np.ndarray, p: Params
) -> tuple[np.ndarray, np.ndarray]:
    """Step 6 of render_value: rotate about the image centre and mirror, image and mask
    alike (the label does not change)."""
    h, w = p["size"]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), p["angle"], 1.0)
    img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    liquid = cv2.warpAffine(liquid, m, (w, h), flags=cv2.INTER_LINEAR)
    if p["mirror"]:
        img, liquid = img[:, ::-1], liquid[:, ::-1]
    return img, liquid


def value_label(p: Params) -> float:
    return p["conc"]


TASK = register(ValueTrainTask())
