"""What a task kind must say on the workstation: :class:`TrainTask` and its small types.

A TrainTask pairs with the :class:`edge_runtime.tasks.DeviceTask` of the same name (its
``device``) and owns everything about the task that the device does not need: its
command-line options, how its labels are read and checked, the training target, head
and loss, metrics and baseline, augmentation policy, sample data, plots and defaults.

Importing this module (or a task module) imports no TensorFlow, Keras, albumentations
or matplotlib: ``edgereg train --help`` builds its options from the registry. Those
libraries are imported inside the methods that need them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edge_runtime import tasks as device_tasks
from edge_runtime.errors import OptionError
from edge_runtime.tasks import DeviceTask

if TYPE_CHECKING:  # pragma: no cover
    from edge_runtime.spec import ModelSpec

Params = dict[str, Any]


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class TaskOption:
    """A task-specific option of ``data check``, ``train`` and ``eval``.

    ``name`` is the keyword and the key in a run's ``config.json``; ``flag`` the command
    line. ``labels=True`` options say how labels are read (all three commands take them);
    the others shape the model (``train`` only). ``parse`` turns the command-line value
    into the stored one and raises OptionError (exit 2) with the reason when it cannot.
    """

    name: str
    flag: str
    help: str
    type: Any = str
    nargs: int = 1
    is_flag: bool = False
    default: Any = None
    labels: bool = False
    #: the negative flag of a boolean option (``--y-down``), for commands that default
    #: to the run's own setting (``eval``)
    off_flag: str | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    parse: Callable[[Any], Any] | None = None


# --------------------------------------------------------------------------- labels
@dataclass
class LabelColumns:
    """Where a task's labels are in labels.csv (header indices) and what they are called."""

    columns: list[int]
    names: list[str]
    #: a short name of the target for reports (``x,y``, ``value``, ``label``)
    target_name: str
    #: K for coordinate tasks (0 otherwise)
    num_keypoints: int = 0
    #: how the header was read, said in the report (e.g. keypoints numbered from 0)
    notes: list[str] = field(default_factory=list)
    #: numbers may use a decimal comma (the file's separator is not ','); set by the reader
    decimal_comma: bool = False
    #: how many numbers were read with a decimal comma (counted by :func:`_parse_numbers`)
    decimal_commas: int = 0


class HeaderProblem(Exception):
    """labels.csv's header does not fit the task: ``message`` says why, ``field`` where."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


#: (column name, what is wrong) problems of one row's labels.
RowProblems = list[tuple[str, str]]


@dataclass(frozen=True)
class AugmentPolicy:
    """Which random transforms training may use, and how the target follows them.

    ``target``: ``"fixed"`` (the target does not change: a value, a class), ``"points"``
    (normalized (K, 2) coordinates move with the pixels) or ``"direction"`` (an image
    direction in degrees clockwise from up turns with the pixels).
    ``photometric``: ``"full"`` (brightness, contrast, hue, blur, noise) or
    ``"exposure"`` (a gain on all channels and noise only: colour is the signal).
    """

    target: str = "fixed"
    hflip: bool = False
    vflip: bool = False
    rot90: bool = False
    rotate: bool = False
    #: a mild random affine (rotation, scale, shift) and perspective
    warp: bool = False
    photometric: str = "full"
    #: keypoint index permutation under a horizontal flip (points only)
    flip_permutation: tuple[int, ...] = ()
    #: glare spots on top of the photometric jitter (shiny dials)
    glare: bool = False
    #: points only: how far outside the frame (normalized) a warp may move a point; a
    #: point beyond it makes the warp be drawn again
    margin: float = 0.0


@dataclass(frozen=True)
class ImportRule:
    """How labelling tools' annotations become this task's labels (``edgereg data import``).

    ``kind``: ``"points"`` (named points or box centres), ``"label"`` (one class name per
    image) or ``"number"`` (one number per image). ``points``: for ``points``, how many an
    image has: 1 (the one point, box centre or ``--keypoints`` name) or 0 (as many as the
    keypoint order names).
    """

    kind: str
    points: int = 0


@dataclass
class BaselineRule:
    """When a model counts as "clearly better" than its trivial baseline.

    ``kind="error"``: ``key`` (lower is better) at most ``ratio`` of the baseline's;
    ``kind="accuracy"``: closes at least ``ratio`` of the gap between the baseline and 1.
    """

    key: str
    kind: str = "error"
    ratio: float = 0.75
    #: what the baseline predictor does, for messages ("always answering the training mean")
    what: str = "always answering the training mean"


@dataclass
class SampleSet:
    """A task's sample-data generator (``edgereg samples make``)."""

    #: (train, val) image counts by default
    counts: tuple[int, int]
    #: (height, width) of the images
    size: tuple[int, int]
    #: draws every random choice of one image: ``params(rng, **plan_item)``
    params: Callable[..., Params]
    #: renders one image: ``render(params) -> (RGB uint8 image, aux)``
    render: Callable[[Params], tuple[np.ndarray, Any]]
    #: the label of one image, in labels.csv's form
    label: Callable[[Params], Any]
    #: labels.csv's header line
    header: str
    #: one label as the text after ``image,`` in labels.csv
    label_text: Callable[[Any], str]
    #: per-image keyword arguments for ``params`` (e.g. which images show a defect):
    #: ``plan(n, seed, split, **options)`` with this set's :attr:`options`' values
    plan: Callable[..., list[dict[str, Any]]] | None = None
    #: the fewest images a split may have (both classes need one each)
    min_images: int = 1
    description: str = ""
    #: task-specific options of ``edgereg samples make`` (e.g. ``--outside 0.1``); the
    #: command line is built from them, their values go to :attr:`plan`
    options: tuple[TaskOption, ...] = ()


