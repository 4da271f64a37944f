"""The one rule for every command's outputs: never write over an input or over each other.

Before a command opens anything for writing it calls :func:`check_outputs` with every
input (model file, source file or folder, dataset folder) and every output (files and
folders it will write). Each path is resolved (symlinks, ``..``, relative to the current
folder) and compared:

- an output may not BE an input file (``--json in.avi`` would replace the video);
- an output may not lie INSIDE an input folder (a run's ``plots/`` inside a dataset would
  become a new class of a folder-per-class dataset);
- an output folder may not CONTAIN an input (writing a run over the data it reads);
- two outputs may not be the same file, or one inside the other;
- ``-`` (standard output) may be used by one output only.

A clash is a :class:`ClashError` (exit code 13) naming both options and the path, and
nothing has been written. Only the standard library: the device uses it too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import ClashError

STDOUT = "-"

#: (what, path): ``what`` names the option or argument for messages, e.g. ``"--json"``.
Named = tuple[str, "str | Path"]


def resolved(path: str | Path) -> Path:
    """The absolute, symlink-free form of ``path`` (which need not exist yet)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_outputs(
    inputs: Iterable[Named],
    outputs: Sequence[Named],
    *,
    input_folders: Iterable[Named] = (),
    output_folders: Iterable[Named] = (),
) -> None:
    """Raise :class:`ClashError` when an output would clash with an input or another output.

    ``inputs``/``outputs`` are files; ``input_folders`` are folders read as a whole (a
    dataset, an image folder), ``output_folders`` folders written into (a run directory).
    Entries whose path is None or empty are ignored; ``-`` is standard output.
    """
    ins = [(w, resolved(p)) for w, p in inputs if p not in (None, "", STDOUT)]
    in_dirs = [(w, resolved(p)) for w, p in input_folders if p not in (None, "")]
    outs = [(w, p) for w, p in outputs if p not in (None, "")]
    out_dirs = [(w, resolved(p)) for w, p in output_folders if p not in (None, "")]
    stdout_users = [w for w, p in outs if str(p) == STDOUT]
    if len(stdout_users) > 1:
        raise ClashError(
            f"{' and '.join(stdout_users)} both write to standard output ('-'); give all "
            "but one of them a file name"
        )
    files = [(w, resolved(p)) for w, p in outs if str(p) != STDOUT]
    for w, p in files:
        _check_one(w, p, ins, in_dirs, is_folder=False)
    for w, p in out_dirs:
        _check_one(w, p, ins, in_dirs, is_folder=True)
    _check_pairs(files + out_dirs)


def _check_one(
    what: str,
    path: Path,
    ins: list[tuple[str, Path]],
    in_dirs: list[tuple[str, Path]],
    *,
    is_folder: bool,
) -> None:
    for w, p in ins:
        if path == p:
            raise ClashError(
                f"{what} {path} is the input given as {w}: it would be overwritten; "
                "write the output somewhere else"
            )
        if is_folder and _inside(p, path):
            raise ClashError(f"{what} {path} contains the input {w} ({p}); choose another folder")
    for w, d in in_dirs:
        if _inside(path, d):
            raise ClashError(
                f"{what} {path} is inside the input folder {w} ({d}); edgereg never writes "
                "into its inputs: choose a place outside it"
            )
        if is_folder and _inside(d, path):
            raise ClashError(
                f"{what} {path} contains the input folder {w} ({d}); choose another folder"
            )


def _check_pairs(outs: Sequence[tuple[str, Path]]) -> None:
    for i, (w1, p1) in enumerate(outs):
        for w2, p2 in outs[i + 1 :]:
            if p1 == p2 or _inside(p1, p2) or _inside(p2, p1):
                raise ClashError(
                    f"{w1} and {w2} name the same place ({p1 if p1 == p2 else p2}); give "
                    "each output its own file"
                )
