"""``value``: one number in the user's units (a concentration, a level, a count).

The model outputs the target normalized over ``spec.value_range`` (0 at low, 1 at high)
from a linear layer; decoding maps it back to units and bounds it to the range.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SpecError
from . import register
from .base import (
    DeviceTask,
    FrameGeometry,
    OutputMetadata,
    check_pair,
    fmt_number,
    json_number,
    number_schema,
    span_decimals,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..postprocess import Result
    from ..spec import ModelSpec


class ValueTask(DeviceTask):
    name = "value"
    summary = "a number in your units (a concentration from colour, a level)"
    order = 30
    spec_fields = frozenset({"value_range"})

    def validate_spec(self, spec: ModelSpec) -> None:
        if spec.value_range is None:
            raise SpecError("value_range: a value task needs [low, high] in the user's units")
        lo, hi = check_pair(spec.value_range, "value_range")
        if not hi > lo:
            raise SpecError(f"value_range: high must be above low, got {spec.value_range!r}")

    def output_size(self, spec: ModelSpec) -> int:
        return 1

    def decode(self, spec: ModelSpec, raw: np.ndarray) -> np.ndarray:
        lo, hi = spec.value_range  # type: ignore[misc]
        y = np.asarray(raw, dtype=np.float32)
        return (lo + np.clip(y[..., 0], 0.0, 1.0) * (hi - lo)).astype(np.float32)

    def result_fields(
        self, spec: ModelSpec, decoded: np.ndarray, frame: FrameGeometry
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"value": float(np.asarray(decoded).reshape(-1)[0])}
        if spec.units:
            out["units"] = spec.units
        return out

    def prediction(self, spec: ModelSpec, result: Result) -> np.ndarray:
        return np.float32(result.outputs["value"])

    def result_json(self, spec: ModelSpec | None, outputs: dict[str, Any]) -> dict[str, Any]:
        out = dict(outputs)
        out["value"] = json_number(outputs["value"], value_decimals(spec))
        return out

    def result_schema(self, spec: ModelSpec | None = None) -> dict[str, Any]:
        d = value_decimals(spec)
        lo, hi = (None, None) if spec is None else spec.value_range  # type: ignore[misc]
        value = number_schema(
            "the model's answer in the user's units, within the spec's value_range; rounded "
            "to 1e-4 of that range as a power of ten (80..350 -> 0.01)",
            d,
            lo,
            hi,
        )
        units: dict[str, Any] = {"type": "string", "description": "the spec's units, if any"}
        if spec is not None and spec.units:
            units["const"] = spec.units
        return {"properties": {"value": value, "units": units}, "required": ["value"]}

    def text(self, spec: ModelSpec, result: Result) -> str:
        units = f" {spec.units}" if spec.units else ""
        return f"{result.outputs['value']:.4g}{units}"

    def csv_columns(self, spec: ModelSpec) -> list[str]:
        return ["value"]

    def csv_values(self, spec: ModelSpec, result: Result) -> list[str]:
        return [fmt_number(result.outputs["value"])]

    def output_metadata(self, spec: ModelSpec) -> OutputMetadata:
        lo, hi = spec.value_range or (0.0, 1.0)
        units = f" {spec.units}" if spec.units else ""
        return OutputMetadata(
            spec.target_name or "value",
            f"{spec.target_name or 'the value'} normalized over its range: value = {lo:g} + "
            f"output * {hi - lo:g} ({lo:g}..{hi:g}{units}; edgereg bounds it to that range)",
        )

    def int8_note(self, spec: ModelSpec, output_scale: float) -> str:
        lo, hi = spec.value_range  # type: ignore[misc]
        units = f" {spec.units}" if spec.units else ""
        step = float(output_scale)
        return f"the output is int8 with scale {step:.4g}: one step = {(hi - lo) * step:.3g}{units}"


def value_decimals(spec: ModelSpec | None) -> int | None:
    """Decimals of ``value`` in JSON: 1e-4 of the spec's range (None without a spec)."""
    if spec is None or spec.value_range is None:
        return None
    return span_decimals(*spec.value_range)


TASK = register(ValueTask())
