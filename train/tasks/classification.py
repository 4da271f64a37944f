"""``class`` on the workstation: which of several states an image shows.

Labels: ``image,label`` in labels.csv, or no CSV and one sub-folder of images per class
(the folder name is the label). Class names are sorted; every class needs at least
:data:`MIN_IMAGES_PER_CLASS` training images. Sample data: the user story of
``seeds/003``, machined flanges that are ``ok`` or show a ``defect`` (a crack, chip or pit).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from train.samples import _clutter, _finish, _grid, _lighting, _paste, _photo_params

from . import register
from ._common import COMMON_CHECKLIST, PRED_COLOR, TRUE_COLOR
from .base import (
    AugmentPolicy,
    BaselineRule,
    ImportRule,
    LabelColumns,
    Params,
    RowProblems,
    SampleSet,
    TrainTask,
    one_column,
)

if TYPE_CHECKING:  # pragma: no cover
    from edge_runtime.spec import ModelSpec

#: A class with fewer images than this cannot be learned or validated: refused.
MIN_IMAGES_PER_CLASS = 5
#: Channels of the local 1x1 detector before global max pooling.
HEAD_CHANNELS = 128
#: A model must close at least this share of the gap between the baseline and 1.0.
CLEARLY_BETTER_ACCURACY_GAP = 0.25

SAMPLE_SIZE = (256, 256)
SAMPLE_COUNTS = (287, 100)
CLASS_NAMES = ("defect", "ok")
DEFECT_FRACTION = 0.35
#: bolt hole radius of the sample flange, as a share of the part radius
BOLT_HOLE_RADIUS = 0.085


class ClassTrainTask(TrainTask):
    name = "class"
    folder_labels = True
    default_input_size = 224
    trunk = "stride16"
    metric_keys = ("accuracy", "macro_f1", "confusion_matrix")
    primary_metric = ("accuracy", True)
    demo_train_args = ("--invariant", "rot90,flip", "--epochs", "30")
    bench_bar = "accuracy ≥ 0.98"
    bench_metrics = ("accuracy", "macro_f1")
    handrolled = "small_cnn"
    examples_legend = "red frame = wrong class"
    import_rule = ImportRule("label")

    def import_header(self, num_points: int) -> list[str]:
        return ["label"]

    # ----------------------------------------------------------------- labels
    def label_columns(self, header: list[str], opts: Mapping[str, Any]) -> LabelColumns:
        return one_column(header, "label", "class")

    def parse_cells(self, cells: list[str], cols: LabelColumns) -> tuple[Any, RowProblems]:
        if not cells[0]:
            return None, [("label", "empty label")]
        return cells[0], []

    def vocabulary(
        self, raws: Sequence[Any], given: Sequence[str] | None
    ) -> tuple[tuple[str, ...], list[str]]:
        if given:
            return tuple(str(c) for c in given), []
        names = tuple(sorted({r for r in raws if r}))
        if len(names) == 1:
            return names, [f"only one class ({names[0]!r}): a class task needs at least 2"]
        return names, []

    def make_target(self, raw, width, height, cols, opts, vocabulary):
        if raw not in vocabulary:
            return None, [
                (
                    "label",
                    f"label {raw!r} is not one of the model's classes ({', '.join(vocabulary)})",
                )
            ]
        return np.asarray(vocabulary.index(raw), dtype=np.int64), []

    def dataset_checks(
        self, targets: list[np.ndarray], vocabulary: tuple[str, ...], strict: bool
    ) -> tuple[list[str], list[str]]:
        """Training data needs MIN_IMAGES_PER_CLASS of every class (a problem). Data checked
        against a model's known classes (validation, evaluation) may lack some: a warning."""
        counts = Counter(int(t) for t in targets)
        problems, warnings = [], []
        for i, name in enumerate(vocabulary):
            n = counts.get(i, 0)
            if len(vocabulary) < 2 or n >= MIN_IMAGES_PER_CLASS:
                continue
            if strict:
                problems.append(
                    f"class {name!r} has only {n} usable image(s); each class needs at least "
                    f"{MIN_IMAGES_PER_CLASS} (add images or merge/remove the class)"
                )
            else:
                warnings.append(f"class {name!r} has only {n} image(s) here")
        return problems, warnings

    def describe(self, targets, vocabulary, target_name):
        c = Counter(int(t) for t in targets)
        stats = {"classes": {n: c.get(i, 0) for i, n in enumerate(vocabulary)}}
        lines = ["classes: " + ", ".join(f"{n} ({c.get(i, 0)})" for i, n in enumerate(vocabulary))]
        if vocabulary and max(c.values(), default=0) > 0:
            maj = max(c.values()) / len(targets)
            lines.append(f"majority-class accuracy (the baseline to beat): {maj:.3f}")
        return stats, lines, _case_clashes(vocabulary)

    def stack(self, targets: Sequence[np.ndarray], num_keypoints: int) -> np.ndarray:
        return np.array([int(t) for t in targets], dtype=np.int64)

    def strata(self, targets: np.ndarray) -> np.ndarray | None:
        return np.asarray(targets)

    def dataset_fits(self, spec: ModelSpec, ds: Any) -> str | None:
        if tuple(ds.class_names) != tuple(spec.class_names):
            return (
                f"classes {list(ds.class_names)} do not match the model's {list(spec.class_names)}"
            )
        return None

    # ----------------------------------------------------------------- the model
    def spec_fields(self, opts, ds, train_targets) -> dict[str, Any]:
        return {"class_names": tuple(ds.class_names)}

    def training_target(self, spec: ModelSpec, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, np.int64)

    def build_head(self, spec: ModelSpec, features: Any, dropout: float) -> Any:
        """A local detector (1x1 conv) on the stride-16 map, then global MAX pooling: a
        class often hinges on a small local feature (a defect covering <1 % of the
        frame), which an average over the whole map dilutes to nothing."""
        import keras

        x = keras.layers.Conv2D(HEAD_CHANNELS, 1, activation="relu", name="head_local")(features)
        x = keras.layers.GlobalMaxPooling2D(name="head_pool")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        return keras.layers.Dense(spec.output_size, activation="softmax", name="output")(x)

    def loss(self, spec: ModelSpec) -> Any:
        import keras

        return keras.losses.SparseCategoricalCrossentropy()

    # ----------------------------------------------------------------- metrics
    def compute_metrics(self, spec, y_true, y_pred, image_sizes, train_targets):
        c = len(spec.class_names)
        yt = _labels(y_true, c, "y_true")
        yp = _labels(y_pred, c, "y_pred")
        if len(yt) != len(yp):
            raise ValueError(f"y_true has {len(yt)} samples but y_pred has {len(yp)}")
        ref = yt if train_targets is None else _labels(train_targets, c, "train_targets")
        majority = int(np.bincount(ref, minlength=c).argmax()) if ref.size else 0
        model = _class_metrics(yt, yp, c)
        model["class_names"] = list(spec.class_names)
        base = _class_metrics(yt, np.full_like(yt, majority), c)
        base["class"] = spec.class_names[majority]
        return model, base

    def baseline_rule(self, spec: ModelSpec, metrics: Mapping[str, Any] | None = None):
        majority = (metrics or {}).get("baseline_class", "?")
        return BaselineRule(
            "accuracy",
            kind="accuracy",
            ratio=CLEARLY_BETTER_ACCURACY_GAP,
            what=f"always answering {majority!r}",
        )

    def format_details(self, spec: ModelSpec, metrics: Mapping[str, Any]) -> str | None:
        """The confusion matrix as text: rows = true class, columns = predicted."""
        matrix = metrics.get("confusion_matrix")
        if matrix is None:
            return None
        names = [str(n) for n in spec.class_names]
        w = max([len(n) for n in names] + [len(str(v)) for row in matrix for v in row] + [4])
        head = " " * (w + 2) + " ".join(f"{n:>{w}}" for n in names) + "   <- predicted"
        body = [
            f"{n:>{w}}  " + " ".join(f"{v:>{w}}" for v in row)
            for n, row in zip(names, matrix, strict=True)
        ]
        return "\n".join([head, *body])

    def checklist(self) -> list[str]:
        return [
            "labels: folder names / label strings are the classes you mean, and no images "
            "are in the wrong folder (look at plots/examples.png)",
            "class balance: with one class far larger, the baseline is already high; "
            "collect more of the rare class",
            "augmentation that changes the class (a flip or crop that removes the thing "
            "the class is about)",
            *COMMON_CHECKLIST,
        ]

    def sanity_error(self, spec, y, pred):
        acc = float(np.mean(np.argmax(pred, axis=-1) == y))
        return acc, acc == 1.0, "training accuracy"

    def disagreement(self, spec, raw, ref, image_sizes):
        d = np.abs(np.asarray(raw) - np.asarray(ref))
        return {
            "max_probability": float(d.max()),
            "label_agreement": float((raw.argmax(1) == ref.argmax(1)).mean()),
        }

    # ----------------------------------------------------------------- augmentation
    def augment_policy(self, spec: ModelSpec) -> AugmentPolicy:
        """Declared flips and turns, a mild warp (framing varies), full photometry."""
        inv = set(spec.invariances)
        return AugmentPolicy(
            hflip="hflip" in inv,
            vflip="vflip" in inv,
            rot90="rot90" in inv,
            rotate="rotate" in inv,
            warp=True,
        )

    # ----------------------------------------------------------------- plots
    def plot_pred_vs_true(self, spec, y_true, y_pred, plt):
        names = list(spec.class_names)
        c = len(names)
        yt, yp = _class_idx(y_true), _class_idx(y_pred)
        cm = np.zeros((c, c), dtype=np.int64)
        np.add.at(cm, (yt, yp), 1)
        size = max(4.0, 0.6 * c + 2.5)
        fig, ax = plt.subplots(figsize=(size + 1, size))
        row = cm.sum(axis=1, keepdims=True)
        frac = np.divide(cm, row, out=np.zeros(cm.shape), where=row > 0)
        im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
        if c <= 30:
            for i in range(c):
                for j in range(c):
                    white = frac[i, j] > 0.5
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=9,
                            color="white" if white else "black")  # fmt: skip
            ax.set_xticks(range(c), names, rotation=45, ha="right")
            ax.set_yticks(range(c), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        acc = float(np.trace(cm) / max(cm.sum(), 1))
        ax.set_title(f"Confusion matrix (n={cm.sum()}, accuracy {acc:.3f})")
        return fig

    def plot_errors(self, spec, y_true, y_pred, image_sizes, ax):
        yt = _class_idx(y_true)
        yp = np.asarray(y_pred)
        if yp.ndim == 2:
            p_true = yp[np.arange(len(yt)), yt]
            ax.hist(p_true, bins=np.linspace(0, 1, 21), color=PRED_COLOR, alpha=0.8)
            ax.set_xlabel("probability the model gave to the true class")
            ax.set_xlim(0, 1)
            ax.set_ylabel("count")
            return
        names = list(spec.class_names)
        acc = [
            float(np.mean(yp[yt == i] == i)) if np.any(yt == i) else 0.0 for i in range(len(names))
        ]
        ax.bar(names, acc, color=PRED_COLOR)
        ax.set_ylabel("accuracy per true class")
        ax.set_ylim(0, 1)

    example_error_name = "1 - probability of the true class"

    def example_errors(self, spec: ModelSpec, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        t = np.asarray(y_true).astype(int).reshape(-1)
        p = np.asarray(y_pred, np.float64).reshape(len(t), -1)
        return 1.0 - p[np.arange(len(t)), t]

    def plot_example(self, spec, ax, image, truth, pred):
        names = spec.class_names
        ti = int(np.asarray(truth))
        row = np.asarray(pred)
        pi = int(np.argmax(row)) if np.ndim(row) else int(row)
        conf = f" {float(row[pi]):.2f}" if np.ndim(row) else ""
        ax.set_title(f"true {names[ti]}", fontsize=9, color=TRUE_COLOR, loc="left")
        ax.set_title(
            f"pred {names[pi]}{conf}",
            fontsize=9,
            color=TRUE_COLOR if pi == ti else PRED_COLOR,
            loc="right",
        )
        if pi != ti:
            for s in ax.spines.values():
                s.set_visible(True)
                s.set_color(PRED_COLOR)
                s.set_linewidth(3)
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])

    def samples(self) -> SampleSet:
        return SampleSet(
            counts=SAMPLE_COUNTS,
            size=SAMPLE_SIZE,
            params=class_params,
            render=render_class,
            label=class_label,
            header="image,label",
            label_text=str,
            plan=class_plan,
            min_images=2,
            description="defect or ok (287 images)",
        )


