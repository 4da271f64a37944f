"""``angle``: which way something points (a gauge needle, a part's orientation), in degrees.

Conventions. Inside the model an angle is a direction in the image: degrees CLOCKWISE
FROM UP (12 o'clock), as seen on the screen (x right, y down). The user's labels and
results use the run's own convention, stored in ``spec.params``:

- ``zero_deg``: where the user's 0 points, as an image direction (up 0, right 90,
  down 180, left 270; any number of degrees);
- ``clockwise``: whether the user's angles grow clockwise (True) or counter-clockwise;
- ``gauge`` (optional): ``[a0, a1, v0, v1]``: the dial reads ``v0`` at the user angle
  ``a0`` and ``v1`` at ``a1``, linearly in between, sweeping from ``a0`` towards ``a1`` in
  the direction user angles grow (so 225 -> 135 clockwise is a 270-degree sweep through
  the top). Results then carry ``reading`` in ``spec.units`` beside ``angle``. Outside
  the sweep (the dead zone) the reading is the nearer end.
- ``tta``: the image transforms the model was trained to follow (``hflip``, ``vflip``,
  ``rot90``, ``rotate``); test-time augmentation averages over them.

The model outputs ``(sin t, cos t)`` of the image direction ``t`` from a linear layer:
no wrap-around at 0/360 degrees, and the decoding (``atan2``) does not care about the
vector's length. Results give ``angle`` in [0, 360) in the user's convention.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..errors import SpecError
from . import register
from .base import (
    DeviceTask,
    FrameGeometry,
    OutputMetadata,
    fmt_number,
    json_number,
    number_schema,
    span_decimals,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..postprocess import Result
    from ..spec import ModelSpec

#: Named zero directions, as image directions (degrees clockwise from up).
ZERO_DIRECTIONS = {"up": 0.0, "right": 90.0, "down": 180.0, "left": 270.0}
#: Image transforms an angle model may be trained to follow (and averaged over by TTA).
EQUIVARIANCES = ("hflip", "vflip", "rot90", "rotate")
#: Free rotations used at test time, degrees counter-clockwise (as cv2 rotates).
TTA_ROTATIONS = (15.0, -15.0)
_PARAMS = ("zero_deg", "clockwise", "gauge", "tta")
#: Decimals of ``angle`` in JSON results: 0.01 degree (an int8 output turns in steps of
#: up to ~0.5 degree).
ANGLE_DECIMALS = 2


class AngleTask(DeviceTask):
    name = "angle"
    summary = "an angle in degrees: a gauge needle, an object's orientation (optional gauge units)"
    order = 50
    spec_fields = frozenset({"params"})

    # ----------------------------------------------------------------- spec
    def validate_spec(self, spec: ModelSpec) -> None:
        p = spec.params
        unknown = sorted(set(p) - set(_PARAMS))
        if unknown:
            raise SpecError(f"params: {unknown[0]!r} is not an angle parameter ({_PARAMS})")
        z = p.get("zero_deg", 0.0)
        if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z):
            raise SpecError(f"params.zero_deg: must be a number of degrees, got {z!r}")
        if not isinstance(p.get("clockwise", True), bool):
            raise SpecError("params.clockwise: must be true or false")
        gauge = p.get("gauge")
        if gauge is not None:
            check_gauge(gauge)
        tta = p.get("tta", [])
        if not isinstance(tta, Sequence) or any(t not in EQUIVARIANCES for t in tta):
            raise SpecError(f"params.tta: must be a list of {', '.join(EQUIVARIANCES)}")

    def output_size(self, spec: ModelSpec) -> int:
        return 2

    def decode(self, spec: ModelSpec, raw: np.ndarray) -> np.ndarray:
        y = np.asarray(raw, dtype=np.float64)
        image_deg = np.degrees(np.arctan2(y[..., 0], y[..., 1]))
        return from_image(image_deg, spec.params).astype(np.float32)

    # ----------------------------------------------------------------- results
    def result_fields(
        self, spec: ModelSpec, decoded: np.ndarray, frame: FrameGeometry
    ) -> dict[str, Any]:
        a = float(np.asarray(decoded).reshape(-1)[0])
        out: dict[str, Any] = {"angle": a}
        gauge = spec.params.get("gauge")
        if gauge is not None:
            out["reading"] = float(gauge_reading(a, gauge))
            if spec.units:
                out["units"] = spec.units
        return out

    def prediction(self, spec: ModelSpec, result: Result) -> np.ndarray:
        return np.float32(result.outputs["angle"])

    def result_json(self, spec: ModelSpec | None, outputs: dict[str, Any]) -> dict[str, Any]:
        out = dict(outputs)
        out["angle"] = json_number(outputs["angle"], ANGLE_DECIMALS)
        if "reading" in outputs:
            out["reading"] = json_number(outputs["reading"], reading_decimals(spec))
        return out

    def result_schema(self, spec: ModelSpec | None = None) -> dict[str, Any]:
        angle = number_schema(
            "degrees in [0, 360) in the run's convention (params zero_deg, clockwise); "
            f"rounded to {ANGLE_DECIMALS} decimals",
            ANGLE_DECIMALS,
            0.0,
            360.0,
        )
        reading = number_schema(
            "the dial's reading in the gauge's units (only with params.gauge); rounded to "
            "1e-4 of the gauge's span as a power of ten (0..10 bar -> 0.001)",
            reading_decimals(spec),
        )
        units: dict[str, Any] = {"type": "string", "description": "the gauge's units, if any"}
        props = {"angle": angle, "reading": reading, "units": units}
        required = ["angle"]
        if spec is not None and spec.params.get("gauge") is not None:
            required.append("reading")
        elif spec is not None:
            props = {"angle": angle}
        return {"properties": props, "required": required}

    def smoothing_vector(self, spec: ModelSpec, result: Result) -> np.ndarray:
        t = np.radians(to_image(float(result.outputs["angle"]), spec.params))
        return np.array([math.sin(t), math.cos(t)])

    def apply_smoothed(self, spec: ModelSpec, result: Result, vector: np.ndarray) -> None:
        image_deg = math.degrees(math.atan2(float(vector[0]), float(vector[1])))
        a = np.float32(from_image(image_deg, spec.params))
        frame = FrameGeometry(*(result.frame_size or (1, 1)))
        result.outputs.update(self.result_fields(spec, a, frame))

    # ----------------------------------------------------------------- test-time augmentation
    def tta_transforms(self, spec: ModelSpec) -> list[str]:
        out = ["identity"]
        learnt = spec.params.get("tta", [])
        square = spec.input_height == spec.input_width
        for t in learnt:
            if t in ("hflip", "vflip"):
                out.append(t)
            elif t == "rot90" and square:
                out += ["rot90", "rot180", "rot270"]
            elif t == "rotate":
                out += [f"rot{r:+g}" for r in TTA_ROTATIONS]
        return list(dict.fromkeys(out))

    def tta_invert(self, spec: ModelSpec, decoded: np.ndarray, transform: str) -> np.ndarray:
        t = to_image(np.asarray(decoded, np.float64), spec.params)
        return from_image(invert_image_angle(t, transform), spec.params).astype(np.float32)

    def tta_merge(self, spec: ModelSpec, decoded: Sequence[np.ndarray]) -> np.ndarray:
        t = np.radians(
            to_image(np.stack([np.asarray(d, np.float64) for d in decoded]), spec.params)
        )
        mean = np.degrees(np.arctan2(np.sin(t).mean(axis=0), np.cos(t).mean(axis=0)))
        return from_image(mean, spec.params).astype(np.float32)

    # ----------------------------------------------------------------- presentation
    def text(self, spec: ModelSpec, result: Result) -> str:
        line = f"{result.outputs['angle']:.1f} deg"
        if "reading" in result.outputs:
            units = f" {spec.units}" if spec.units else ""
            line += f"  {result.outputs['reading']:.3g}{units}"
        return line

    def draw(self, spec: ModelSpec, image_bgr: np.ndarray, result: Result) -> None:
        h, w = image_bgr.shape[:2]
        t = math.radians(to_image(float(result.outputs["angle"]), spec.params))
        cx, cy = w / 2.0, h / 2.0
        r = 0.4 * min(w, h)
        tip = (int(round(cx + r * math.sin(t))), int(round(cy - r * math.cos(t))))
        c = (int(round(cx)), int(round(cy)))
        thick = max(1, int(round(min(w, h) / 160)))
        cv2.arrowedLine(image_bgr, c, tip, (0, 0, 0), thick + 2, cv2.LINE_AA, tipLength=0.12)
        cv2.arrowedLine(image_bgr, c, tip, (0, 255, 255), thick, cv2.LINE_AA, tipLength=0.12)

    def csv_columns(self, spec: ModelSpec) -> list[str]:
        return ["angle"] + (["reading"] if spec.params.get("gauge") is not None else [])

    def csv_values(self, spec: ModelSpec, result: Result) -> list[str]:
        row = [fmt_number(result.outputs["angle"], 4)]
        if "reading" in result.outputs:
            row.append(fmt_number(result.outputs["reading"]))
        return row

    def output_metadata(self, spec: ModelSpec) -> OutputMetadata:
        return OutputMetadata(
            "direction",
            "(sin t, cos t) of the direction t in the image, in degrees clockwise from up: "
            "t = atan2(output[0], output[1]); the user's zero and sense are in the "
            "'edgereg_spec' metadata (params)",
        )

    def int8_note(self, spec: ModelSpec, output_scale: float) -> str:
        s = float(output_scale)
        return (
            f"the output (sin, cos) is int8 with scale {s:.4g}: at worst one step turns the "
            f"angle by {math.degrees(s):.2f} degrees"
        )


# --------------------------------------------------------------------------- conventions
def parse_zero(text: str | float) -> float:
    """``up``/``right``/``down``/``left`` or a number of degrees -> the zero's image direction."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        v = float(text)
    else:
        name = str(text).strip().lower()
        if name in ZERO_DIRECTIONS:
            return ZERO_DIRECTIONS[name]
        try:
            v = float(name)
        except ValueError:
            raise SpecError(
                f"zero: {text!r} is not one of {', '.join(ZERO_DIRECTIONS)} or a number of "
                "degrees clockwise from up"
            ) from None
    if not math.isfinite(v):
        raise SpecError(f"zero: {text!r} is not a finite number of degrees")
    return v % 360.0


