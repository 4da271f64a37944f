"""What ``point`` and ``keypoints`` share on the workstation: K normalized (x, y) targets.

Dataset form: (K, 2) float32 per image, normalized to [0, 1] of the image, origin at the
top-left corner, y down. ``--y-up`` reads labels whose origin is bottom-left;
``--coords pixels`` reads pixel labels and normalizes them with each image's own size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ._common import COMMON_CHECKLIST, PRED_COLOR, TRUE_COLOR, linear_output
from .base import (
    AugmentPolicy,
    BaselineRule,
    LabelColumns,
    RowProblems,
    TaskOption,
    TrainTask,
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
    def make_target(
        self,
        raw: Any,
        width: int,
        height: int,
        cols: LabelColumns,
        opts: Mapping[str, Any],
        vocabulary: tuple[str, ...],
    ) -> tuple[np.ndarray | None, RowProblems]:
        k = cols.num_keypoints
        vals = np.asarray(raw, dtype=np.float64).reshape(k, 2)
        problems: RowProblems = []
        for i in range(k):
            for j, size in enumerate((width, height)):
                name = cols.names[2 * i + j]
                v = vals[i, j]
                if opts.get("coords") == "pixels":
                    if not 0 <= v <= size:
                        problems.append(
                            (name, f"{name}={exact(v)} px is outside the image (0..{size} px)")
                        )
                    vals[i, j] = v / size
                elif not 0 <= v <= 1:
                    hint = " (pixel labels? use --coords pixels)" if v > 1.5 else ""
                    problems.append((name, f"{name}={exact(v)} is outside [0, 1]{hint}"))
        if problems:
            return None, problems
        if opts.get("y_up"):
            vals[:, 1] = 1.0 - vals[:, 1]
        return np.clip(vals, 0.0, 1.0).astype(np.float32), []

    def describe(
        self, targets: np.ndarray, vocabulary: tuple[str, ...], target_name: str
    ) -> tuple[dict[str, Any], list[str], list[str]]:
        t = np.asarray(targets).reshape(len(targets), -1, 2)
        s = {
            "x_min": float(t[..., 0].min()),
            "x_max": float(t[..., 0].max()),
            "y_min": float(t[..., 1].min()),
            "y_max": float(t[..., 1].max()),
            "x_mean": float(t[..., 0].mean()),
            "y_mean": float(t[..., 1].mean()),
        }
        lines = [
            f"normalized coords (top-left origin): x {s['x_min']:.3f}..{s['x_max']:.3f} "
            f"(mean {s['x_mean']:.3f}), y {s['y_min']:.3f}..{s['y_max']:.3f} "
            f"(mean {s['y_mean']:.3f})"
        ]
        warnings = []
        if len(t) > 1 and float(t.std(axis=0).max()) < 1e-6:
            warnings.append("every label is the same point: nothing to learn")
        return {"target": s}, lines, warnings

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
        base = np.broadcast_to(ref.mean(axis=0, keepdims=True), yt.shape)
        return (
            self._metrics(yt, yp, image_sizes),
            self._metrics(yt, base, image_sizes),
        )

    def _metrics(self, yt: np.ndarray, yp: np.ndarray, sizes: np.ndarray) -> dict[str, Any]:
        if yt.size == 0:
            return {k: None for k in self.metric_keys}
        d = yp - yt  # (N, K, 2) normalized
        norm_dist = np.hypot(d[..., 0], d[..., 1])  # (N, K)
        px = np.hypot(d[..., 0] * sizes[:, None, 0], d[..., 1] * sizes[:, None, 1])
        pct_width = 100.0 * px / sizes[:, None, 0]
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
        d = float(np.mean(np.hypot(*(pred - y).reshape(-1, 2).T)))
        return d, d <= 0.02, "mean normalized point error"

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
        for c, (ax, name) in enumerate(zip(axes, ("x", "y"), strict=True)):
            ax.plot([0, 1], [0, 1], color="gray", linewidth=1)
            for j in range(k):
                ax.scatter(
                    yt[:, j, c],
                    yp[:, j, c],
                    s=12,
                    alpha=0.6,
                    color=f"C{j % 10}",
                    label=f"keypoint {j}" if k > 1 else None,
                )
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
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
        ax.hist(px[np.isfinite(px)], bins=bins(px), color=PRED_COLOR, alpha=0.8)
        radius = PCK_RADIUS * float(np.median(sizes[:, 0])) if len(sizes) else 0.0
        ax.axvline(radius, color="gray", linestyle="--", label=f"5 % of width ({radius:.1f} px)")
        mean = float(np.nanmean(px)) if px.size else float("nan")
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
        for j in range(k):
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
            for j in range(k):
                ax.annotate(
                    str(j),
                    (t[j, 0] * w, t[j, 1] * h),
                    color=TRUE_COLOR,
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        err = float(np.mean(np.hypot((p[:, 0] - t[:, 0]) * w, (p[:, 1] - t[:, 1]) * h)))
        ax.set_title(f"error {err:.1f} px", fontsize=9)
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


def _flip_permutation(k: int, pairs: Sequence[Sequence[int]]) -> np.ndarray:
    perm = np.arange(max(k, 1))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm
