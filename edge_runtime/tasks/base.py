"""What a task kind must say on the device: :class:`DeviceTask`.

A task's prediction has two forms:

- the *dataset form*: what ``ModelSpec.decode_output`` returns and what labels are turned
  into (e.g. (K, 2) normalized coordinates, a value in units, class probabilities, an
  angle in degrees) for one image, with any leading batch axes;
- the *result fields*: the named, JSON-safe numbers of one frame's
  :class:`edge_runtime.postprocess.Result` in the FULL frame's geometry (the ROI undone).

Only numpy and OpenCV here: this runs on the device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import SpecError

if TYPE_CHECKING:  # pragma: no cover
    from ..postprocess import Result
    from ..spec import ModelSpec


@dataclass(frozen=True)
class FrameGeometry:
    """The frame a prediction was made on: its size and the ROI the model saw."""

    width: int
    height: int
    roi: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class OutputMetadata:
    """What the model's output tensor is, for the standard TFLite Metadata other tools
    read (``convert/tflite_metadata.py``): a name, a description, and class labels (a
    classification output with a label file) or none (a plain feature output)."""

    name: str
    description: str
    labels: tuple[str, ...] = ()


class DeviceTask:
    """One task kind, device side. Subclass it in ``edge_runtime/tasks/<module>.py``.

    The defaults fit a target that does not move when the image is flipped or rotated
    (a value, a class): override what differs.
    """

    #: The task's name in specs, on the command line and in results.
    name: ClassVar[str] = ""
    #: One line for ``--task`` help: what the model answers.
    summary: ClassVar[str] = ""
    #: Display order in help and tables (lower first).
    order: ClassVar[int] = 100
    #: Task-specific :class:`ModelSpec` fields this task reads. Every other task-specific
    #: field must keep its default (see ``ModelSpec.validate``).
    spec_fields: ClassVar[frozenset[str]] = frozenset()
    #: Whether a free rotation (not a multiple of 90 degrees) may be used at test time.
    free_rotation_tta: ClassVar[bool] = True

    # ----------------------------------------------------------------- the spec
    def validate_spec(self, spec: ModelSpec) -> None:
        """Raise :class:`SpecError` naming the first task-specific field that is wrong."""

    def output_size(self, spec: ModelSpec) -> int:
        """Number of values in the model's single output tensor."""
        raise NotImplementedError

    def decode(self, spec: ModelSpec, raw: np.ndarray) -> np.ndarray:
        """Raw outputs (..., output_size) -> the dataset form (see the module docstring)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- results
    def result_fields(
        self, spec: ModelSpec, decoded: np.ndarray, frame: FrameGeometry
    ) -> dict[str, Any]:
        """One frame's decoded prediction -> the Result's named fields (full frame)."""
        raise NotImplementedError

    def prediction(self, spec: ModelSpec, result: Result) -> np.ndarray:
        """A Result back in the dataset form (for evaluation on whole images)."""
        raise NotImplementedError

    def result_json(self, spec: ModelSpec | None, outputs: dict[str, Any]) -> dict[str, Any]:
        """The result fields as JSON numbers, each rounded to what the model can resolve
        (the resolution :meth:`result_schema` declares). Non-finite numbers become None.
        ``spec`` is None for a result made without one (then nothing is rounded)."""
        return {k: json_number(v) for k, v in outputs.items()}

    def result_schema(self, spec: ModelSpec | None = None) -> dict[str, Any]:
        """The JSON Schema of :meth:`result_json`'s fields: ``{"properties": {...},
        "required": [...]}``. Without ``spec`` it describes every model of the task (for
        ``docs/result.schema.json``); with one it is exact (class names, decimals)."""
        return {"properties": {}, "required": []}

    def smoothing_vector(self, spec: ModelSpec, result: Result) -> np.ndarray:
        """The numbers a smoothing filter averages across frames (1-D float)."""
        return np.asarray(self.prediction(spec, result), np.float64).reshape(-1)

    def apply_smoothed(self, spec: ModelSpec, result: Result, vector: np.ndarray) -> None:
        """Write smoothed numbers (from :meth:`smoothing_vector`) back into the result."""
        shape = np.shape(self.prediction(spec, result))
        decoded = np.asarray(vector, np.float32).reshape(shape)
        frame = FrameGeometry(*(result.frame_size or (1, 1)))
        result.outputs.update(self.result_fields(spec, decoded, frame))

    # ----------------------------------------------------------------- test-time augmentation
    def tta_transforms(self, spec: ModelSpec) -> list[str]:
        """Transforms to average over: identity plus one per invariance the spec declares."""
        return invariance_transforms(spec, self.free_rotation_tta)

    def tta_invert(self, spec: ModelSpec, decoded: np.ndarray, transform: str) -> np.ndarray:
        """A prediction made on a transformed image -> the prediction for the original."""
        return decoded

    def tta_merge(self, spec: ModelSpec, decoded: Sequence[np.ndarray]) -> np.ndarray:
        """Combine the (inverted) predictions of every transform."""
        return np.mean(np.stack([np.asarray(d, np.float32) for d in decoded]), axis=0)

    # ----------------------------------------------------------------- presentation
    def text(self, spec: ModelSpec, result: Result) -> str:
        """A short line for the annotated frame (e.g. ``"213.4 mg/L"``)."""
        return ""

    def draw(self, spec: ModelSpec, image_bgr: np.ndarray, result: Result) -> None:
        """Draw the result's geometry on the frame, in place (text is drawn by the caller)."""

    def csv_columns(self, spec: ModelSpec) -> list[str]:
        """The task's columns of ``edgereg run --csv`` (after frame, t, latency...)."""
        raise NotImplementedError

    def csv_values(self, spec: ModelSpec, result: Result) -> list[str]:
        """One frame's values for :meth:`csv_columns`."""
        raise NotImplementedError

    def int8_note(self, spec: ModelSpec, output_scale: float) -> str:
        """What one step of an int8 output means in the user's units (conversion report)."""
        return f"the output is int8 with scale {output_scale:.4g}"

    def output_metadata(self, spec: ModelSpec) -> OutputMetadata:
        """The output tensor for other tools (standard TFLite Metadata): what its numbers
        are and how to read them without edgereg."""
        return OutputMetadata(self.name, f"{self.summary} ({self.output_size(spec)} values)")

    def __repr__(self) -> str:
        return f"<task {self.name}>"


