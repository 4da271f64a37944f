"""The JSON Schema of one result line: ``edgereg run --json``, the MQTT payload and the
live view's ``/latest.json`` all carry this object.

The envelope (``frame``, ``t``, ``latency_ms``, ``file``, ``result``) and the result's
common fields (``task``, ``frame_width``, ``frame_height``, ``invoke_ms``, ``total_ms``,
``raw`` with ``run --raw``) are defined here; each task kind declares its own fields
(``DeviceTask.result_schema``), so a new task kind brings its schema with it.

``docs/result.schema.json`` is :func:`line_schema` without a spec (every model of every
registered task); ``python -m edge_runtime.schema`` prints it. With a spec the schema is
exact for that model (its class names, its number of keypoints, its decimals).

Numbers carry ``x-decimals``, edgereg's own annotation: how many decimals the value is
rounded to (validators ignore unknown keywords; ``tests/test_schema.py`` checks it).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from . import tasks
from .postprocess import MS_DECIMALS
from .tasks.base import number_schema

if TYPE_CHECKING:  # pragma: no cover
    from .spec import ModelSpec

__all__ = ["line_schema", "result_schema", "SCHEMA_DRAFT"]

SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"
#: Decimals of ``t`` (milliseconds): a microsecond.
T_DECIMALS = 3


def result_schema(spec: ModelSpec | None = None) -> dict[str, Any]:
    """The schema of the ``result`` object: common fields, then one branch per task kind."""
    kinds = list(tasks.tasks()) if spec is None else [spec.task_kind]
    ms = number_schema(f"milliseconds, rounded to {MS_DECIMALS} decimals", MS_DECIMALS, 0.0)
    size = {"type": "integer", "minimum": 1}
    branches = []
    for kind in kinds:
        part = kind.result_schema(spec)
        branches.append(
            {
                "title": kind.name,
                "description": kind.summary,
                "properties": {"task": {"const": kind.name}, **part["properties"]},
                "required": ["task", *part["required"]],
            }
        )
    return {
        "type": "object",
        "properties": {
            "task": {"enum": [k.name for k in kinds], "description": "the model's task kind"},
            "frame_width": {**size, "description": "width of the frame the model ran on, px"},
            "frame_height": {**size, "description": "height of that frame, px"},
            "invoke_ms": {**ms, "description": "time in the interpreter (all TTA passes)"},
            "total_ms": {**ms, "description": "preprocess + invoke + decode for this frame"},
            "raw": {
                "type": "array",
                "items": {"type": ["number", "null"]},
                "description": "the model's dequantized output, unrounded: only with "
                "`edgereg run --raw` (debugging)",
            },
        },
        "required": ["task", "frame_width", "frame_height", "invoke_ms", "total_ms"],
        "oneOf": branches,
        "unevaluatedProperties": False,
    }


def line_schema(spec: ModelSpec | None = None) -> dict[str, Any]:
    """The schema of one JSON line (one frame's record)."""
    return {
        "$schema": SCHEMA_DRAFT,
        "title": "edgereg result line",
        "description": "One frame's result, as written by `edgereg run --json`, published by "
        "--mqtt (with `device`) and served by --serve at /latest.json. Fields appear in this "
        "order; times are in milliseconds; numbers are rounded as each field's x-decimals "
        "says; a non-finite number is null.",
        "type": "object",
        "properties": {
            "frame": {
                "type": "integer",
                "minimum": 0,
                "description": "the source's frame index (live sources count every captured "
                "frame, so gaps are frames dropped for freshness)",
            },
            "t": {
                **number_schema(
                    "the frame's time in ms: media time (video files), Unix time at capture "
                    f"(live sources), null for still images; {T_DECIMALS} decimals",
                    T_DECIMALS,
                ),
            },
            "latency_ms": number_schema(
                "from the frame being read to its result being ready (includes waiting in "
                f"the newest-frame slot); {MS_DECIMALS} decimals",
                MS_DECIMALS,
                0.0,
            ),
            "file": {
                "type": ["string", "null"],
                "description": "the image's path for image folders and globs, else null",
            },
            "result": result_schema(spec),
            "device": {
                "type": "string",
                "description": "MQTT payloads only: the device id (--device-id)",
            },
        },
        "required": ["frame", "t", "latency_ms", "file", "result"],
        "additionalProperties": False,
    }


def main() -> None:
    """Print the generic schema (what ``docs/result.schema.json`` holds)."""
    sys.stdout.write(json.dumps(line_schema(), indent=2) + "\n")


if __name__ == "__main__":
    main()
