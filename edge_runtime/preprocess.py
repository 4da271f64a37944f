"""Frame -> model input. The one resize used by training, conversion and the device.

Normalization lives inside the model (it takes raw 0..255 RGB), so preprocessing here is
only: crop to the ROI, convert colour order, resize to the input size, then cast or
quantize with the input tensor's own scale and zero point.
"""

from __future__ import annotations

import cv2
import numpy as np

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
