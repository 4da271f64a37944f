"""``point``: where one object is (its midpoint), as normalized (x, y) in the frame."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SpecError
from . import register
from ._coordinates import CoordinatesTask

if TYPE_CHECKING:  # pragma: no cover
    from ..spec import ModelSpec


class PointTask(CoordinatesTask):
    name = "point"
    summary = "one (x, y): where an object's midpoint is"
    order = 10
    fixed_points = 1

    def validate_spec(self, spec: ModelSpec) -> None:
        if spec.num_keypoints != 1:
            raise SpecError(f"num_keypoints: a point task has exactly 1, got {spec.num_keypoints}")
        super().validate_spec(spec)

    def csv_columns(self, spec: ModelSpec) -> list[str]:
        return ["x", "y", "x_px", "y_px"]


TASK = register(PointTask())