def to_image(user_deg: Any, params: Mapping[str, Any]) -> Any:
    """The user's angle -> image direction (degrees clockwise from up), in [0, 360)."""
    sign = 1.0 if params.get("clockwise", True) else -1.0
    return np.mod(float(params.get("zero_deg", 0.0)) + sign * np.asarray(user_deg), 360.0)


def from_image(image_deg: Any, params: Mapping[str, Any]) -> Any:
    """Image direction (degrees clockwise from up) -> the user's angle, in [0, 360)."""
    sign = 1.0 if params.get("clockwise", True) else -1.0
    return np.mod(sign * (np.asarray(image_deg) - float(params.get("zero_deg", 0.0))), 360.0)


def invert_image_angle(image_deg: Any, transform: str) -> Any:
    """An image direction seen on a transformed image -> the direction on the original."""
    t = np.asarray(image_deg, np.float64)
    if transform == "identity":
        return t
    if transform == "hflip":  # a mirror left-right turns clockwise into counter-clockwise
        return np.mod(-t, 360.0)
    if transform == "vflip":
        return np.mod(180.0 - t, 360.0)
    if transform in ("rot90", "rot180", "rot270"):  # np.rot90: counter-clockwise quarter turns
        return np.mod(t + {"rot90": 90.0, "rot180": 180.0, "rot270": 270.0}[transform], 360.0)
    if transform.startswith("rot") and transform[3:4] in "+-":  # cv2: + is counter-clockwise
        return np.mod(t + float(transform[3:]), 360.0)
    raise ValueError(f"transform {transform!r} cannot be inverted for angles")