# --------------------------------------------------------------------------- helpers
def _case_clashes(names: Sequence[str]) -> list[str]:
    """Class names that differ only in case or surrounding spaces ('OK', 'ok'): two
    classes to the model, most likely one to the user."""
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(str(n).strip().casefold(), []).append(str(n))
    return [
        f"classes {' and '.join(repr(n) for n in same)} differ only in case: they are "
        f"{len(same)} different classes to the model; if they are one, write them the same"
        for same in groups.values()
        if len(same) > 1
    ]


def _class_metrics(yt: np.ndarray, yp: np.ndarray, c: int) -> dict[str, Any]:
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (yt, yp), 1)
    if yt.size == 0:
        return {"accuracy": None, "macro_f1": None, "confusion_matrix": cm.tolist()}
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)  # true count per class
    predicted = cm.sum(axis=0)
    present = (support + predicted) > 0
    denom = support + predicted  # 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros(c), where=denom > 0)
    return {
        "accuracy": float(tp.sum() / yt.size),
        "macro_f1": float(f1[present].mean()),
        "confusion_matrix": cm.tolist(),
    }


def _labels(a: Any, c: int, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 2:
        if arr.shape[1] != c:
            raise ValueError(f"{name}: expected (N, {c}) probabilities, got {arr.shape}")
        arr = arr.argmax(axis=1) if len(arr) else np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected (N,) class indices, got {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name}: class indices must be whole numbers")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= c):
        raise ValueError(f"{name}: class indices must be in 0..{c - 1}")
    return arr


def _class_idx(y: Any) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim == 2:
        a = a.argmax(axis=1)
    return a.astype(np.int64)


def class_plan(n: int, seed: int, split: int) -> list[dict[str, Any]]:
    """Which images of a split show a defect: exactly round(n * DEFECT_FRACTION)."""
    k = int(round(n * DEFECT_FRACTION))
    if n >= 2:
        k = min(max(k, 1), n - 1)
    defects = np.zeros(n, bool)
    defects[np.random.default_rng([seed, split, 2**31]).permutation(n)[:k]] = True
    return [{"defect": bool(d)} for d in defects]


# =========================================================================== sample data
def class_params(
    rng: np.random.Generator, size: tuple[int, int] = SAMPLE_SIZE, defect: bool | None = None
) -> Params:
    """Every random choice of one class image: a machined flange, with or without a defect."""
    h, w = size
    s = min(h, w)
    r = float(rng.uniform(0.28, 0.36) * s)
    if defect is None:
        defect = bool(rng.random() < DEFECT_FRACTION)
    kind = str(rng.choice(["crack", "chip", "pit"]))
    bg_seed = int(rng.integers(2**62))
    center = [float(v) for v in (np.array([w, h]) / 2 + rng.uniform(-0.08, 0.08, 2) * s)]
    angle = float(rng.uniform(0, 360))
    holes = int(rng.choice([6, 6, 6, 8]))
    dsize = float(rng.uniform(0.07, 0.13) * r)
    dang, drad = _defect_position(rng, angle, holes, 0.5 * dsize / r if kind == "pit" else 0.0)
    return {
        "size": [h, w],
        "bg_seed": bg_seed,
        "radius": r,
        "center": center,
        "angle": angle,
        "holes": holes,
        "metal": float(rng.uniform(150, 200)),
        "brush_seed": int(rng.integers(2**62)),
        # benign marks every part may have: dust specks and a faint smudge
        "specks": [
            [float(v) for v in rng.uniform(-0.9, 0.9, 2)] + [float(rng.uniform(0.8, 2.2))]
            for _ in range(int(rng.integers(0, 6)))
        ],
        "smudge": [float(v) for v in rng.uniform(-0.5, 0.5, 2)] + [float(rng.uniform(0, 0.12))],
        "defect": defect,
        "defect_kind": kind,
        "defect_pos": [dang, drad],
        "defect_size": dsize,
        "defect_seed": int(rng.integers(2**62)),
        **_photo_params(rng, (0.7, 1.25), 0.08, 0.5, (0.0, 1.2), (2.0, 6.0)),
    }


def _defect_position(
    rng: np.random.Generator, angle_deg: float, holes: int, extent: float
) -> tuple[float, float]:
    """(angle, radius / part radius) of a defect on the face, clear of the bolt holes.

    A pit of radius ``extent`` (share of the part radius) that fell into a bolt hole was
    not drawn at all (the hole has no metal to dent), yet the image was labelled
    ``defect``: about 10 % of the defect images showed nothing. Positions are redrawn
    until the pit keeps a margin of 0.04 part radii from every hole (a crack is long
    enough to stay visible across a hole).
    """
    dang, drad = 0.0, 0.0
    for _ in range(100):
        dang, drad = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.45, 0.85))
        px, py = drad * math.cos(dang), drad * math.sin(dang)
        clear = min(
            math.hypot(
                px - 0.68 * math.cos(math.radians(angle_deg) + 2 * np.pi * k / holes),
                py - 0.68 * math.sin(math.radians(angle_deg) + 2 * np.pi * k / holes),
            )
            for k in range(holes)
        )
        if clear >= BOLT_HOLE_RADIUS + extent + 0.04:
            break
    return dang, drad