@dataclass(frozen=True)
class BenchVariant:
    """A variant of a task's benchmark (``python -m bench --tasks NAME``): the task's
    sample data made with some of its sample options, e.g. corners outside the frame.

    ``groups`` names the rows the variant is about, from the dataset-form targets
    (N, ...) -> one boolean mask per group (e.g. ``{"a corner outside": ...}``). The
    benchmark also trains on the same data WITHOUT those rows (what a user had to do
    when they were refused) and scores both models on each group of the validation rows.
    """

    name: str
    description: str
    sample_args: tuple[str, ...]
    groups: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None
    #: extra ``edgereg train`` arguments of BOTH runs (after the task's own), e.g. a
    #: shorter schedule: the two runs are compared at the same budget
    train_args: tuple[str, ...] = ()


# --------------------------------------------------------------------------- the task
class TrainTask:
    """One task kind, workstation side. Subclass it in ``train/tasks/<module>.py``."""

    #: the same name as the device task
    name: ClassVar[str] = ""
    #: task-specific options (see :class:`TaskOption`)
    options: ClassVar[tuple[TaskOption, ...]] = ()
    #: labels may come from sub-folder names instead of labels.csv
    folder_labels: ClassVar[bool] = False
    #: square input size when ``--input-size`` is not given
    default_input_size: ClassVar[int] = 160
    #: optimizer steps of a default run, and the most epochs it may take
    default_steps: ClassVar[int] = 1500
    max_default_epochs: ClassVar[int] = 80
    #: where the MobileNetV2 backbone is cut: ``"full"`` (stride 32) or ``"stride16"``
    trunk: ClassVar[str] = "full"
    #: metric names (no baselines), the one that picks checkpoints, and if higher is better
    metric_keys: ClassVar[tuple[str, ...]] = ()
    primary_metric: ClassVar[tuple[str, bool]] = ("", False)
    #: arguments the demo and the benchmark train and make samples with
    demo_train_args: ClassVar[tuple[str, ...]] = ()
    demo_sample_args: ClassVar[tuple[str, ...]] = ()
    #: the benchmark's bar (text) and the metrics its table shows
    bench_bar: ClassVar[str] = ""
    bench_metrics: ClassVar[tuple[str, ...]] = ()
    #: the hand-rolled recipe of bench/handrolled.py this task is compared with (or None)
    handrolled: ClassVar[str | None] = None

    def bench_variants(self) -> tuple[BenchVariant, ...]:
        """Variants of this task's benchmark (see :class:`BenchVariant`). Default none."""
        return ()

    @property
    def device(self) -> DeviceTask:
        """The device side of this task (``edge_runtime/tasks``)."""
        return device_tasks.get(self.name)

    # ----------------------------------------------------------------- options
    def option_names(self, *, labels_only: bool = False) -> set[str]:
        return {o.name for o in self.options if o.labels or not labels_only}

    def check_options(self, opts: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and normalise this task's options (defaults filled in)."""
        out: dict[str, Any] = {}
        for o in self.options:
            v = opts.get(o.name, None)
            if v is None or (o.nargs > 1 and v == ()):
                v = o.default
            elif o.parse is not None and not (o.is_flag and isinstance(v, bool)):
                v = o.parse(v)
            out[o.name] = v
        return out

    # ----------------------------------------------------------------- labels.csv
    def label_columns(self, header: list[str], opts: Mapping[str, Any]) -> LabelColumns:
        """Find the task's columns in the header (raise :class:`HeaderProblem`)."""
        raise NotImplementedError

    def parse_cells(self, cells: list[str], cols: LabelColumns) -> tuple[Any, RowProblems]:
        """One row's label cells -> the raw label (numbers or text) and its problems."""
        return _parse_numbers(cells, cols)

    def folder_label(self, folder: str) -> Any:
        """The raw label of an image in the sub-folder ``folder`` (folder_labels tasks)."""
        return folder

    def vocabulary(
        self, raws: Sequence[Any], given: Sequence[str] | None
    ) -> tuple[tuple[str, ...], list[str]]:
        """The label vocabulary (class names) and dataset-level problems. Default none."""
        return (), []

    def make_target(
        self,
        raw: Any,
        width: int,
        height: int,
        cols: LabelColumns,
        opts: Mapping[str, Any],
        vocabulary: tuple[str, ...],
    ) -> tuple[np.ndarray | None, RowProblems]:
        """The raw label of an image of ``width`` x ``height`` -> the dataset-form target."""
        raise NotImplementedError

    def dataset_checks(
        self, targets: list[np.ndarray], vocabulary: tuple[str, ...], strict: bool
    ) -> tuple[list[str], list[str]]:
        """Dataset-level (problems, warnings) once every row is read. Default none."""
        return [], []

    def describe(
        self, targets: np.ndarray, vocabulary: tuple[str, ...], target_name: str
    ) -> tuple[dict[str, Any], list[str], list[str]]:
        """Statistics of the usable targets: (stats, report lines, warnings)."""
        return {}, [], []

    def label_warnings(
        self, raws: Sequence[Any], cols: LabelColumns, opts: Mapping[str, Any]
    ) -> list[str]:
        """Plausible mistakes in the raw labels (as read from labels.csv, before any
        conversion) under the label options ``opts``: warnings, not problems (e.g. labels
        in [0, 1] read with ``--coords pixels``). Default none."""
        return []

    def stack(self, targets: Sequence[np.ndarray], num_keypoints: int) -> np.ndarray:
        """Targets of a dataset as one array (an empty dataset too)."""
        return np.array([float(t) for t in targets], dtype=np.float32)

    def strata(self, targets: np.ndarray) -> np.ndarray | None:
        """Groups the validation split keeps in proportion (class labels), or None."""
        return None

    def label_options_from_spec(self, spec: ModelSpec, data_dir: Any) -> dict[str, Any]:
        """Label options a model's spec implies for scoring it on ``data_dir`` (used where
        neither the user nor the run's config says). Default none."""
        return {}

    def dataset_fits(self, spec: ModelSpec, ds: Any) -> str | None:
        """Why a dataset cannot be scored against a model of ``spec`` (or None)."""
        return None

    # ----------------------------------------------------------------- the model
    def spec_fields(
        self, opts: Mapping[str, Any], ds: Any, train_targets: np.ndarray
    ) -> dict[str, Any]:
        """Task-specific :class:`ModelSpec` keyword arguments for a new run."""
        return {}

    def training_target(self, spec: ModelSpec, y: np.ndarray) -> np.ndarray:
        """Dataset-form targets (N, ...) -> what the loss compares the output with."""
        raise NotImplementedError

    def build_head(self, spec: ModelSpec, features: Any, dropout: float) -> Any:
        """The head on the backbone's feature map; its last layer is named ``output``."""
        raise NotImplementedError

    def loss(self, spec: ModelSpec) -> Any:
        """The Keras loss on :meth:`training_target`."""
        import keras

        return keras.losses.Huber(delta=0.02)

    # ----------------------------------------------------------------- metrics
    def compute_metrics(
        self,
        spec: ModelSpec,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        image_sizes: np.ndarray,
        train_targets: np.ndarray | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model metrics, the same metrics of the trivial baseline), in user units."""
        raise NotImplementedError

    def baseline_rule(
        self, spec: ModelSpec, metrics: Mapping[str, Any] | None = None
    ) -> BaselineRule:
        """When this task's model counts as clearly better than its baseline (``metrics``
        may name the baseline, e.g. the majority class)."""
        key, _ = self.primary_metric
        return BaselineRule(key)

    def format_details(self, spec: ModelSpec, metrics: Mapping[str, Any]) -> str | None:
        """Text after the metrics table (e.g. a confusion matrix), or None."""
        return None

    def checklist(self) -> list[str]:
        """What to check, task-specific, when a model does not beat its baseline."""
        return []

    def sanity_error(
        self, spec: ModelSpec, y: np.ndarray, pred: np.ndarray
    ) -> tuple[float, bool, str]:
        """``--sanity``: (error, fitted?, what the error is) on the overfitted images."""
        raise NotImplementedError

    def disagreement(
        self, spec: ModelSpec, raw: np.ndarray, ref: np.ndarray, image_sizes: np.ndarray
    ) -> dict[str, float]:
        """How far a converted model's raw outputs are from Keras', in user units."""
        d = np.abs(np.asarray(raw) - np.asarray(ref))
        return {"max_raw": float(d.max()), "mean_raw": float(d.mean())}

    # ----------------------------------------------------------------- augmentation
    def augment_policy(self, spec: ModelSpec) -> AugmentPolicy:
        """What augmentation may do to this task's images (see :class:`AugmentPolicy`)."""
        inv = set(spec.invariances)
        return AugmentPolicy(
            hflip="hflip" in inv, vflip="vflip" in inv, rot90="rot90" in inv, rotate="rotate" in inv
        )

    def to_geometry(self, spec: ModelSpec, target: np.ndarray) -> np.ndarray:
        """A dataset-form target -> the form augmentation moves (see AugmentPolicy.target)."""
        return target

    def from_geometry(self, spec: ModelSpec, geometry: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_geometry`."""
        return geometry

    # ----------------------------------------------------------------- presentation
    def samples(self) -> SampleSet | None:
        """The sample-data generator, or None when the task has none."""
        return None

    def plot_pred_vs_true(
        self, spec: ModelSpec, y_true: np.ndarray, y_pred: np.ndarray, plt: Any
    ) -> Any:
        """A matplotlib figure: predictions against the truth."""
        raise NotImplementedError

    def plot_errors(
        self,
        spec: ModelSpec,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        image_sizes: np.ndarray | None,
        ax: Any,
    ) -> None:
        """An error histogram in user units on ``ax``."""
        raise NotImplementedError

    def plot_example(
        self, spec: ModelSpec, ax: Any, image: np.ndarray, truth: Any, pred: Any
    ) -> None:
        """Draw one validation image's truth (green) and prediction (red) on ``ax``."""

    #: the legend of the examples grid
    examples_legend: ClassVar[str] = "green = true, red = predicted"
    #: what :meth:`example_errors` measures, for the examples grid's title
    example_error_name: ClassVar[str] = "absolute error"

    def example_errors(self, spec: ModelSpec, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """How wrong each example is (N,), larger is worse: the examples grid shows the
        worst. Default: the mean absolute difference of the dataset forms."""
        n = len(y_true)
        t = np.asarray(y_true, np.float64).reshape(n, -1)
        p = np.asarray(y_pred, np.float64).reshape(n, -1)
        return np.abs(p - t).mean(axis=1)

    # ----------------------------------------------------------------- importing
    #: how ``edgereg data import`` fills this task's labels (None: it cannot)
    import_rule: ClassVar[ImportRule | None] = None

    def import_header(self, num_points: int) -> list[str]:
        """The label columns ``edgereg data import`` writes (after ``image``)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<train task {self.name}>"


# --------------------------------------------------------------------------- helpers
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+(?:[eE][+-]?\d+)?")


def _parse_numbers(cells: list[str], cols: LabelColumns) -> tuple[list[float | None], RowProblems]:
    import math

    vals: list[float | None] = []
    problems: RowProblems = []
    for text, name in zip(cells, cols.names, strict=True):
        try:
            v: float | None = float(text)
        except ValueError:
            v = None
            if cols.decimal_comma and _DECIMAL_COMMA.fullmatch(text):
                v = float(text.replace(",", "."))
                cols.decimal_commas += 1
            else:
                hint = (
                    " (a decimal comma? labels.csv separated by ',' needs 0.5)"
                    if (_DECIMAL_COMMA.fullmatch(text))
                    else ""
                )
                problems.append((name, f"{text!r} is not a number{hint}"))
        if v is not None and not math.isfinite(v):
            problems.append((name, f"{text} is not a finite number"))
        vals.append(v)
    return vals, problems


def one_column(header: list[str], name: str, task: str, note: str = "") -> LabelColumns:
    """The task's single label column ``name`` (case-insensitive), or HeaderProblem."""
    lc = [h.lower() for h in header]
    want = name.lower()
    if want not in lc:
        raise HeaderProblem(
            f"missing header column(s) {want} (header is '{','.join(header)}'; a {task} CSV "
            f"needs image,{want}{note})",
            want,
        )
    i = lc.index(want)
    return LabelColumns([i], [header[i]], header[i])


def exact(v: float) -> str:
    """A number with as many digits as it takes to tell it from its neighbours: 1 stays
    ``1``, but 1.0000001 is not shown as ``1`` (which would hide why it is out of range)."""
    f = float(v)
    short = f"{f:g}"
    return short if float(short) == f else repr(f)


def parse_number(text: Any, what: str) -> float:
    """A finite number from an option, or OptionError (exit 2) naming ``what``."""
    import math

    try:
        v = float(text)
    except (TypeError, ValueError):
        raise OptionError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise OptionError(f"{what}: {text!r} is not a finite number")
    return v


@dataclass
class MetricsPair:
    """Model and baseline metrics, for tasks that build them step by step."""

    model: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
