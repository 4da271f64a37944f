"""Atomic artifact writes: a temp file in the same folder, fsync, then rename.

A crash (or ``kill -9``) never leaves a half-written file under the final name, and the
previous version of the file stays intact until the new one is complete. A full disk
or a permission problem becomes an :class:`OutputError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import OutputError


def temp_beside(path: str | Path, tag: str = "tmp") -> Path:
    """A new empty hidden file next to ``path`` (same folder, so the final rename is atomic).

    It keeps ``path``'s suffix (format-by-extension writers still work) and gets the usual
    file mode, not mkstemp's 0600.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{final.stem}.", suffix=f".{tag}{final.suffix}", dir=final.parent
        )
        os.close(fd)
        os.chmod(tmp_name, _default_mode())
    except OSError as e:
        raise OutputError(f"{final}: cannot write ({e.strerror or e})") from None
    return Path(tmp_name)


def replace_into(tmp: str | Path, path: str | Path) -> None:
    """fsync the finished ``tmp`` and rename it over ``path``; an OSError is an OutputError."""
    try:
        _fsync(Path(tmp))
        os.chmod(tmp, _default_mode())  # in case the writer recreated the file
        os.replace(tmp, path)
    except OSError as e:
        raise _not_written(path, e) from None


def _not_written(path: str | Path, e: OSError) -> OutputError:
    return OutputError(
        f"{path}: could not be written ({e.strerror or e}); the previous file, if any, is kept"
    )


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it is renamed over ``path``.

    Use it for writers that want a file name (``model.save(tmp)``, ``cv2.VideoWriter``).
    The temp name keeps the suffix, so format-by-extension writers still work.
    """
    tmp = temp_beside(path)
    try:
        try:
            yield tmp
        except OSError as e:
            raise _not_written(path, e) from None
        replace_into(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=True, default=_default) + "\n"
    )


def _default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _default_mode() -> int:
    """0666 minus the process umask, as ``open()`` would create the file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())