def _ring(xx: np.ndarray, yy: np.ndarray, x: float, y: float, radius: float) -> np.ndarray:
    """An anti-aliased ring about 1.5 px wide at ``radius`` around (x, y), in [0, 1]."""
    return np.clip(1.5 - np.abs(np.hypot(xx - x, yy - y) - radius) / 0.75, 0, 1).astype(np.float32)


def render_class(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """Draw a class image. Returns (RGB uint8, defect mask float32; zeros when no defect)."""
    h, w = p["size"]
    img = _belt(p["bg_seed"], h, w)
    yy, xx = _grid(h, w)
    img, part = _flange(img, p, xx, yy)
    img = _benign_marks(img, p, part, xx, yy)
    img, dmask = _defect(img, p, part, xx, yy)
    img = _finish(_lighting(img, p), p)
    return img, dmask


def _belt(seed: int, h: int, w: int) -> np.ndarray:
    """Step 1 of render_class: the conveyor belt, dark grey with texture and some clutter."""
    return _clutter(np.random.default_rng(seed), h, w, (0, 6)) * 0.35 + 40


def _flange(
    img: np.ndarray, p: Params, xx: np.ndarray, yy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Step 2 of render_class: the brushed-metal part with its centre and bolt holes and a
    bevel. Returns the image and the part's coverage (anti-aliased, holes excluded)."""
    cx, cy = p["center"]
    r = p["radius"]
    d = np.hypot(xx - cx, yy - cy)
    theta = np.arctan2(yy - cy, xx - cx)
    # brushed metal: radial gradient, fine concentric streaks
    mrng = np.random.default_rng(p["brush_seed"])
    streak = cv2.resize(mrng.normal(0, 1, (1, 64)).astype(np.float32), (256, 256))[0]
    ring_tex = np.interp(d / r, np.linspace(0, 1.1, 256), streak).astype(np.float32)
    metal = p["metal"] * (0.85 + 0.2 * np.cos(theta - math.radians(p["angle"])) * (d / r))
    metal = metal + 6 * ring_tex
    part = np.clip(r - d + 0.5, 0, 1)  # outer edge, anti-aliased
    hole = np.clip(0.35 * r - d + 0.5, 0, 1)
    part = part * (1 - hole)
    bolt = np.zeros(xx.shape, np.float32)
    for k in range(p["holes"]):
        a = math.radians(p["angle"]) + 2 * np.pi * k / p["holes"]
        bx, by = cx + 0.68 * r * math.cos(a), cy + 0.68 * r * math.sin(a)
        bolt = np.maximum(
            bolt, np.clip(BOLT_HOLE_RADIUS * r - np.hypot(xx - bx, yy - by) + 0.5, 0, 1)
        )
    part = part * (1 - bolt)
    metal_rgb = np.stack([metal, metal * 0.99, metal * 0.96], -1)
    img = _paste(img, metal_rgb, part)
    # a bevel: darker ring near the outer edge
    bevel = ((d > 0.93 * r) & (d < r)).astype(np.float32) * part
    img *= (1 - 0.25 * bevel)[..., None]
    return img, part


def _benign_marks(
    img: np.ndarray, p: Params, part: np.ndarray, xx: np.ndarray, yy: np.ndarray
) -> np.ndarray:
    """Step 3 of render_class: the dust specks and faint smudge any part may have."""
    cx, cy = p["center"]
    r = p["radius"]
    u8 = np.clip(img, 0, 255).astype(np.uint8)
    for sx, sy, sr in p["specks"]:
        c = (int(cx + sx * r), int(cy + sy * r))
        cv2.circle(u8, c, max(1, int(round(sr))), (225, 225, 220), -1, cv2.LINE_AA)
    img = u8.astype(np.float32)
    mx, my, ms = p["smudge"]
    sm = np.exp(-(((xx - cx - mx * r) ** 2 + (yy - cy - my * r) ** 2) / (2 * (0.25 * r) ** 2)))
    img *= (1 - ms * sm * part)[..., None]
    return img


def _defect(
    img: np.ndarray, p: Params, part: np.ndarray, xx: np.ndarray, yy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Step 4 of render_class: the defect, if the image has one. Returns (image, mask)."""
    h, w = p["size"]
    dmask = np.zeros((h, w), np.float32)
    if not p["defect"]:
        return img, dmask
    if p["defect_kind"] == "chip":
        return _chip(img, dmask, p, part, xx, yy)
    return _crack_or_pit(img, dmask, p, part, xx, yy)


def _chip(
    img: np.ndarray, dmask: np.ndarray, p: Params, part: np.ndarray, xx: np.ndarray, yy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A small bite out of the outer edge, the belt showing through, with a bright rim."""
    h, w = p["size"]
    cx, cy = p["center"]
    r = p["radius"]
    ang, _ = p["defect_pos"]
    size = p["defect_size"]
    px, py = cx + r * math.cos(ang), cy + r * math.sin(ang)
    cv2.circle(dmask, (int(px), int(py)), max(3, int(size)), 1.0, -1, cv2.LINE_AA)
    dmask *= part
    img = _paste(img, _belt(p["bg_seed"], h, w), dmask)
    # the fresh break catches the light: a bright rim along the bite, so the chip
    # shows even where the belt below is as dark as the bevel
    lip = _ring(xx, yy, px, py, max(3, int(size)) + 1.0) * part * (1 - dmask)
    img = _paste(img, np.full_like(img, 235.0), lip)
    return img, np.maximum(dmask, lip)


def _crack_or_pit(
    img: np.ndarray, dmask: np.ndarray, p: Params, part: np.ndarray, xx: np.ndarray, yy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A crack (a thin dark jagged line) or a pit (a small dark dent with a bright lip)."""
    cx, cy = p["center"]
    r = p["radius"]
    ang, rad = p["defect_pos"]
    kind, size = p["defect_kind"], p["defect_size"]
    px, py = cx + rad * r * math.cos(ang), cy + rad * r * math.sin(ang)
    if kind == "crack":
        pts = _crack_points(px, py, size, p["defect_seed"])
        cv2.polylines(dmask, [pts], False, 1.0, 2, cv2.LINE_AA)
    else:
        cv2.circle(dmask, (int(px), int(py)), max(3, int(0.5 * size)), 1.0, -1, cv2.LINE_AA)
    dmask *= part
    img = _paste(img, img * 0.35, dmask)
    if kind == "pit":
        lip = _ring(xx, yy, px, py, max(3, int(0.5 * size)) + 1.0) * part * (1 - dmask)
        img = _paste(img, np.full_like(img, 235.0), 0.8 * lip)
        dmask = np.maximum(dmask, lip)
    return img, dmask


def _crack_points(px: float, py: float, size: float, seed: int) -> np.ndarray:
    """A crack's polyline from (px, py): four segments of a randomly turning heading."""
    drng = np.random.default_rng(seed)
    pts = [(px, py)]
    heading = float(drng.uniform(0, 2 * np.pi))
    for _ in range(4):
        heading += float(drng.uniform(-0.6, 0.6))
        step = 0.75 * size
        pts.append((pts[-1][0] + step * math.cos(heading), pts[-1][1] + step * math.sin(heading)))
    return np.array(pts, np.int32)


def class_label(p: Params) -> str:
    return "defect" if p["defect"] else "ok"


TASK = register(ClassTrainTask())
