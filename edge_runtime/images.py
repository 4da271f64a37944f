"""Reading image files into RGB uint8 arrays, the same way on the workstation and the device.

JPEG/PNG/BMP/WebP, any size; grayscale, RGB, RGBA (alpha dropped) and 16-bit (scaled to
8-bit); EXIF orientation applied (OpenCV does so unless told not to).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Refuse absurd files before decoding them (a decompression bomb is not a photo).
MAX_IMAGE_BYTES = 256 * 1024 * 1024
MAX_IMAGE_PIXELS = 100_000_000


def to_uint8_rgb(img: np.ndarray, bgr: bool = True) -> np.ndarray:
    """Any decoded OpenCV image (gray, BGR, BGRA, 8/16-bit, float) -> HxWx3 uint8 RGB."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(img)
    raise ImageError(f"unsupported image shape {img.shape}")


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 RGB array, or raise ImageError naming it."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{p}: file not found") from None
    except OSError as e:
        raise ImageError(f"{p}: cannot read ({e.strerror})") from None
    if not p.is_file():
        raise ImageError(f"{p}: not a file")
    if size == 0:
        raise ImageError(f"{p}: empty file")
    if size > MAX_IMAGE_BYTES:
        raise ImageError(f"{p}: {size} bytes is too large for an image")
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as e:
        raise ImageError(f"{p}: cannot read ({e})") from None
    # ANYDEPTH keeps 16-bit; ANYCOLOR keeps gray as gray; EXIF orientation is applied.
    img = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if img is None:
        raise ImageError(f"{p}: not a readable image (corrupt, truncated or not an image file)")
    if img.shape[0] * img.shape[1] > MAX_IMAGE_PIXELS:
        raise ImageError(f"{p}: {img.shape[1]}x{img.shape[0]} pixels is too large")
    try:
        return to_uint8_rgb(img, bgr=True)
    except ImageError as e:
        raise ImageError(f"{p}: {e}") from None
