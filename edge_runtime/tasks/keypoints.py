"""``keypoints``: where K points are (e.g. the corners of a card), normalized (x, y) each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SpecError
from . import register
from ._coordinates import CoordinatesTask

if TYPE_CHECKING:  # pragma: no cover
    from ..spec import ModelSpec

#: The most keypoints a model may have.
MAX_KEYPOINTS = 256


class KeypointsTask(CoordinatesTask):
    name = "keypoints"
    summary = "K (x, y): where several points are (corners, landmarks)"
    order = 20

    def validate_spec(self, spec: ModelSpec) -> None:
        k = spec.num_keypoints
        if not 1 <= k <= MAX_KEYPOINTS:
            raise SpecError(f"num_keypoints: a keypoints task needs 1 to {MAX_KEYPOINTS}, got {k}")
        super().validate_spec(spec)

    def csv_columns(self, spec: ModelSpec) -> list[str]:
        cols: list[str] = []
        for k in range(spec.num_keypoints):
            cols += [f"kp{k}_x", f"kp{k}_y", f"kp{k}_x_px", f"kp{k}_y_px"]
        return cols


TASK = register(KeypointsTask())
