"""The model spec: the one contract shared by training, conversion and the device runtime.

A spec says everything the device needs to turn a camera frame into a number with a
model file: which task, the input size and colour order, how pixels are normalized
(inside the model: it takes raw 0..255 RGB values), how raw outputs decode into the
user's units, class names, keypoint flip pairs and the invariances of the target.

It is written as JSON into ``runs/NAME/spec.json`` and embedded inside every exported
``.tflite`` (see :mod:`edge_runtime.metadata`), so one model file is the whole deployable.

This module imports nothing but numpy and the standard library: ``train/``, ``convert/``
and ``edge_runtime/`` all import it, and ``edge_runtime`` imports nothing from the others.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from . import tasks
from .errors import SpecError
from .tasks import DeviceTask
from .tasks.base import check_pair

SPEC_VERSION = 1
COLOR_ORDERS = ("RGB", "BGR")
INVARIANCES = ("hflip", "vflip", "rot90", "rotate")
# "flip" on the command line means both mirrors.
INVARIANCE_ALIASES = {"flip": ("hflip", "vflip")}
RESIZE_MODES = ("stretch",)
INTERPOLATIONS = ("area", "linear")

#: Task-specific fields and their defaults (a task may read only its own).
TASK_FIELD_DEFAULTS: dict[str, Any] = {
    "num_keypoints": 0,
    "value_range": None,
    "class_names": (),
    "flip_pairs": (),
    "params": {},
}

#: A spec is small. Anything larger or deeper is refused before it is parsed further.
MAX_SPEC_BYTES = 64 * 1024
MAX_SPEC_DEPTH = 8


@dataclass(frozen=True)
class ModelSpec:
    """What a model is and how to feed it and read it.

    Coordinates are normalized to [0, 1] of the frame (or ROI) the model saw, origin
    top-left, x to the right, y down. Values are decoded as ``lo + y * (hi - lo)`` where
    the model's raw output ``y`` is the target normalized over ``value_range``.
    Class outputs are probabilities over ``class_names`` in that order.
    """

    task: str
    input_height: int
    input_width: int
    color_order: str = "RGB"
    #: The model takes raw pixel values in this range; normalization lives inside it.
    input_range: tuple[float, float] = (0.0, 255.0)
    #: How a frame (or ROI) becomes the model input: stretched to the input size.
    resize: str = "stretch"
    interpolation: str = "area"
    # Task-specific fields: each task kind reads some (its ``spec_fields``, see
    # edge_runtime/tasks); the others must keep these defaults.
    #: point: 1; keypoints: K.
    num_keypoints: int = 0
    #: value: (lo, hi) in the user's units; the model outputs (v - lo) / (hi - lo).
    value_range: tuple[float, float] | None = None
    class_names: tuple[str, ...] = ()
    #: keypoints that swap under a horizontal flip, as 0-based index pairs.
    flip_pairs: tuple[tuple[int, int], ...] = ()
    #: Any other task's parameters (JSON-safe), checked by that task (e.g. angle's zero).
    params: Mapping[str, Any] = field(default_factory=dict)
    # Shared by every task.
    #: The user's units of the answer (mg/L, bar), shown with results.
    units: str = ""
    #: The label column(s) the model was trained on.
    target_name: str = "value"
    #: transforms of the image under which the target does not change.
    invariances: tuple[str, ...] = ()
    backbone: str = ""
    name: str = ""
    spec_version: int = SPEC_VERSION
    #: Free-form, JSON-safe facts (training metrics, versions). Never needed to run.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- shape facts
    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The model input tensor's shape: static batch of 1, NHWC, 3 channels."""
        return (1, self.input_height, self.input_width, 3)

    @property
    def output_size(self) -> int:
        """Number of values in the model's (single) output tensor."""
        return self.task_kind.output_size(self)

    @property
    def task_kind(self) -> DeviceTask:
        """The task's definition on the device (``edge_runtime/tasks``)."""
        return tasks.get(self.task)

    # ----------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise :class:`SpecError` naming the first field that is wrong."""
        if self.spec_version != SPEC_VERSION:
            raise SpecError(
                f"spec_version: this edgereg reads version {SPEC_VERSION}, the model has "
                f"{self.spec_version!r}; upgrade edgereg or re-export the model"
            )
        task = tasks.get(self.task)  # SpecError naming the known tasks
        for name in ("input_height", "input_width"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 8 <= v <= 4096:
                raise SpecError(f"{name}: must be an integer from 8 to 4096, got {v!r}")
        if self.color_order not in COLOR_ORDERS:
            raise SpecError(f"color_order: {self.color_order!r} is not one of RGB, BGR")
        lo, hi = check_pair(self.input_range, "input_range")
        if not hi > lo:
            raise SpecError(f"input_range: high must be above low, got {self.input_range!r}")
        if self.resize not in RESIZE_MODES:
            raise SpecError(f"resize: {self.resize!r} is not one of {', '.join(RESIZE_MODES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise SpecError(
                f"interpolation: {self.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}"
            )
        k = self.num_keypoints
        if not isinstance(k, int) or isinstance(k, bool):
            raise SpecError(f"num_keypoints: must be an integer, got {k!r}")
        if not isinstance(self.params, Mapping):
            raise SpecError("params: must be a JSON object")
        self._validate_task_fields(task)
        for inv in self.invariances:
            if inv not in INVARIANCES:
                raise SpecError(f"invariances: {inv!r} is not one of {', '.join(INVARIANCES)}")
        if not isinstance(self.extra, Mapping):
            raise SpecError("extra: must be a JSON object")
        task.validate_spec(self)

    def _validate_task_fields(self, task: DeviceTask) -> None:
        """A task-specific field the task does not read must keep its default."""
        for name, default in TASK_FIELD_DEFAULTS.items():
            if name in task.spec_fields or getattr(self, name) == default:
                continue
            owners = [t.name for t in tasks.tasks() if name in t.spec_fields]
            raise SpecError(
                f"{name}: a {self.task} model has none; it belongs to "
                f"{' and '.join(owners) or 'no task'} models"
            )

    # ----------------------------------------------------------------- outputs
    def decode_output(self, raw: np.ndarray) -> np.ndarray:
        """The model's raw output (last axis = ``output_size``) -> the user's units.

        The task decides the form (edge_runtime/tasks): point/keypoints (..., K, 2)
        normalized x, y bounded to [0, 1]; value (...,) in units bounded to
        ``value_range``; class (..., C) probabilities; angle (...,) degrees.
        """
        y = np.asarray(raw, dtype=np.float32)
        if y.shape[-1] != self.output_size:
            raise SpecError(
                f"output: the spec expects {self.output_size} values per frame, "
                f"the model gave {y.shape[-1]}"
            )
        return self.task_kind.decode(self, y)

    # ----------------------------------------------------------------- (de)serialization
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        d["params"] = dict(self.params)
        return _jsonable(d)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    def with_extra(self, **items: Any) -> ModelSpec:
        return replace(self, extra={**self.extra, **items})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        if not isinstance(d, Mapping):
            raise SpecError(f"spec: must be a JSON object, got {type(d).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"{unknown[0]}: unknown spec field (this edgereg knows {len(known)})")
        for required in ("task", "input_height", "input_width"):
            if required not in d:
                raise SpecError(f"{required}: missing from the spec")
        kw: dict[str, Any] = dict(d)
        try:
            for name in ("input_range", "value_range"):
                if kw.get(name) is not None:
                    kw[name] = tuple(float(x) for x in _seq(kw[name], name))
            for name in ("class_names", "invariances"):
                if name in kw:
                    kw[name] = tuple(_seq(kw[name], name))
            if "flip_pairs" in kw:
                kw["flip_pairs"] = tuple(
                    tuple(_seq(p, "flip_pairs")) for p in _seq(kw["flip_pairs"], "flip_pairs")
                )
        except (TypeError, ValueError, OverflowError) as e:
            if isinstance(e, SpecError):
                raise
            raise SpecError(f"spec: a field has the wrong type ({e})") from None
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSpec:
        if len(text) > MAX_SPEC_BYTES:
            raise SpecError(f"spec: {len(text)} bytes is larger than the {MAX_SPEC_BYTES} allowed")
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise SpecError("spec: not UTF-8 text") from None
        if _nesting_depth(text) > MAX_SPEC_DEPTH:
            raise SpecError(f"spec: nested deeper than {MAX_SPEC_DEPTH} levels")
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as e:
            # ValueError covers JSONDecodeError and integers longer than Python converts.
            raise SpecError(f"spec: not valid JSON ({e})") from None
        return cls.from_dict(d)


def parse_invariances(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"rot90,flip"`` -> ``("rot90", "hflip", "vflip")``; raises SpecError on unknown names."""
    if not text:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        name = raw.strip()
        if not name:
            continue
        for inv in INVARIANCE_ALIASES.get(name, (name,)):
            if inv not in INVARIANCES:
                allowed = ", ".join(INVARIANCES + tuple(INVARIANCE_ALIASES))
                raise SpecError(f"invariances: {name!r} is not one of {allowed}")
            if inv not in out:
                out.append(inv)
    return tuple(out)


def parse_flip_pairs(text: str | None) -> tuple[tuple[int, int], ...]:
    """``"0:1,2:3"`` -> ``((0, 1), (2, 3))``."""
    if not text:
        return ()
    pairs = []
    for item in text.split(","):
        a, sep, b = item.strip().partition(":")
        if not sep or not a.strip().isdigit() or not b.strip().isdigit():
            raise SpecError(f"flip_pairs: {item!r} is not of the form A:B (e.g. 0:1,2:3)")
        pairs.append((int(a), int(b)))
    return tuple(pairs)


# --------------------------------------------------------------------------- helpers
def _seq(v: Any, name: str) -> list[Any]:
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
        raise SpecError(f"{name}: must be a list, got {type(v).__name__}")
    return list(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest
