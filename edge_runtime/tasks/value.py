"""``value``: one number in the user's units (a concentration, a level, a count).

The model outputs the target normalized over ``spec.value_range`` (0 at low, 1 at high)
from a linear layer; decoding maps it back to units and bounds it to the range.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SpecError
from . import register
from .base import DeviceTask, FrameGeometry, OutputMetadata, check_pair, fmt_number

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


TASK = register(ValueTask())
