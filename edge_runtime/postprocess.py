"""Model output -> a :class:`Result` in the user's units and the full frame's coordinates.

Which fields a result has is the task's business (``edge_runtime/tasks/<task>.py``):
``point``/``keypoints`` give ``points`` and ``points_px``, ``value`` gives ``value``,
``class`` gives ``label`` and ``probabilities``, ``angle`` gives ``angle`` (and ``reading``
on a gauge). They are read as attributes (``result.points_px``) or from ``outputs``.

:meth:`Result.to_dict` is the ``result`` object of a JSON line (``docs/result.schema.json``):
each number rounded to what the model can resolve (the task's ``result_json``), the frame's
size, and the timings; the raw model output only when asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import tasks
from .errors import SpecError
from .spec import ModelSpec
from .tasks import FrameGeometry

#: Decimals of every time in milliseconds in a JSON line (10 microseconds).
MS_DECIMALS = 2


@dataclass
class Result:
    """One frame's answer.

    ``outputs`` holds the task's named fields (see the module docstring), in the order the
    task defines; coordinates are normalized to the FULL frame given to ``predict`` (the
    ROI is undone), origin top-left, and ``*_px`` fields are in that frame's pixels.
    """

    task: str
    raw: np.ndarray
    outputs: dict[str, Any] = field(default_factory=dict)
    invoke_ms: float = 0.0
    total_ms: float = 0.0
    timestamp_ms: float | None = None
    frame_size: tuple[int, int] | None = field(default=None)  # (width, height)
    #: the spec the result was decoded with (its task rounds the JSON numbers)
    spec: ModelSpec | None = field(default=None, repr=False, compare=False)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: the task's fields read as attributes.
        outputs = self.__dict__.get("outputs")
        if outputs is not None and name in outputs:
            return outputs[name]
        raise AttributeError(f"a {self.__dict__.get('task', '?')} result has no field {name!r}")

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        """The JSON-safe ``result`` object (NaN/inf become None): ``task``, the task's
        fields (rounded by the task), ``frame_width``/``frame_height``, ``invoke_ms``,
        ``total_ms``, and with ``raw`` the model's dequantized output (for debugging).
        The frame's timestamp is not repeated here: it is ``t`` of the JSON line."""
        d: dict[str, Any] = {"task": self.task}
        try:
            kind = tasks.get(self.task)
        except SpecError:  # a task no longer registered (a test's toy task): plain numbers
            d.update({k: _jsonable(v) for k, v in self.outputs.items()})
        else:
            d.update(kind.result_json(self.spec, self.outputs))
        w, h = self.frame_size if self.frame_size is not None else (None, None)
        d["frame_width"], d["frame_height"] = w, h
        d["invoke_ms"] = round(float(self.invoke_ms), MS_DECIMALS)
        d["total_ms"] = round(float(self.total_ms), MS_DECIMALS)
        if raw:
            d["raw"] = _jsonable(self.raw)
        return d


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (np.ndarray, list, tuple)):
        arr = np.asarray(v)
        if arr.dtype.kind in "fiu":
            return _floats(arr)
        return [_jsonable(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return _float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _float(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def _floats(a: np.ndarray) -> Any:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 0:
        return _float(arr)
    return [_floats(x) for x in arr]


def decode_result(
    spec: ModelSpec,
    raw: np.ndarray,
    frame_w: int,
    frame_h: int,
    roi: tuple[int, int, int, int] | None = None,
    decoded: np.ndarray | None = None,
) -> Result:
    """Build a :class:`Result` from the dequantized output (or an already-decoded one)."""
    raw = np.asarray(raw, dtype=np.float32).reshape(-1)
    task = tasks.get(spec.task)
    dec = spec.decode_output(raw) if decoded is None else decoded
    res = Result(task=spec.task, raw=raw, frame_size=(frame_w, frame_h), spec=spec)
    res.outputs = task.result_fields(spec, dec, FrameGeometry(frame_w, frame_h, roi))
    return res
