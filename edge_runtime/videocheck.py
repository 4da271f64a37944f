"""Is a finished video file complete? A check that costs the same for 10 frames and 100,000.

OpenCV's ``VideoWriter`` ignores write errors: on a full disk FFmpeg stops writing and
``release()`` leaves a file that looks like a video but is cut. Reading every frame back
to count them (what this replaced) costs as much as the video is long. Every container
we write keeps its own size bookkeeping, written or patched LAST when the file is
finished, so a cut file is caught by a few small reads near the start:

- AVI (RIFF): the file is a chain of ``RIFF`` chunks (one, plus ``AVIX`` ones past 1 GB)
  whose sizes are patched at the end; they must add up to exactly the file's size.
- MP4 / MOV / M4V (ISO base media): the top-level boxes must chain to exactly the end of
  the file, and the ``moov`` box (the index, written at the end) must be there.
- MKV (Matroska/EBML): the Segment's size is written as "unknown" and patched when the
  file is finished; it must be known and end exactly at the end of the file.

Only the standard library: this runs on the device.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

__all__ = ["incomplete_reason"]

#: top-level chunks/boxes we walk before giving up (a real file has a handful)
_MAX_TOP_LEVEL = 4096


def incomplete_reason(path: str | Path) -> str | None:
    """None when the finished video at ``path`` is whole, else why it is not."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        size = os.path.getsize(p)
        with open(p, "rb") as f:
            if suffix == ".avi":
                return _riff(f, size)
            if suffix in (".mp4", ".m4v", ".mov"):
                return _isobmff(f, size)
            if suffix == ".mkv":
                return _matroska(f, size)
    except OSError as e:
        return f"cannot read it back ({e.strerror or e})"
    return None  # a container we do not know: nothing to check


def _riff(f: BinaryIO, size: int) -> str | None:
    pos = 0
    for n in range(_MAX_TOP_LEVEL):
        if pos == size:
            return None if n else "empty file"
        f.seek(pos)
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF":
            return f"no RIFF chunk at byte {pos} of {size}"
        if n == 0 and head[8:12] != b"AVI ":
            return "not an AVI file"
        (length,) = struct.unpack("<I", head[4:8])
        pos += 8 + length + (length & 1)
        if pos > size:
            return f"the AVI header says {pos} bytes, the file has {size}"
    return "too many RIFF chunks"


def _isobmff(f: BinaryIO, size: int) -> str | None:
    pos, seen = 0, set()
    for _ in range(_MAX_TOP_LEVEL):
        if pos == size:
            return None if b"moov" in seen else "no index (moov box): the file was not finished"
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8:
            return f"a box header is cut at byte {pos} of {size}"
        length, kind = struct.unpack(">I4s", head[:8])
        if length == 1:
            if len(head) < 16:
                return f"a box header is cut at byte {pos} of {size}"
            (length,) = struct.unpack(">Q", head[8:16])
        elif length == 0:
            length = size - pos  # "to the end of the file": only a last box may say so
        if length < 8:
            return f"a box of {length} bytes at byte {pos}"
        seen.add(kind)
        pos += length
        if pos > size:
            return f"the {kind.decode('latin-1')!r} box ends at byte {pos}, the file has {size}"
    return "too many top-level boxes"


_EBML_ID = 0x1A45DFA3
_SEGMENT_ID = 0x18538067


def _vint(f: BinaryIO, keep_marker: bool) -> tuple[int, int, bool]:
    """(value, bytes used, all value bits set) of an EBML variable-size integer."""
    first = f.read(1)
    if not first:
        raise EOFError
    b0 = first[0]
    n = next((i + 1 for i in range(8) if b0 & (0x80 >> i)), 0)
    if n == 0:
        raise ValueError("bad EBML number")
    rest = f.read(n - 1)
    if len(rest) < n - 1:
        raise EOFError
    value = b0 if keep_marker else b0 & (0xFF >> n)
    for b in rest:
        value = (value << 8) | b
    all_ones = not keep_marker and value == (1 << (7 * n)) - 1
    return value, n, all_ones


def _matroska(f: BinaryIO, size: int) -> str | None:
    try:
        ident, _, _ = _vint(f, keep_marker=True)
        if ident != _EBML_ID:
            return "not a Matroska file"
        length, _, _ = _vint(f, keep_marker=False)
        f.seek(length, os.SEEK_CUR)
        ident, _, _ = _vint(f, keep_marker=True)
        if ident != _SEGMENT_ID:
            return "no Matroska segment after the header"
        length, _, unknown = _vint(f, keep_marker=False)
    except (EOFError, ValueError) as e:
        return f"the Matroska header is cut or damaged ({e or 'end of file'})"
    if unknown:
        return "the segment size was never written: the file was not finished"
    end = f.tell() + length
    if end != size:
        return f"the Matroska segment says {end} bytes, the file has {size}"
    return None
