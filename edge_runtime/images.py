"""Reading image files into RGB uint8 arrays, the same way on the workstation and the device.

JPEG/PNG/BMP/WebP, any size; grayscale, RGB, RGBA (alpha dropped) and 16-bit (scaled to
8-bit); EXIF orientation applied (OpenCV does so unless told not to). Images over
MAX_IMAGE_PIXELS (a 108-MP phone photo) are decoded at 1/2, 1/4 or 1/8 of their size.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Refuse absurd files before decoding them (a decompression bomb is not a photo).
MAX_IMAGE_BYTES = 256 * 1024 * 1024
#: Images up to this many pixels are decoded at full size. Larger ones (a 108-MP phone
#: photo) are decoded at 1/2, 1/4 or 1/8 of their size (OpenCV's IMREAD_REDUCED_*, which
#: libjpeg does while decoding): the model's input is a few hundred pixels wide, and the
#: labels are fractions of the image, so nothing is lost. Only an image still larger than
#: this at 1/8 (6.4 gigapixels) is refused.
MAX_IMAGE_PIXELS = 100_000_000
REDUCTIONS = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


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


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG/PNG/BMP/WebP header, before EXIF orientation; None when
    the header cannot say.

    Why by hand: OpenCV's Python API has no header-only reader, and the device side takes
    no image library beyond OpenCV (Pillow would be one more dependency for 30 lines).
    """
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg_size(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if data[:2] == b"BM" and len(data) >= 26:
            w = int.from_bytes(data[18:22], "little", signed=True)
            h = int.from_bytes(data[22:26], "little", signed=True)
            return abs(w), abs(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
    except (IndexError, ValueError):
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The frame size in the first SOF marker (baseline, progressive, lossless ...)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h = int.from_bytes(data[i + 5 : i + 7], "big")
            w = int.from_bytes(data[i + 7 : i + 9], "big")
            return (w, h) if w and h else None
        if marker == 0xDA or length < 2:  # start of scan: no SOF before it
            return None
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8 ":
        return (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


def reduction_for(width: int, height: int) -> int:
    """1 (full size), 2, 4 or 8: the least reduction that brings the image within
    MAX_IMAGE_PIXELS; 0 when even 1/8 does not."""
    if width * height <= MAX_IMAGE_PIXELS:
        return 1
    for f in REDUCTIONS:
        if -(-width // f) * -(-height // f) <= MAX_IMAGE_PIXELS:
            return f
    return 0


def decode_image(data: np.ndarray | bytes, name: str | Path) -> tuple[np.ndarray, int, int, int]:
    """Decode an encoded image: (OpenCV image, true width, true height, reduction).

    The width and height are the file's own, after EXIF orientation, even when the pixels
    were decoded at 1/``reduction`` of that size (see MAX_IMAGE_PIXELS). Raises ImageError
    naming ``name`` when it cannot be decoded or is too large even at 1/8.
    """
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    size = header_size(buf[:65536].tobytes())
    factor = reduction_for(*size) if size else 1
    if factor == 0:
        w, h = size  # type: ignore[misc]
        raise ImageError(
            f"{name}: {w}x{h} pixels ({w * h / 1e6:.0f} MP) is too large even decoded at "
            f"1/8 of its size (the limit is {MAX_IMAGE_PIXELS / 1e6:.0f} MP after that); "
            "scale it down first, e.g. to 4000 pixels wide"
        )
    flags = REDUCTIONS[factor] if factor > 1 else cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
    img = cv2.imdecode(buf, flags)
    if img is None or img.size == 0:
        raise ImageError(f"{name}: not a readable image (corrupt, truncated or not an image file)")
    h, w = img.shape[:2]
    if factor == 1:
        if h * w > MAX_IMAGE_PIXELS:  # no header size (an unusual file): decoded whole
            raise ImageError(
                f"{name}: {w}x{h} pixels is larger than {MAX_IMAGE_PIXELS / 1e6:.0f} MP and "
                "its header did not say so in advance; save it as JPEG or PNG (read at a "
                "reduced size) or scale it down"
            )
        return img, w, h, 1
    return img, *_true_size(size, (w, h), factor), factor  # type: ignore[arg-type]


def _true_size(header: tuple[int, int], decoded: tuple[int, int], f: int) -> tuple[int, int]:
    """The header's size, turned as the decoded pixels are (EXIF orientation: a photo
    taken upright is stored sideways with a flag OpenCV applies)."""
    hw, hh = header
    dw, dh = decoded

    def fits(w: int, h: int) -> bool:
        return abs(dw - -(-w // f)) <= 1 and abs(dh - -(-h // f)) <= 1

    return (hh, hw) if not fits(hw, hh) and fits(hh, hw) else (hw, hh)


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
    # ANYDEPTH keeps 16-bit; ANYCOLOR keeps gray as gray; EXIF orientation is applied;
    # images over MAX_IMAGE_PIXELS are decoded at a reduced size.
    img, _, _, _ = decode_image(data, p)
    try:
        return to_uint8_rgb(img, bgr=True)
    except ImageError as e:
        raise ImageError(f"{p}: {e}") from None
