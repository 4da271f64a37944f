"""Where a command may write: only into places it created, or ones it recognises as its own.

:func:`edge_runtime.outputs.check_outputs` keeps every output off the inputs; this module
keeps outputs off everything else a user has. The rule:

- a folder a command writes into (a run, a sample set, the demo's folder, eval's plots,
  convert's export) must be new, empty, or one edgereg made for the same purpose. edgereg
  leaves a small marker file, :data:`MARKER` (``.edgereg``, JSON naming the kind), in
  every folder it creates, and recognises it later. Folders made before markers existed
  are recognised by their content (e.g. a run by its ``config.json``; see ``legacy``);
- a file a command writes (``--json``) must be new, empty, or a file the same command
  wrote before (recognised by its content).

Anything else is a :class:`ClashError` (exit code 13) naming the place and what is there,
raised before anything is written. Only the standard library: the device uses it too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import ClashError, OutputError

MARKER = ".edgereg"
#: How many of a folder's names a message lists.
LISTED = 4

#: A recogniser: does this existing folder (or file) belong to the command?
Recognise = Callable[[Path], bool]


def mark(folder: str | Path, kind: str) -> None:
    """Leave the marker saying edgereg made ``folder`` for ``kind`` (e.g. ``"run"``)."""
    from .atomic import atomic_write_json

    atomic_write_json(Path(folder) / MARKER, {"made_by": "edgereg", "kind": kind})


def marked_kind(folder: str | Path) -> str | None:
    """The kind in ``folder``'s marker, or None (no marker, or not one edgereg wrote)."""
    try:
        raw = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(raw, dict) and raw.get("made_by") == "edgereg":
        kind = raw.get("kind")
        return kind if isinstance(kind, str) else None
    return None


def entries(folder: Path) -> list[str]:
    """The names in ``folder`` (sorted), [] for a missing or unreadable folder."""
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def only_names(allowed: Iterable[str], patterns: Iterable[str] = ()) -> Recognise:
    """A recogniser: every name in the folder is one of ``allowed`` or matches a glob
    pattern (``fnmatch``), and there is at least one (legacy folders made before markers)."""
    import fnmatch

    names, pats = set(allowed), tuple(patterns)

    def recognise(folder: Path) -> bool:
        found = [n for n in entries(folder) if n != MARKER]
        return bool(found) and all(
            n in names or any(fnmatch.fnmatch(n, p) for p in pats) for n in found
        )

    return recognise


def json_with_keys(*keys: str) -> Recognise:
    """A recogniser for a file: a JSON object holding every one of ``keys``."""

    def recognise(path: Path) -> bool:
        try:
            if path.stat().st_size > 64 * 1024 * 1024:
                return False
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(raw, dict) and all(k in raw for k in keys)

    return recognise


def folder_is_own(folder: Path, kind: str, legacy: Recognise | None = None) -> bool:
    """True when ``folder`` carries the marker of ``kind`` or ``legacy`` recognises it."""
    if marked_kind(folder) == kind:
        return True
    return legacy is not None and marked_kind(folder) is None and legacy(folder)


def claim_folder(
    what: str,
    folder: str | Path,
    kind: str,
    *,
    legacy: Recognise | None = None,
    purpose: str = "",
) -> str:
    """Check that a command may write into ``folder``; return its state.

    ``"new"`` (does not exist), ``"empty"``, or ``"own"`` (marked for ``kind``, or
    recognised by ``legacy``). Anything else is a ClashError naming ``what`` (the option)
    and what is in the folder; nothing is created or written here (see :func:`mark`).
    """
    p = Path(folder)
    if not os.path.lexists(p):
        return "new"
    if not p.is_dir():
        raise ClashError(
            f"{what} {p} exists and is not a folder; edgereg will not replace it: choose "
            "another name"
        )
    names = [n for n in entries(p) if n != MARKER]
    if not names and marked_kind(p) in (None, kind):
        return "empty"
    if folder_is_own(p, kind, legacy):
        return "own"
    other = marked_kind(p)
    held = f"edgereg's {other}" if other else "files edgereg did not write"
    listed = ", ".join(names[:LISTED]) + (", ..." if len(names) > LISTED else "")
    raise ClashError(
        f"{what} {p} already holds {held} ({listed}); edgereg writes {purpose or kind} "
        "only into a new or empty folder or one it made for that: choose another place"
    )


def claim_file(what: str, path: str | Path, recognise: Recognise, owner: str) -> None:
    """Check that a command may write the file ``path``: new, empty, or ``recognise``\\ d
    as one ``owner`` (e.g. ``"edgereg eval --json"``) wrote; else ClashError."""
    p = Path(path)
    if not os.path.lexists(p):
        return
    if p.is_dir():
        raise ClashError(f"{what} {p} is a folder; give a file name")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise OutputError(f"{what} {p}: cannot read ({e.strerror or e})") from None
    if size == 0 or recognise(p):
        return
    raise ClashError(
        f"{what} {p} already exists and is not a file {owner} wrote; edgereg will not "
        "overwrite it: choose another name (or delete it yourself)"
    )
