"""``class``: which of several states an image shows (e.g. ``defect`` or ``ok``).

The model outputs softmax probabilities over ``spec.class_names``, in that order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SpecError
from . import register
from .base import DeviceTask, FrameGeometry, OutputMetadata, fmt_number, json_number, number_schema

#: Decimals of probabilities in JSON results (a uint8 softmax resolves 1/256).
PROB_DECIMALS = 4

if TYPE_CHECKING:  # pragma: no cover
    from ..postprocess import Result
    from ..spec import ModelSpec


class ClassTask(DeviceTask):
    name = "class"
    summary = "a label: which of several states the image shows"
    order = 40
    spec_fields = frozenset({"class_names"})

    def validate_spec(self, spec: ModelSpec) -> None:
        names = spec.class_names
        if len(names) < 2:
            raise SpecError(f"class_names: a class task needs at least 2, got {len(names)}")
        if any(not isinstance(n, str) or not n for n in names):
            raise SpecError("class_names: every name must be a non-empty string")
        if len(set(names)) != len(names):
            raise SpecError("class_names: names must be unique")

    def output_size(self, spec: ModelSpec) -> int:
        return len(spec.class_names)

    def decode(self, spec: ModelSpec, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw, dtype=np.float32)

    def result_fields(
        self, spec: ModelSpec, decoded: np.ndarray, frame: FrameGeometry
    ) -> dict[str, Any]:
        p = np.asarray(decoded, dtype=np.float32).reshape(-1)
        probs = {n: float(v) for n, v in zip(spec.class_names, p, strict=True)}
        return {"label": spec.class_names[int(np.argmax(p))], "probabilities": probs}

    def prediction(self, spec: ModelSpec, result: Result) -> np.ndarray:
        probs = result.outputs["probabilities"]
        return np.array([probs[n] for n in spec.class_names], dtype=np.float32)

    def result_json(self, spec: ModelSpec | None, outputs: dict[str, Any]) -> dict[str, Any]:
        return {
            "label": outputs["label"],
            "probabilities": json_number(outputs["probabilities"], PROB_DECIMALS),
        }

    def result_schema(self, spec: ModelSpec | None = None) -> dict[str, Any]:
        p = number_schema(
            f"softmax probability, rounded to {PROB_DECIMALS} decimals", PROB_DECIMALS, 0.0, 1.0
        )
        label: dict[str, Any] = {"type": "string", "description": "the most probable class"}
        probs: dict[str, Any] = {
            "type": "object",
            "description": "class name -> probability, every class of the spec, in its order",
            "additionalProperties": p,
            "minProperties": 2,
        }
        if spec is not None:
            names = list(spec.class_names)
            label["enum"] = names
            probs.update(
                properties={n: p for n in names}, required=names, additionalProperties=False
            )
        return {
            "properties": {"label": label, "probabilities": probs},
            "required": ["label", "probabilities"],
        }

    def text(self, spec: ModelSpec, result: Result) -> str:
        label = result.outputs["label"]
        p = result.outputs["probabilities"].get(label)
        return f"{label} {p:.2f}" if p is not None else str(label)

    def csv_columns(self, spec: ModelSpec) -> list[str]:
        return ["label"] + [f"p_{name}" for name in spec.class_names]

    def csv_values(self, spec: ModelSpec, result: Result) -> list[str]:
        probs = result.outputs["probabilities"]
        return [str(result.outputs["label"])] + [fmt_number(probs.get(n)) for n in spec.class_names]

    def output_metadata(self, spec: ModelSpec) -> OutputMetadata:
        return OutputMetadata(
            "probabilities",
            f"softmax probabilities of the {len(spec.class_names)} classes, in the order of "
            "labels.txt",
            tuple(spec.class_names),
        )

    def int8_note(self, spec: ModelSpec, output_scale: float) -> str:
        s = float(output_scale)
        return f"softmax output is int8 with scale {s:.4g}: probabilities in steps of {s:.3g}"


TASK = register(ClassTask())
