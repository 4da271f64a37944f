"""What ``point`` and ``keypoints`` share on the workstation: K normalized (x, y) targets.

Dataset form: (K, 2) float32 per image, normalized to [0, 1] of the image, origin at the
top-left corner, y down. ``--y-up`` reads labels whose origin is bottom-left;
``--coords pixels`` reads pixel labels and normalizes them with each image's own size.

Real labels are not all inside the frame and not all there:

- a point slightly OUTSIDE the frame (a corner cut off by the image edge) is a valid
  target within :data:`MARGIN` (0.25 of the width/height on each side: [-0.25, 1.25]
  normalized, or [-0.25 W, 1.25 W] pixels); farther out it is an error;
- a MISSING or occluded keypoint is an empty ``x``/``y`` cell pair: its target is NaN, and
  it is masked out of the loss (:func:`masked_huber`), the metrics and the plots. A
  half-empty pair is an error, and so is a row with no point at all (nothing to learn).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edge_runtime.tasks._coordinates import HIGH, LOW, MARGIN

from ._common import COMMON_CHECKLIST, PRED_COLOR, TRUE_COLOR, linear_output
from .base import (
    AugmentPolicy,
    BaselineRule,
    LabelColumns,
    RowProblems,
    TaskOption,
    TrainTask,
    _parse_numbers,
    exact,
)

if TYPE_CHECKING:  # pragma: no cover
    from edge_runtime.spec import ModelSpec

#: Radius of the PCK metric, in normalized coordinates (the user's "more than 5 % off").
PCK_RADIUS = 0.05
COORDS = ("normalized", "pixels")
#: Channels kept by the 1x1 conv before flattening, and the dense layer's width.
HEAD_CHANNELS = 64
HEAD_UNITS = 256
#: The Huber loss's delta in normalized units (like L1 above 2 % of the frame).
HUBER_DELTA = 0.02

Y_UP = TaskOption(
    "y_up",
    "--y-up",
    "Labels have their origin bottom-left (y up).",
    is_flag=True,
    default=False,
    labels=True,
    off_flag="--y-down",
)
COORDS_OPTION = TaskOption(
    "coords",
    "--coords",
    "Label units: normalized [0, 1] or pixels of each image.",
    choices=COORDS,
    default="normalized",
    labels=True,
)


class CoordinatesTrainTask(TrainTask):
    """K normalized (x, y) points per image."""

    options: ClassVar[tuple[TaskOption, ...]] = (Y_UP, COORDS_OPTION)
    metric_keys = ("mean_error_px", "median_error_px", "mean_error_pct_width", "pck@0.05")
    #: mean_error_px is smooth and keeps moving after pck@0.05 saturates at 1.0.
    primary_metric = ("mean_error_px", False)
    examples_legend = "green o = true, red x = predicted"
    example_error_name = "mean point distance"

    def example_errors(self, spec: ModelSpec, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        n = len(y_true)
        d = np.asarray(y_pred, np.float64).reshape(n, -1, 2) - np.asarray(y_true).reshape(n, -1, 2)
        return np.hypot(d[..., 0], d[..., 1]).mean(axis=1)

    # ----------------------------------------------------------------- labels
    def parse_cells(self, cells: list[str], cols: LabelColumns) -> tuple[Any, RowProblems]:
        """Numbers, or None for a keypoint whose x AND y cells are both empty (missing)."""
        vals: list[float | None] = []
        problems: RowProblems = []
        for i in range(0, len(cells), 2):
            pair, names = cells[i : i + 2], cols.names[i : i + 2]
            empty = [not c.strip() for c in pair]
            if all(empty):
                vals += [None, None]
                continue
            if any(empty):
                blank, given = (0, 1) if empty[0] else (1, 0)
                problems.append(
                    (
                        names[blank],
                        f"{names[blank]} is empty but {names[given]}={pair[given]}: a point is "
                        "either given (both cells) or missing/occluded (both cells empty)",
                    )
                )
                vals += [None, None]
                continue
            sub = LabelColumns([], names, "", decimal_comma=cols.decimal_comma)
            got, bad = _parse_numbers(pair, sub)
            cols.decimal_commas += sub.decimal_commas
            vals += got
            problems += bad
        if not problems and vals and all(v is None for v in vals):
            what = (
                f"{cols.names[0]},{cols.names[1]} are empty"
                if len(vals) == 2
                else (f"all {len(vals) // 2} keypoints are empty")
            )
            problems.append(
                (
                    cols.names[0],
                    f"{what}: a row with no point has nothing to learn from; label it or "
                    "remove the row",
                )
            )
        return vals, problems

    def make_target(
        self,
        raw: Any,
        width: int,
        height: int,
        cols: LabelColumns,
        opts: Mapping[str, Any],
        vocabulary: tuple[str, ...],
    ) -> tuple[np.ndarray | None, RowProblems]:
        """(K, 2) normalized points, NaN where a keypoint is missing. A coordinate beyond
        the margin is a problem that names the valid range in the label's own units."""
        k = cols.num_keypoints
        vals = np.array([np.nan if v is None else v for v in raw], np.float64).reshape(k, 2)
        pixels = opts.get("coords") == "pixels"
        problems: RowProblems = []
        for i in range(k):
            for j, size in enumerate((width, height)):
                v = float(vals[i, j])
                if np.isnan(v):
                    continue
                norm = v / size if pixels else v
                if not LOW <= norm <= HIGH:
                    name = cols.names[2 * i + j]
                    problems.append((name, _beyond_margin(name, v, size, j, pixels)))
                vals[i, j] = norm
        if problems:
            return None, problems
        if opts.get("y_up"):
            vals[:, 1] = 1.0 - vals[:, 1]
        return vals.astype(np.float32), []

    def describe(
        self, targets: np.ndarray, vocabulary: tuple[str, ...], target_name: str
    ) -> tuple[dict[str, Any], list[str], list[str]]:
        """Ranges of the given points, and how many are missing or outside the frame (per
        keypoint): both are valid, and said so."""
        t = np.asarray(targets, np.float64).reshape(len(targets), -1, 2)
        seen = np.isfinite(t).all(axis=-1)  # (N, K)
        s = _ranges(t[seen])
        lines = [
            f"normalized coords (top-left origin): x {s['x_min']:.3f}..{s['x_max']:.3f} "
            f"(mean {s['x_mean']:.3f}), y {s['y_min']:.3f}..{s['y_max']:.3f} "
            f"(mean {s['y_mean']:.3f})"
        ]
        names = _point_names(target_name, t.shape[1])
        outside = seen & ~np.all((t >= 0.0) & (t <= 1.0), axis=-1)
        masked = ~seen
        stats: dict[str, Any] = {
            "target": s,
            "margin": MARGIN,
            "missing": {n: int(c) for n, c in zip(names, masked.sum(axis=0), strict=True)},
            "outside_frame": {n: int(c) for n, c in zip(names, outside.sum(axis=0), strict=True)},
        }
        lines += _count_line(
            masked,
            names,
            "missing/occluded point(s) (empty cells): masked out of the loss and the metrics",
        )
        lines += _count_line(
            outside,
            names,
            f"point(s) outside the frame, within the margin of {MARGIN:g} "
            f"([{LOW:g}, {HIGH:g}]): kept as targets",
        )
        warnings = [
            f"keypoint {n} is empty in every row: the model cannot learn it"
            for n, all_missing in zip(names, masked.all(axis=0), strict=True)
            if all_missing and len(t) > 0
        ]
        if len(t) > 1 and seen.any(axis=0).all():
            spread = np.nanstd(t, axis=0)
            if float(np.nanmax(spread)) < 1e-6:
                warnings.append("every label is the same point: nothing to learn")
        return stats, lines, warnings

    def label_warnings(
        self, raws: Sequence[Any], cols: LabelColumns, opts: Mapping[str, Any]
    ) -> list[str]:
        """Pixel labels that are all within [0, 1] are normalized labels read as pixels:
        every point would land in the image's top-left pixel."""
        if opts.get("coords") != "pixels" or not raws:
            return []
        vals = np.asarray([v for r in raws for v in r if v is not None], np.float64)
        if vals.size and float(np.abs(vals).max()) <= 1.0:
            return [
                f"--coords pixels, but every coordinate is between 0 and 1 (largest "
                f"{exact(float(vals.max()))}): these look like normalized labels, which as "
                "pixels put every point in the top-left pixel of its image; drop "
                "--coords pixels"
            ]
        return []

    def stack(self, targets: Sequence[np.ndarray], num_keypoints: int) -> np.ndarray:
        if not targets:
            return np.zeros((0, max(num_keypoints, 1), 2), np.float32)
        return np.stack(list(targets)).astype(np.float32)

    def dataset_fits(self, spec: ModelSpec, ds: Any) -> str | None:
        if ds.num_keypoints != spec.num_keypoints:
            return (
                f"labels have {ds.num_keypoints} keypoint(s) but the model predicts "
                f"{spec.num_keypoints}"
            )
        return None

    # ----------------------------------------------------------------- the model
    def spec_fields(
        self, opts: Mapping[str, Any], ds: Any, train_targets: np.ndarray
    ) -> dict[str, Any]:
        return {"num_keypoints": ds.num_keypoints}

    def training_target(self, spec: ModelSpec, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, np.float32).reshape(len(y), -1)

    def loss(self, spec: ModelSpec) -> Any:
        """Huber on the given coordinates only: missing keypoints (NaN) are masked out."""
        return masked_huber(HUBER_DELTA)

    def build_head(self, spec: ModelSpec, features: Any, dropout: float) -> Any:
        """Keeps WHERE things are: a 1x1 conv shrinks the channels, then the map is
        flattened (a global average would throw the layout away), then dense layers."""
        import keras

        x = keras.layers.Conv2D(HEAD_CHANNELS, 1, activation="relu", name="head_reduce")(features)
        x = keras.layers.Flatten(name="head_flatten")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        x = keras.layers.Dense(HEAD_UNITS, activation="relu", name="head_dense")(x)
        return linear_output(spec.output_size)(x)

    # ----------------------------------------------------------------- metrics
    def compute_metrics(
        self,
        spec: ModelSpec,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        image_sizes: np.ndarray,
        train_targets: np.ndarray | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        yt = _points(y_true, spec, "y_true")
        yp = _points(y_pred, spec, "y_pred")
        if len(yt) != len(yp):
            raise ValueError(f"y_true has {len(yt)} samples but y_pred has {len(yp)}")
        ref = yt if train_targets is None else _points(train_targets, spec, "train_targets")
        base = np.broadcast_to(_mean_points(ref)[None], yt.shape)
        return (
            self._metrics(yt, yp, image_sizes),
            self._metrics(yt, base, image_sizes),
        )

    def _metrics(self, yt: np.ndarray, yp: np.ndarray, sizes: np.ndarray) -> dict[str, Any]:
        """Errors over the GIVEN points only (a missing keypoint is NaN in ``yt``)."""
        seen = np.isfinite(yt).all(axis=-1)  # (N, K)
        if not seen.any():
            return {k: None for k in self.metric_keys}
        d = yp - yt  # (N, K, 2) normalized
        wh = np.broadcast_to(sizes[:, None, :], d.shape)
        px = np.hypot(d[..., 0] * wh[..., 0], d[..., 1] * wh[..., 1])[seen]
        norm_dist = np.hypot(d[..., 0], d[..., 1])[seen]
        pct_width = 100.0 * px / wh[..., 0][seen]
        return {
            "mean_error_px": float(px.mean()),
            "median_error_px": float(np.median(px)),
            "mean_error_pct_width": float(pct_width.mean()),
            "pck@0.05": float((norm_dist <= PCK_RADIUS + 1e-9).mean()),
        }

    def baseline_rule(
        self, spec: ModelSpec, metrics: Mapping[str, Any] | None = None
    ) -> BaselineRule:
        return BaselineRule("mean_error_px")

    def checklist(self) -> list[str]:
        return [
            "label origin: y measured from the BOTTOM of the image needs --y-up "
            "(edgereg's y runs down from the top)",
            "label units: pixel coordinates need --coords pixels; normalized ones are in "
            "[0, 1] of the image width/height",
            "labels drawn on the images: `edgereg data check DATA_DIR --task ...` and "
            "look at plots/examples.png (green = truth)",
            "augmentation that breaks labels: with horizontal flips, left/right keypoints "
            "need --flip-pairs (e.g. 0:1,2:3); turn augmentation off once to compare",
            *COMMON_CHECKLIST,
        ]

    def sanity_error(
        self, spec: ModelSpec, y: np.ndarray, pred: np.ndarray
    ) -> tuple[float, bool, str]:
        dist = np.hypot(*(np.asarray(pred) - np.asarray(y)).reshape(-1, 2).T)
        d = float(np.mean(dist[np.isfinite(dist)]))
        return d, d <= 0.02, "mean normalized point error (given points)"

    def disagreement(
        self, spec: ModelSpec, raw: np.ndarray, ref: np.ndarray, image_sizes: np.ndarray
    ) -> dict[str, float]:
        wh = np.asarray(image_sizes, np.float32)[:, None, :]
        k = spec.num_keypoints
        px = np.linalg.norm((raw - ref).reshape(-1, k, 2) * wh, axis=-1)
        return {"max_px": float(px.max()), "mean_px": float(px.mean())}

    # ----------------------------------------------------------------- augmentation
    def augment_policy(self, spec: ModelSpec) -> AugmentPolicy:
        """Flips, quarter turns and free rotation as declared; a mild warp always. Points
        move exactly like the pixels; a mirror also swaps the declared flip pairs."""
        inv = set(spec.invariances)
        return AugmentPolicy(
            target="points",
            hflip=self.mirror_allowed(spec),
            vflip="vflip" in inv,
            rot90="rot90" in inv,
            rotate="rotate" in inv,
            warp=True,
            flip_permutation=tuple(_flip_permutation(spec.num_keypoints, spec.flip_pairs)),
            margin=MARGIN,
        )

    def mirror_allowed(self, spec: ModelSpec) -> bool:
        """Whether a horizontal mirror keeps the labels meaningful."""
        return "hflip" in spec.invariances or bool(spec.flip_pairs)

    # ----------------------------------------------------------------- plots
    def plot_pred_vs_true(
        self, spec: ModelSpec, y_true: np.ndarray, y_pred: np.ndarray, plt: Any
    ) -> Any:
        k = spec.num_keypoints
        yt = np.asarray(y_true, dtype=float).reshape(-1, k, 2)
        yp = np.asarray(y_pred, dtype=float).reshape(-1, k, 2)
        fig, axes = plt.subplots(1, 2, figsize=(10, 5))
        both = np.concatenate([yt.reshape(-1), yp.reshape(-1)])
        both = both[np.isfinite(both)]
        lo = min(0.0, float(both.min())) if both.size else 0.0
        hi = max(1.0, float(both.max())) if both.size else 1.0
        for c, (ax, name) in enumerate(zip(axes, ("x", "y"), strict=True)):
            ax.plot([lo, hi], [lo, hi], color="gray", linewidth=1)
            for j in range(k):
                ax.scatter(
                    yt[:, j, c],
                    yp[:, j, c],
                    s=12,
                    alpha=0.6,
                    color=f"C{j % 10}",
                    label=f"keypoint {j}" if k > 1 else None,
                )
            ax.set_xlim(lo, hi)  # masked points (NaN) are not drawn
            ax.set_ylim(lo, hi)
            ax.set_aspect("equal")
            ax.grid(alpha=0.3)
            ax.set_xlabel(f"true {name} (normalized)")
            ax.set_ylabel(f"predicted {name} (normalized)")
            ax.set_title(f"{name}: predicted vs true (n={len(yt)})")
        if 1 < k <= 10:
            axes[0].legend(fontsize=7, loc="upper left")
        return fig

    def plot_errors(
        self,
        spec: ModelSpec,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        image_sizes: np.ndarray | None,
        ax: Any,
    ) -> None:
        from train.plots import bins

        k = spec.num_keypoints
        yt = np.asarray(y_true, dtype=float).reshape(-1, k, 2)
        yp = np.asarray(y_pred, dtype=float).reshape(-1, k, 2)
        if image_sizes is None:
            sizes = np.tile([[spec.input_width, spec.input_height]], (len(yt), 1)).astype(float)
        else:
            sizes = np.asarray(image_sizes, dtype=float).reshape(-1, 2)
        d = yp - yt
        px = np.hypot(d[..., 0] * sizes[:, None, 0], d[..., 1] * sizes[:, None, 1]).reshape(-1)
        px = px[np.isfinite(px)]  # masked points have no error
        ax.hist(px, bins=bins(px), color=PRED_COLOR, alpha=0.8)
        radius = PCK_RADIUS * float(np.median(sizes[:, 0])) if len(sizes) else 0.0
        ax.axvline(radius, color="gray", linestyle="--", label=f"5 % of width ({radius:.1f} px)")
        mean = float(np.mean(px)) if px.size else float("nan")
        ax.axvline(
            mean if px.size else 0.0, color="black", linewidth=1, label=f"mean {mean:.2f} px"
        )
        ax.set_xlim(left=0)
        ax.set_xlabel("error (pixels of the original image)")
        ax.set_ylabel("count")
        ax.legend(fontsize=8)

    def plot_example(
        self, spec: ModelSpec, ax: Any, image: np.ndarray, truth: Any, pred: Any
    ) -> None:
        from matplotlib import patheffects

        from train.plots import DPI

        h, w = image.shape[:2]
        k = spec.num_keypoints
        t = np.asarray(truth, dtype=float).reshape(k, 2)
        p = np.asarray(pred, dtype=float).reshape(k, 2)
        # small marks with thin lines: an error of a few pixels stays visible between them
        ms = max(3.0, min(6.0, 0.02 * 3.2 * DPI))
        seen = np.isfinite(t).all(axis=1)
        t, p = t[seen], p[seen]  # a masked keypoint has no truth to draw
        for j in range(len(t)):
            ax.plot([t[j, 0] * w, p[j, 0] * w], [t[j, 1] * h, p[j, 1] * h], color="yellow", lw=0.8)
        halo = [patheffects.withStroke(linewidth=2.2, foreground="black")]
        ax.plot(
            t[:, 0] * w,
            t[:, 1] * h,
            "o",
            color=TRUE_COLOR,
            markersize=ms + 1,
            markerfacecolor="none",
            markeredgewidth=1.0,
            path_effects=halo,
        )
        ax.plot(
            p[:, 0] * w,
            p[:, 1] * h,
            "x",
            color=PRED_COLOR,
            markersize=ms,
            markeredgewidth=1.0,
            path_effects=halo,
        )
        if k > 1:
            for j, idx in enumerate(np.flatnonzero(seen)):
                ax.annotate(
                    str(idx),
                    (t[j, 0] * w, t[j, 1] * h),
                    color=TRUE_COLOR,
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        err = float(np.mean(np.hypot((p[:, 0] - t[:, 0]) * w, (p[:, 1] - t[:, 1]) * h)))
        hidden = f", {k - len(t)} missing" if len(t) < k else ""
        ax.set_title(f"error {err:.1f} px{hidden}", fontsize=9)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)


# --------------------------------------------------------------------------- helpers
def _points(a: Any, spec: ModelSpec, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    k = spec.num_keypoints
    if arr.ndim == 2 and arr.shape[1] == 2 * k:
        arr = arr.reshape(len(arr), k, 2)
    if arr.ndim != 3 or arr.shape[1:] != (k, 2):
        raise ValueError(f"{name}: expected shape (N, {k}, 2) for {spec.task}, got {arr.shape}")
    return arr


def _mean_points(ref: np.ndarray) -> np.ndarray:
    """The baseline's answer: each keypoint's mean over the rows that give it (the frame's
    centre for a keypoint no row gives)."""
    seen = np.isfinite(ref).all(axis=-1, keepdims=True)  # (N, K, 1)
    n = seen.sum(axis=0)
    total = np.where(seen, ref, 0.0).sum(axis=0)
    return np.where(n > 0, total / np.maximum(n, 1), 0.5)


def _ranges(points: np.ndarray) -> dict[str, float]:
    """Range and mean of (M, 2) given points (zeros when there are none)."""
    if not len(points):
        return {k: 0.0 for k in ("x_min", "x_max", "y_min", "y_max", "x_mean", "y_mean")}
    return {
        "x_min": float(points[:, 0].min()),
        "x_max": float(points[:, 0].max()),
        "y_min": float(points[:, 1].min()),
        "y_max": float(points[:, 1].max()),
        "x_mean": float(points[:, 0].mean()),
        "y_mean": float(points[:, 1].mean()),
    }


def _point_names(target_name: str, k: int) -> list[str]:
    """``x1,y1`` ... per keypoint, from the target's name (``x,y`` for one point)."""
    cols = [c for c in target_name.split(",") if c]
    if len(cols) == 2 * k:
        return [f"{cols[2 * i]},{cols[2 * i + 1]}" for i in range(k)]
    return [f"x{i + 1},y{i + 1}" for i in range(k)]


def _count_line(flags: np.ndarray, names: list[str], what: str) -> list[str]:
    """One report line counting the flagged points per keypoint (none when there are none)."""
    total = int(flags.sum())
    if not total:
        return []
    per = ", ".join(f"{n}: {int(c)}" for n, c in zip(names, flags.sum(axis=0), strict=True) if c)
    return [f"{total} of {flags.size} {what} ({per})"]


def _beyond_margin(name: str, v: float, size: int, axis: int, pixels: bool) -> str:
    """Why a coordinate is refused, with every digit of it and the valid range."""
    if pixels:
        side = ("wide", "high")[axis]
        return (
            f"{name}={exact(v)} px is beyond the margin outside the image: valid is "
            f"{LOW * size:g}..{HIGH * size:g} px for this {size} px {side} image (the image "
            f"plus {MARGIN:g} of it on each side)"
        )
    hint = " (pixel labels? use --coords pixels)" if abs(v) > 2 else ""
    return (
        f"{name}={exact(v)} is beyond the margin outside the frame: valid is "
        f"[{LOW:g}, {HIGH:g}] (the frame [0, 1] plus {MARGIN:g} on each side){hint}"
    )


_MASKED_HUBER: Any = None


def masked_huber(delta: float = HUBER_DELTA) -> Any:
    """A Keras loss: Huber on the given coordinates only, the mean over them.

    ``y_true`` is (N, 2K) with NaN for a missing keypoint; those coordinates add nothing
    to the loss or its gradient, and the mean is over the given coordinates of the whole
    batch (with none missing it equals ``keras.losses.Huber(delta)``). Defined on first
    use so that importing this module imports no Keras; registered as
    ``edgereg>MaskedHuber`` for a compiled model's config (the saved model.keras carries
    no loss: training saves the network uncompiled).
    """
    global _MASKED_HUBER
    if _MASKED_HUBER is None:
        _MASKED_HUBER = _define_masked_huber()
    return _MASKED_HUBER(delta=delta)


def _define_masked_huber() -> Any:
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="edgereg", name="MaskedHuber")
    class MaskedHuber(keras.losses.Loss):
        # "sum" of per-sample parts that are already divided by the batch's given count:
        # the mean over every given coordinate in the batch.
        def __init__(self, delta: float = HUBER_DELTA, name: str = "masked_huber", **kw: Any):
            kw.setdefault("reduction", "sum")
            super().__init__(name=name, **kw)
            self.delta = float(delta)

        def call(self, y_true: Any, y_pred: Any) -> Any:
            y_pred = ops.convert_to_tensor(y_pred)
            y_true = ops.cast(y_true, y_pred.dtype)
            given = ops.logical_not(ops.isnan(y_true))
            weight = ops.cast(given, y_pred.dtype)
            err = ops.abs(y_pred - ops.where(given, y_true, ops.zeros_like(y_true))) * weight
            quad = ops.minimum(err, self.delta)
            huber = 0.5 * quad * quad + self.delta * (err - quad)
            count = ops.maximum(ops.sum(weight), 1.0)
            return ops.sum(huber * weight, axis=-1) / count

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "delta": self.delta}

    return MaskedHuber


def _flip_permutation(k: int, pairs: Sequence[Sequence[int]]) -> np.ndarray:
    perm = np.arange(max(k, 1))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm
