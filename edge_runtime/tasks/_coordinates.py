"""What ``point`` and ``keypoints`` share on the device: K normalized (x, y) pairs.

Coordinates are normalized to [0, 1] of the frame (or ROI) the model saw, origin top-left
(the top-left CORNER of the image; pixel ``i`` covers ``[i, i + 1)``), x right, y down.
A point may lie slightly OUTSIDE the frame (a card's corner cut off by the image edge):
labels and predictions may go :data:`MARGIN` beyond it on every side, i.e.
[-0.25, 1.25]. The model's output is K (x, y) pairs from a linear layer; decoding bounds
them to that range, and each result says per point whether it is inside the frame
(``inside``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np

from ..draw import put_text
from ..errors import SpecError
from .base import DeviceTask, FrameGeometry, OutputMetadata, fmt_number, json_number, number_schema

if TYPE_CHECKING:  # pragma: no cover
    from ..postprocess import Result
    from ..spec import ModelSpec

#: Decimals of normalized coordinates in JSON results: 1e-4 of the frame (0.2 px of a
#: 1920-px frame), finer than any model input of up to 1000 px resolves.
POINT_DECIMALS = 4
#: Decimals of pixel coordinates in JSON results (computed before rounding).
PX_DECIMALS = 2
#: How far outside the frame a point may be, in normalized units (a quarter of the
#: width/height on each side): labels within it are valid targets, predictions are
#: bounded to it. Shared by the workstation's label checks and augmentation.
MARGIN = 0.25
#: The range of a normalized coordinate: the frame plus the margin on both sides.
LOW, HIGH = -MARGIN, 1.0 + MARGIN

#: BGR colours for keypoints 0, 1, 2, ... (cycled).
PALETTE = (
    (0, 0, 255),
    (0, 200, 0),
    (255, 0, 0),
    (0, 200, 255),
    (255, 0, 255),
    (255, 255, 0),
)


class CoordinatesTask(DeviceTask):
    """K normalized (x, y) points per frame; ``points``, ``points_px`` and ``inside`` in
    results (``inside[k]``: point k is within the full frame, not in the margin beyond)."""

    spec_fields: ClassVar[frozenset[str]] = frozenset({"num_keypoints", "flip_pairs"})
    #: A free rotation would move points out of the frame: never used at test time.
    free_rotation_tta: ClassVar[bool] = False
    #: How many points every model of the task has (None: the spec says).
    fixed_points: ClassVar[int | None] = None

    def validate_spec(self, spec: ModelSpec) -> None:
        k = spec.num_keypoints
        if spec.flip_pairs and k < 2:
            raise SpecError(
                f"flip_pairs: {list(spec.flip_pairs)!r} given, but with {k} keypoint(s) there "
                "is no pair to swap"
            )
        for pair in spec.flip_pairs:
            if (
                len(pair) != 2
                or not all(isinstance(i, int) and 0 <= i < k for i in pair)
                or pair[0] == pair[1]
            ):
                raise SpecError(
                    f"flip_pairs: {pair!r} must be two different keypoint indices from 0 to {k - 1}"
                )

    def output_size(self, spec: ModelSpec) -> int:
        return 2 * spec.num_keypoints

    def decode(self, spec: ModelSpec, raw: np.ndarray) -> np.ndarray:
        y = np.asarray(raw, dtype=np.float32)
        return np.clip(y, LOW, HIGH).reshape(*y.shape[:-1], spec.num_keypoints, 2)

    def result_fields(
        self, spec: ModelSpec, decoded: np.ndarray, frame: FrameGeometry
    ) -> dict[str, Any]:
        pts = roi_to_frame(np.asarray(decoded, np.float32).reshape(-1, 2), frame)
        return point_fields(pts, frame.width, frame.height)

    def prediction(self, spec: ModelSpec, result: Result) -> np.ndarray:
        return np.asarray(result.outputs["points"], np.float32).reshape(spec.num_keypoints, 2)

    def result_json(self, spec: ModelSpec | None, outputs: dict[str, Any]) -> dict[str, Any]:
        return {
            "points": json_number(outputs["points"], POINT_DECIMALS),
            "points_px": json_number(outputs["points_px"], PX_DECIMALS),
            "inside": [bool(v) for v in outputs.get("inside", _inside(outputs["points"]))],
        }

    def result_schema(self, spec: ModelSpec | None = None) -> dict[str, Any]:
        k = self.fixed_points if spec is None else spec.num_keypoints
        norm = number_schema(
            f"normalized to the full frame, origin top-left; up to {MARGIN:g} of the frame "
            f"beyond its edges (the labels' margin); rounded to {POINT_DECIMALS} decimals "
            "(1e-4 of the frame)",
            POINT_DECIMALS,
            LOW,
            HIGH,
        )
        px = number_schema(
            f"in pixels of the full frame; rounded to {PX_DECIMALS} decimals", PX_DECIMALS
        )
        return {
            "properties": {
                "points": _points_schema(norm, k, "(x, y) per keypoint, in the spec's order"),
                "points_px": _points_schema(px, k, "the same points in frame pixels"),
                "inside": {
                    "type": "array",
                    "items": {"type": "boolean"},
                    "description": "per point: whether it lies within the frame",
                    **({} if k is None else {"minItems": k, "maxItems": k}),
                },
            },
            "required": ["points", "points_px", "inside"],
        }

    def apply_smoothed(self, spec: ModelSpec, result: Result, vector: np.ndarray) -> None:
        # The smoothed points are already in the full frame: no ROI to undo again.
        w, h = result.frame_size or (1, 1)
        result.outputs.update(point_fields(np.asarray(vector, np.float32).reshape(-1, 2), w, h))

    def tta_invert(self, spec: ModelSpec, decoded: np.ndarray, transform: str) -> np.ndarray:
        return invert_transform(np.asarray(decoded).reshape(-1, 2), transform, spec)

    def draw(self, spec: ModelSpec, image_bgr: np.ndarray, result: Result) -> None:
        h, w = image_bgr.shape[:2]
        radius = max(2, int(round(min(w, h) / 80)))
        scale = max(0.35, min(w, h) / 600.0)
        pts = np.asarray(result.outputs["points_px"], dtype=np.float64).reshape(-1, 2)
        for k, (px, py) in enumerate(pts):
            if not (np.isfinite(px) and np.isfinite(py)):
                continue
            colour = PALETTE[k % len(PALETTE)]
            # A point beyond the frame is drawn where it leaves it: a hollow ring on the
            # border (OpenCV needs integer pixels; a far value must not overflow them).
            cx, cy = min(max(px, 0.0), w - 1.0), min(max(py, 0.0), h - 1.0)
            c = (int(round(cx)), int(round(cy)))
            if (cx, cy) == (px, py):
                cv2.circle(image_bgr, c, radius, colour, -1, cv2.LINE_AA)
                cv2.circle(image_bgr, c, radius + 1, (0, 0, 0), 1, cv2.LINE_AA)
            else:
                cv2.circle(image_bgr, c, radius + 1, colour, 2, cv2.LINE_AA)
            if len(pts) > 1:
                put_text(image_bgr, str(k), (c[0] + radius + 2, c[1] - radius - 2), scale * 0.8)

    def csv_values(self, spec: ModelSpec, result: Result) -> list[str]:
        pts = np.asarray(result.outputs["points"], dtype=np.float64).reshape(-1, 2)
        px = np.asarray(result.outputs["points_px"], dtype=np.float64).reshape(-1, 2)
        row: list[str] = []
        for k in range(len(pts)):
            row += [
                fmt_number(pts[k, 0]),
                fmt_number(pts[k, 1]),
                fmt_number(px[k, 0], 2),
                fmt_number(px[k, 1], 2),
            ]
        return row

    def output_metadata(self, spec: ModelSpec) -> OutputMetadata:
        k = spec.num_keypoints
        return OutputMetadata(
            "points",
            f"{k} point(s) as x1, y1, ..., x{k}, y{k}: normalized to the input image (0..1 "
            "across its width and height from the top-left corner, y down). A point may lie "
            f"up to {MARGIN:g} beyond the image (edgereg bounds outputs to [{LOW:g}, {HIGH:g}]).",
        )

    def int8_note(self, spec: ModelSpec, output_scale: float) -> str:
        step = float(output_scale)
        return (
            f"the output is int8 with scale {step:.4g}: one step = {100 * step:.2f} % of the "
            f"frame ({step * spec.input_width:.2f} px at the model's {spec.input_width} px input)"
        )


def _points_schema(number: dict[str, Any], k: int | None, description: str) -> dict[str, Any]:
    pair = {"type": "array", "items": number, "minItems": 2, "maxItems": 2}
    out: dict[str, Any] = {"type": "array", "items": pair, "description": description}
    if k is None:
        out["minItems"] = 1
    else:
        out["minItems"] = out["maxItems"] = k
    return out


def _inside(points: Any) -> list[bool]:
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    return [bool(v) for v in np.all((pts >= 0.0) & (pts <= 1.0), axis=1)]


def point_fields(points: np.ndarray, width: int, height: int) -> dict[str, Any]:
    """A result's fields for (K, 2) points normalized to the full frame of ``width`` x
    ``height``: ``points``, ``points_px`` and ``inside`` (per point, within the frame)."""
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    return {
        "points": pts,
        "points_px": pts * np.array([width, height], dtype=np.float32),
        "inside": _inside(pts),
    }


def roi_to_frame(points: np.ndarray, frame: FrameGeometry) -> np.ndarray:
    """(K, 2) points normalized to the ROI -> normalized to the full frame."""
    if frame.roi is None:
        return points
    x, y, w, h = frame.roi
    out = np.empty_like(points, dtype=np.float32)
    out[:, 0] = (x + points[:, 0] * w) / frame.width
    out[:, 1] = (y + points[:, 1] * h) / frame.height
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
