"""Drawing results on frames, for the annotated video and the preview window.

What a result looks like on the frame (points, an arrow...) and the line of text that
says it are the task's (``edge_runtime/tasks``); this module frames them: the ROI, the
text line top-left and the status line bottom-left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from . import tasks

if TYPE_CHECKING:  # pragma: no cover
    from .spec import ModelSpec

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def put_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    """White text with a dark outline: readable on any background."""
    thick = max(1, int(round(scale * 2)))
    cv2.putText(img, text, org, _FONT, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)


def annotate(
    image_bgr: np.ndarray,
    result: Any,
    spec: ModelSpec,
    *,
    roi: tuple[int, int, int, int] | None = None,
    status: str | None = None,
) -> np.ndarray:
    """A copy of the BGR frame with the result drawn on it.

    The task draws its geometry (circles for points, an arrow for an angle) and says its
    answer in one line written top-left; the ROI, if any, is a yellow rectangle; ``status``
    (e.g. fps) is written bottom-left.
    """
    img = np.ascontiguousarray(image_bgr).copy()
    h, w = img.shape[:2]
    scale = max(0.35, min(w, h) / 600.0)
    if roi is not None:
        x, y, rw, rh = (int(v) for v in roi)
        cv2.rectangle(img, (x, y), (x + rw - 1, y + rh - 1), (0, 255, 255), 1)
    task = tasks.get(spec.task)
    task.draw(spec, img, result)
    line = task.text(spec, result)
    if line:
        put_text(img, line, (4, int(24 * scale) + 4), scale)
    if status:
        put_text(img, status, (4, h - 6), scale * 0.7)
    return img
