"""Model output -> a typed :class:`Result` in the user's units and the full frame's coordinates."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .spec import ModelSpec


@dataclass
class Result:
    """One frame's answer.

    ``points`` are normalized (x, y) in [0, 1] of the FULL frame given to ``predict``
    (the ROI is undone), origin top-left; ``points_px`` are the same in that frame's
    pixels (``x * width``, ``y * height``; continuous coordinates, pixel centres at +0.5).
    """

    task: str
    raw: np.ndarray
    points: np.ndarray | None = None
    points_px: np.ndarray | None = None
    value: float | None = None
    label: str | None = None
    probabilities: dict[str, float] | None = None
    invoke_ms: float = 0.0
    total_ms: float = 0.0
    timestamp_ms: float | None = None
    units: str = ""
    frame_size: tuple[int, int] | None = field(default=None)  # (width, height)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN/inf become None)."""
        d: dict[str, Any] = {"task": self.task}
        if self.points is not None:
            d["points"] = _floats(self.points)
            d["points_px"] = _floats(self.points_px) if self.points_px is not None else None
        if self.value is not None:
            d["value"] = _float(self.value)
            if self.units:
                d["units"] = self.units
        if self.label is not None:
            d["label"] = self.label
            d["probabilities"] = {k: _float(v) for k, v in (self.probabilities or {}).items()}
        d["raw"] = _floats(self.raw)
        d["invoke_ms"] = round(float(self.invoke_ms), 3)
        d["total_ms"] = round(float(self.total_ms), 3)
        d["timestamp_ms"] = None if self.timestamp_ms is None else float(self.timestamp_ms)
        return d


def _float(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def _floats(a: np.ndarray) -> Any:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 0:
        return _float(arr)
    return [_floats(x) for x in arr]


def roi_to_frame(
    points: np.ndarray,
    roi: tuple[int, int, int, int] | None,
    frame_w: int,
    frame_h: int,
) -> np.ndarray:
    """(K, 2) points normalized to the ROI -> normalized to the full frame."""
    if roi is None:
        return points
    x, y, w, h = roi
    out = np.empty_like(points, dtype=np.float32)
    out[:, 0] = (x + points[:, 0] * w) / frame_w
    out[:, 1] = (y + points[:, 1] * h) / frame_h
    return out


def invert_transform(points: np.ndarray, name: str, spec: ModelSpec) -> np.ndarray:
    """Coordinates predicted on a transformed image -> coordinates on the original image.

    ``hflip`` also swaps the spec's flip pairs (left/right keypoints trade places).
    """
    p = np.asarray(points, dtype=np.float32)
    x, y = p[:, 0], p[:, 1]
    if name == "identity":
        return p
    if name == "hflip":
        out = np.stack([1 - x, y], axis=1)
        for a, b in spec.flip_pairs:
            out[[a, b]] = out[[b, a]]
        return out
    if name == "vflip":
        return np.stack([x, 1 - y], axis=1)
    # np.rot90 (counter-clockwise): (x, y) -> rot90: (y, 1-x); rot180: (1-x, 1-y);
    # rot270: (1-y, x). Invert each.
    if name == "rot90":
        return np.stack([1 - y, x], axis=1)
    if name == "rot180":
        return np.stack([1 - x, 1 - y], axis=1)
    if name == "rot270":
        return np.stack([y, 1 - x], axis=1)
    raise ValueError(f"transform {name!r} cannot be inverted for coordinates")


def decode_result(
    spec: ModelSpec,
    raw: np.ndarray,
    frame_w: int,
    frame_h: int,
    roi: tuple[int, int, int, int] | None = None,
    points: np.ndarray | None = None,
) -> Result:
    """Build a :class:`Result` from the dequantized output (or already-decoded ``points``)."""
    raw = np.asarray(raw, dtype=np.float32).reshape(-1)
    res = Result(task=spec.task, raw=raw, units=spec.units, frame_size=(frame_w, frame_h))
    if spec.task in ("point", "keypoints"):
        pts = spec.decode_output(raw) if points is None else points
        pts = roi_to_frame(np.asarray(pts, dtype=np.float32), roi, frame_w, frame_h)
        res.points = pts
        res.points_px = pts * np.array([frame_w, frame_h], dtype=np.float32)
    elif spec.task == "value":
        res.value = float(spec.decode_output(raw))
    else:
        set_probabilities(res, spec, spec.decode_output(raw))
    return res


def set_probabilities(res: Result, spec: ModelSpec, probs: np.ndarray) -> None:
    """Fill ``label`` and ``probabilities`` of a class result."""
    p = np.asarray(probs, dtype=np.float32).reshape(-1)
    res.probabilities = {n: float(v) for n, v in zip(spec.class_names, p, strict=True)}
    res.label = spec.class_names[int(np.argmax(p))]