def check_gauge(gauge: Any) -> tuple[float, float, float, float]:
    """``[a0, a1, v0, v1]``: four finite numbers, a0 != a1 (mod 360), v0 != v1."""
    try:
        a0, a1, v0, v1 = (float(v) for v in gauge)
    except (TypeError, ValueError):
        raise SpecError(
            f"gauge: must be four numbers ANGLE0 ANGLE1 VALUE0 VALUE1, got {gauge!r}"
        ) from None
    if not all(math.isfinite(v) for v in (a0, a1, v0, v1)):
        raise SpecError(f"gauge: must be finite numbers, got {gauge!r}")
    if v0 == v1:
        raise SpecError(f"gauge: VALUE0 and VALUE1 must differ, got {v0:g} twice")
    return a0, a1, v0, v1


def reading_decimals(spec: ModelSpec | None) -> int | None:
    """Decimals of ``reading`` in JSON: 1e-4 of the gauge's span (None: no gauge known)."""
    gauge = None if spec is None else spec.params.get("gauge")
    if gauge is None:
        return None
    return span_decimals(float(gauge[2]), float(gauge[3]))


def gauge_sweep(a0: float, a1: float) -> float:
    """Degrees from ``a0`` to ``a1`` the way user angles grow (360 when they coincide)."""
    span = (a1 - a0) % 360.0
    return span if span > 0 else 360.0


def gauge_reading(user_deg: Any, gauge: Sequence[float]) -> Any:
    """The dial's reading at a user angle (vectorised); the dead zone gives the nearer end."""
    a0, a1, v0, v1 = (float(v) for v in gauge)
    span = gauge_sweep(a0, a1)
    d = np.mod(np.asarray(user_deg, np.float64) - a0, 360.0)
    over = d > span
    # In the dead zone: the end the needle is nearer to (past full scale, or below zero).
    d = np.where(over & (d - span < 360.0 - d), span, np.where(over, 0.0, d))
    return v0 + d / span * (v1 - v0)


TASK = register(AngleTask())
