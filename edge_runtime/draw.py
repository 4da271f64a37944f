"""Drawing results on frames, for the annotated video and the preview window."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

#: BGR colours for keypoints 0, 1, 2, ... (cycled).
PALETTE = (
    (0, 0, 255),
    (0, 200, 0),
    (255, 0, 0),
    (0, 200, 255),
    (255, 0, 255),
    (255, 255, 0),
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    """White text with a dark outline: readable on any background."""
    thick = max(1, int(round(scale * 2)))
    cv2.putText(img, text, org, _FONT, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)


def annotate(
    image_bgr: np.ndarray,
    result: Any,
    *,
    roi: tuple[int, int, int, int] | None = None,
    status: str | None = None,
) -> np.ndarray:
    """A copy of the BGR frame with the result drawn on it.

    Points/keypoints are circles (numbered when there are several) at ``result.points_px``;
    a value or a class label (with its probability) is written top-left; the ROI, if any,
    is a yellow rectangle; ``status`` (e.g. fps) is written bottom-left.
    """
    img = np.ascontiguousarray(image_bgr).copy()
    h, w = img.shape[:2]
    scale = max(0.35, min(w, h) / 600.0)
    radius = max(2, int(round(min(w, h) / 80)))
    if roi is not None:
        x, y, rw, rh = (int(v) for v in roi)
        cv2.rectangle(img, (x, y), (x + rw - 1, y + rh - 1), (0, 255, 255), 1)
    pts = getattr(result, "points_px", None)
    if pts is not None:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        for k, (px, py) in enumerate(pts):
            if not (np.isfinite(px) and np.isfinite(py)):
                continue
            c = (int(round(px)), int(round(py)))
            colour = PALETTE[k % len(PALETTE)]
            cv2.circle(img, c, radius, colour, -1, cv2.LINE_AA)
            cv2.circle(img, c, radius + 1, (0, 0, 0), 1, cv2.LINE_AA)
            if len(pts) > 1:
                _text(img, str(k), (c[0] + radius + 2, c[1] - radius - 2), scale * 0.8)
    line = None
    value = getattr(result, "value", None)
    label = getattr(result, "label", None)
    if value is not None:
        line = f"{value:.4g}"
    elif label is not None:
        probs = getattr(result, "probabilities", None) or {}
        p = probs.get(label)
        line = f"{label} {p:.2f}" if p is not None else str(label)
    if line:
        _text(img, line, (4, int(24 * scale) + 4), scale)
    if status:
        _text(img, status, (4, h - 6), scale * 0.7)
    return img
