"""Frame -> model input. The one resize used by training, conversion and the device.

Normalization lives inside the model (it takes raw 0..255 RGB), so preprocessing here is
only: crop to the ROI, convert colour order, resize to the input size, then cast or
quantize with the input tensor's own scale and zero point.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .errors import ImageError
from .spec import ModelSpec

_INTERP = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


def resize_to_input(
    rgb: np.ndarray, height: int, width: int, interpolation: str = "area"
) -> np.ndarray:
    """Stretch an HxWx3 uint8 image to (height, width). Same function for training and device."""
    if rgb.shape[0] == height and rgb.shape[1] == width:
        return rgb
    h, w = rgb.shape[:2]
    # INTER_AREA is right for shrinking; for enlarging it equals linear anyway.
    return cv2.resize(rgb, (width, height), interpolation=_INTERP[interpolation])


# --------------------------------------------------------------------------- device side
Roi = tuple[int, int, int, int]


def parse_roi(text: str | Sequence[int] | None) -> Roi | None:
    """``"x,y,w,h"`` (frame pixels) -> a tuple; raises ImageError on a malformed ROI."""
    if text is None or text == "":
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        vals = tuple(int(str(v).strip()) for v in items)
    except ValueError:
        raise ImageError(f"roi: {text!r} must be four integers x,y,w,h") from None
    if len(vals) != 4:
        raise ImageError(f"roi: {text!r} must be four integers x,y,w,h")
    x, y, w, h = vals
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise ImageError(f"roi: {text!r} needs x, y >= 0 and w, h >= 1")
    return (x, y, w, h)


def crop_roi(frame: np.ndarray, roi: Roi | None) -> np.ndarray:
    """The ROI of ``frame`` as a view (no copy); ImageError if it does not fit the frame."""
    if roi is None:
        return frame
    x, y, w, h = roi
    fh, fw = frame.shape[:2]
    if x + w > fw or y + h > fh:
        raise ImageError(
            f"roi: x,y,w,h = {x},{y},{w},{h} does not fit inside the {fw}x{fh} frame; "
            "pick an ROI inside the frame"
        )
    return frame[y : y + h, x : x + w]


def as_uint8_frame(frame: np.ndarray) -> np.ndarray:
    """Check a camera frame is HxWx3 uint8 (gray HxW and 4-channel frames are converted)."""
    if not isinstance(frame, np.ndarray):
        raise ImageError(f"frame: expected a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ImageError(f"frame: expected uint8 pixels, got {frame.dtype}")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 4:
        return np.ascontiguousarray(frame[:, :, :3])
    if frame.ndim == 3 and frame.shape[2] == 1:
        return cv2.cvtColor(frame[:, :, 0], cv2.COLOR_GRAY2BGR)
    raise ImageError(f"frame: expected HxWx3 uint8, got shape {frame.shape}")


def swap_rb(img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """RGB <-> BGR (into ``out`` when given, avoiding an allocation)."""
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=out)


def prepare(
    frame: np.ndarray,
    spec: ModelSpec,
    frame_order: str = "BGR",
    roi: Roi | None = None,
) -> np.ndarray:
    """Frame -> the model's uint8 input image: ROI crop, resize, colour order (HxWx3 uint8).

    Resize before the colour swap: both are per-pixel/per-channel, so the order does not
    change the result, and swapping the small image is cheaper.
    """
    img = crop_roi(as_uint8_frame(frame), roi)
    img = resize_to_input(img, spec.input_height, spec.input_width, spec.interpolation)
    if frame_order.upper() != spec.color_order:
        img = swap_rb(img)
    return img


# --------------------------------------------------------------------------- TTA transforms
def apply_transform(img: np.ndarray, name: str) -> np.ndarray:
    """Apply a TTA transform (a task's ``tta_transforms``) to an HxWxC image."""
    if name == "identity":
        return img
    if name == "hflip":
        return np.ascontiguousarray(img[:, ::-1])
    if name == "vflip":
        return np.ascontiguousarray(img[::-1])
    if name in ("rot90", "rot180", "rot270"):
        return np.ascontiguousarray(np.rot90(img, {"rot90": 1, "rot180": 2, "rot270": 3}[name]))
    if name.startswith("rot") and name[3] in "+-":
        h, w = img.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(name[3:]), 1.0)
        return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    raise ValueError(f"unknown transform {name!r}")