# --------------------------------------------------------------------------- shared helpers
def import_task_modules(package: str, path: Sequence[str]) -> None:
    """Import every public module of a task package: each registers its task kind."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(path):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{package}.{info.name}")


def invariance_transforms(spec: ModelSpec, free_rotation: bool = True) -> list[str]:
    """identity, plus ``hflip``/``vflip`` and ``rot90/180/270`` (square inputs only) per the
    spec's invariances, and ``rot+15``/``rot-15`` for ``rotate`` when ``free_rotation``."""
    out = ["identity"]
    square = spec.input_height == spec.input_width
    for inv in spec.invariances:
        if inv in ("hflip", "vflip"):
            out.append(inv)
        elif inv == "rot90" and square:
            out += ["rot90", "rot180", "rot270"]
        elif inv == "rotate" and free_rotation:
            out += ["rot+15", "rot-15"]
    return list(dict.fromkeys(out))


def fmt_number(v: Any, digits: int = 6) -> str:
    """A CSV cell: the number rounded to ``digits``, empty for None/NaN/inf."""
    if v is None:
        return ""
    f = float(v)
    if not math.isfinite(f):
        return ""
    return repr(round(f, digits))


def json_number(v: Any, decimals: int | None = None) -> Any:
    """Numbers (scalars, arrays, nested lists, dicts of them) -> JSON numbers rounded to
    ``decimals`` (None: not rounded); NaN and inf become None, other values pass."""
    if isinstance(v, dict):
        return {str(k): json_number(x, decimals) for k, x in v.items()}
    if isinstance(v, (np.ndarray, list, tuple)):
        arr = np.asarray(v)
        if arr.dtype.kind in "fiub" and arr.ndim > 0:
            return [json_number(x, decimals) for x in arr]
        if arr.ndim > 0:
            return [json_number(x, decimals) for x in v]
        v = arr.item()
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return None
        return f if decimals is None else round(f, decimals)
    return v


def span_decimals(low: float, high: float, fraction: float = 1e-4) -> int:
    """Decimals that resolve ``fraction`` of the span ``high - low`` (as a power of ten):
    a range of 80..350 (270) -> 2 (0.01); 0..1 -> 4. Never negative."""
    span = abs(float(high) - float(low))
    if not math.isfinite(span) or span <= 0:
        return 6
    return max(0, -math.floor(math.log10(span * fraction)))


def number_schema(
    description: str,
    decimals: int | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> dict[str, Any]:
    """A JSON Schema for one number of a result (``null`` when it was not finite).
    ``x-decimals`` (an annotation of edgereg's own) says how many decimals it is rounded to."""
    out: dict[str, Any] = {"type": ["number", "null"], "description": description}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    if decimals is not None:
        out["x-decimals"] = decimals
    return out


def check_pair(v: Any, name: str) -> tuple[float, float]:
    """Two finite numbers (low, high), or SpecError naming ``name``."""
    try:
        a, b = v
        a, b = float(a), float(b)
    except (TypeError, ValueError, OverflowError):
        raise SpecError(f"{name}: must be two numbers [low, high], got {v!r}") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise SpecError(f"{name}: must be finite, got {v!r}")
    return a, b
