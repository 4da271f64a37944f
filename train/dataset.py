"""The dataset contract: reading, checking and splitting a DATA_DIR.

A dataset is a folder with ``labels.csv``; image paths in it are relative to the folder.

- point:     ``image,x,y``                 one midpoint, normalized [0, 1], origin top-left
- keypoints: ``image,x1,y1,...,xK,yK``     K from the header
- value:     ``image,value``               (or ``--target COLUMN`` for another numeric column)
- class:     ``image,label``               or no CSV and one sub-folder per class

``y_up=True`` reads labels whose origin is bottom-left; ``coords="pixels"`` reads pixel
labels and normalizes them with each image's own size. Every check runs on every row
and all problems are reported at once (row number, file, field, what to do).
See ``docs/dataset-format.md``.

This module needs only numpy, OpenCV and the standard library (no TensorFlow).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_runtime.errors import DataError, ImageError
from edge_runtime.images import IMAGE_SUFFIXES, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

TASKS = ("point", "keypoints", "value", "class")
COORDS = ("normalized", "pixels")
LABELS_CSV = "labels.csv"
#: A class with fewer images than this cannot be learned or validated: refused.
MIN_IMAGES_PER_CLASS = 5
#: Cap on the rows listed in one report (the count of all problems is always given).
MAX_LISTED_PROBLEMS = 200
MAX_CSV_BYTES = 256 * 1024 * 1024


# --------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class Sample:
    """One labelled image."""

    row: int  # line number in labels.csv (header is line 1); 0 for folder-per-class data
    path: Path  # absolute image path
    target: np.ndarray  # (1,2)/(K,2) float32 normalized top-left; () float32 value; () int64 class
    width: int  # original image size in pixels (after EXIF orientation)
    height: int


@dataclass
class Dataset:
    """A checked dataset: samples with targets in the contract's units."""

    root: Path
    task: str
    samples: list[Sample]
    num_keypoints: int = 0
    class_names: tuple[str, ...] = ()
    target_name: str = ""
    #: rows dropped by ``skip_bad=True`` (0 otherwise), and the report that says why.
    dropped: int = 0
    report: CheckReport | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def targets(self) -> np.ndarray:
        """(N,K,2) float32 for point/keypoints, (N,) float32 for value, (N,) int64 for class."""
        if self.task in ("point", "keypoints"):
            k = max(self.num_keypoints, 1)
            if not self.samples:
                return np.zeros((0, k, 2), np.float32)
            return np.stack([s.target for s in self.samples]).astype(np.float32)
        if self.task == "value":
            return np.array([float(s.target) for s in self.samples], dtype=np.float32)
        return np.array([int(s.target) for s in self.samples], dtype=np.int64)

    def paths(self) -> list[Path]:
        return [s.path for s in self.samples]

    def image_sizes(self) -> np.ndarray:
        """(N, 2) int array of (width, height)."""
        return np.array([(s.width, s.height) for s in self.samples], dtype=np.int64).reshape(-1, 2)

    def subset(self, indices: Iterable[int]) -> Dataset:
        """A new Dataset with the samples at ``indices`` (same root, task, class names)."""
        idx = [int(i) for i in indices]
        return replace(self, samples=[self.samples[i] for i in idx])

    @property
    def message(self) -> str:
        """One line saying how many rows ``skip_bad`` dropped (empty when none)."""
        if not self.dropped:
            return ""
        return (
            f"{self.root}: skipped {self.dropped} bad row(s) of {self.dropped + len(self)}; "
            f"run `edgereg data check {self.root} --task {self.task}` to see them"
        )


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset. ``row`` 0 means the dataset as a whole."""

    message: str
    row: int = 0
    file: str = ""
    field: str = ""
    #: True when dropping this row/file fixes it (what ``skip_bad`` does)
    droppable: bool = False

    def format(self) -> str:
        where = []
        if self.row:
            where.append(f"{LABELS_CSV} row {self.row}")
        if self.file:
            where.append(f"file {self.file}")
        if self.field:
            where.append(f"column {self.field}")
        return (", ".join(where) + ": " if where else "") + self.message


@dataclass
class CheckReport:
    """Everything ``edgereg data check`` found: problems, warnings and statistics."""

    data_dir: Path
    task: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    stats_lines: list[str] = field(default_factory=list)
    rows: int = 0
    #: rows (line numbers, or file names for folder data) that skip_bad drops
    bad_rows: set[int | str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def fatal(self) -> list[Problem]:
        """Problems about the dataset as a whole: no row-dropping fixes these."""
        return [p for p in self.problems if not p.droppable]

    def format(self) -> str:
        head = f"dataset {self.data_dir} (task {self.task}): {self.rows} row(s)"
        lines = [head]
        if self.stats_lines:
            lines += ["", "statistics:"] + [f"  {s}" for s in self.stats_lines]
        if self.warnings:
            lines += ["", "warnings:"] + [f"  - {w}" for w in self.warnings]
        lines.append("")
        if self.ok:
            lines.append("OK: no problems found")
        else:
            n = len(self.problems)
            where = f" in {len(self.bad_rows)} row(s)" if self.bad_rows else ""
            lines.append(f"{n} problem(s){where}:")
            ordered = sorted(self.problems, key=lambda p: (p.droppable, p.row, p.file))
            for p in ordered[:MAX_LISTED_PROBLEMS]:
                lines.append(f"  - {p.format()}")
            if n > MAX_LISTED_PROBLEMS:
                lines.append(f"  ... and {n - MAX_LISTED_PROBLEMS} more")
            lines.append(
                "Fix the rows above (or pass --skip-bad to training to drop bad rows and "
                "count them)."
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------- images
@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    layout: str  # e.g. "RGB 8-bit", "gray 16-bit", "RGBA 8-bit"
    fmt: str  # JPEG, PNG, BMP, WebP


def _sniff_format(head: bytes) -> str:
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return ""


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def probe_image(path: Path) -> ImageInfo:
    """Decode ``path`` fully (as :func:`edge_runtime.images.read_image` does) and describe it.

    Raises :class:`ImageError` with a reason a user can act on: missing, empty, a text
    file, an unknown format, a truncated JPEG/PNG, or a corrupt image.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except OSError as e:
        raise ImageError(f"cannot read ({e.strerror or e})") from None
    if not path.is_file():
        raise ImageError("not a file")
    if size == 0:
        raise ImageError("empty file (0 bytes)")
    if size > MAX_IMAGE_BYTES:
        raise ImageError(f"{size} bytes is too large for an image")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"cannot read ({e.strerror or e})") from None
    fmt = _sniff_format(data[:16])
    if not fmt:
        if _looks_like_text(data[:512]):
            raise ImageError("is a text file, not an image (JPEG/PNG/BMP/WebP)")
        raise ImageError("not a JPEG/PNG/BMP/WebP image (unknown file content)")
    # libjpeg decodes a cut-off JPEG into a grey-padded image with only a warning:
    # a JPEG must end (after its last scan) with the EOI marker.
    eoi = data.rfind(b"\xff\xd9")
    if fmt == "JPEG" and (eoi < 0 or eoi < data.rfind(b"\xff\xda")):
        raise ImageError("truncated JPEG (no end-of-image marker): re-export or remove it")
    if fmt == "PNG" and b"IEND" not in data[-64:]:
        raise ImageError("truncated PNG (no IEND chunk): re-export or remove it")
    alpha = False
    if fmt == "PNG" and len(data) > 25 and data[12:16] == b"IHDR":
        alpha = data[25] in (4, 6)
    elif fmt == "WebP" and data[12:16] == b"VP8X" and len(data) > 20:
        alpha = bool(data[20] & 0x10)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if img is None or img.size == 0:
        raise ImageError(f"corrupt {fmt} image (cannot be decoded)")
    h, w = img.shape[:2]
    if h * w > MAX_IMAGE_PIXELS:
        raise ImageError(f"{w}x{h} pixels is too large")
    channels = 1 if img.ndim == 2 else img.shape[2]
    kind = {1: "gray", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels}-channel")
    if alpha and kind == "RGB":
        kind = "RGBA"
    depth = {np.dtype(np.uint8): "8-bit", np.dtype(np.uint16): "16-bit"}.get(img.dtype, "float")
    return ImageInfo(int(w), int(h), f"{kind} {depth}", fmt)


# --------------------------------------------------------------------------- paths
def resolve_image_path(root: Path, rel: str) -> Path:
    """``root/rel`` resolved; raises DataError if it is absolute or escapes ``root``."""
    text = rel.strip().replace("\\", "/")
    if not text:
        raise DataError("empty image path")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":") or os.path.isabs(text):
        raise DataError(
            f"absolute path {rel!r} refused: image paths must be relative to the dataset folder"
        )
    if "\x00" in text:
        raise DataError(f"{rel!r} contains a NUL character: not a file name")
    root_real = root.resolve()
    candidate = root_real / text
    try:
        real = Path(os.path.realpath(candidate))
    except (OSError, ValueError) as e:
        raise DataError(f"{rel!r} is not a usable path ({e})") from None
    try:
        real.relative_to(root_real)
    except ValueError:
        what = "a symlink pointing" if ".." not in Path(text).parts else "a path"
        raise DataError(
            f"{rel!r} is {what} outside the dataset folder: refused (copy the image into it)"
        ) from None
    return real


# --------------------------------------------------------------------------- CSV
def _read_csv(path: Path, report: CheckReport) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (stripped) and (line number, fields) of every non-blank row."""
    try:
        size = path.stat().st_size
        if size > MAX_CSV_BYTES:
            report.problems.append(Problem(f"{LABELS_CSV} is {size} bytes: too large"))
            return [], []
        raw = path.read_bytes()
    except OSError as e:
        report.problems.append(Problem(f"cannot read {LABELS_CSV}: {e.strerror or e}"))
        return [], []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        report.problems.append(
            Problem(
                f"{LABELS_CSV} is not UTF-8 text (byte {e.start}); save it as UTF-8 CSV",
            )
        )
        return [], []
    if not text.strip():
        report.problems.append(
            Problem(f"{LABELS_CSV} is empty: it needs a header line and one row per image")
        )
        return [], []
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for fields in reader:
            line = start
            start = reader.line_num + 1
            if not fields or all(not f.strip() for f in fields):
                continue
            fields = [f.strip() for f in fields]
            if header is None:
                header = fields
                continue
            rows.append((line, fields))
    except csv.Error as e:
        report.problems.append(Problem(f"{LABELS_CSV} is not valid CSV: {e}", row=start))
    return header or [], rows


def _parse_number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v


def _keypoint_count(header_lc: list[str]) -> int:
    k = 0
    while f"x{k + 1}" in header_lc and f"y{k + 1}" in header_lc:
        k += 1
    return k


# --------------------------------------------------------------------------- the scan
@dataclass
class _Row:
    line: int
    rel: str
    path: Path | None
    raw_target: Any  # list of floats (coords), float (value), str (label)
    info: ImageInfo | None = None


def _scan(
    data_dir: str | Path,
    task: str,
    *,
    y_up: bool,
    coords: str,
    target: str | None,
    class_names: Sequence[str] | None,
    workers: int | None = None,
) -> tuple[CheckReport, list[Sample], int, tuple[str, ...], str]:
    """Check every row. Returns (report, good samples, K, class names, target name)."""
    root = Path(data_dir)
    report = CheckReport(data_dir=root, task=task)
    if task not in TASKS:
        raise DataError(f"--task: {task!r} is not one of {', '.join(TASKS)}")
    if coords not in COORDS:
        raise DataError(f"--coords: {coords!r} is not one of {', '.join(COORDS)}")
    if target is not None and task != "value":
        raise DataError(f"--target is for --task value only (this is --task {task})")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (a dataset is a folder with {LABELS_CSV})")
    root = root.resolve()
    report.data_dir = root
    csv_path = root / LABELS_CSV
    rows: list[_Row] = []
    k = 1 if task == "point" else 0
    target_name = {"point": "x,y", "value": target or "value", "class": "label"}.get(task, "")

    if not csv_path.exists():
        if task == "class":
            rows = _folder_rows(root, report)
            target_name = "folder"
        else:
            report.problems.append(
                Problem(
                    f"no {LABELS_CSV} in {root}: a {task} dataset needs one "
                    f"(see docs/dataset-format.md)"
                )
            )
    else:
        header, csv_rows = _read_csv(csv_path, report)
        if header:
            rows, k, target_name = _parse_rows(
                header, csv_rows, task, target, root, report, target_name
            )
        if not csv_rows and not report.problems:
            report.problems.append(
                Problem(f"{LABELS_CSV} has a header but no rows: add one row per image")
            )
    if task == "keypoints":
        target_name = ",".join(f"x{i},y{i}" for i in range(1, k + 1))

    # decode every image (OpenCV releases the GIL: threads help)
    todo = [r for r in rows if r.path is not None]

    def probe(r: _Row) -> tuple[_Row, ImageInfo | str]:
        try:
            return r, probe_image(r.path)  # type: ignore[arg-type]
        except ImageError as e:
            return r, str(e)

    n_workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        for r, res in pool.map(probe, todo):
            if isinstance(res, str):
                _bad(report, r.line, r.rel, "image", res)
            else:
                r.info = res

    # targets
    names: tuple[str, ...] = ()
    if task == "class":
        names = _class_names(rows, class_names, report)
    samples: list[Sample] = []
    for r in rows:
        if (r.line or r.rel) in report.bad_rows or r.path is None or r.info is None:
            continue
        t = _make_target(r, task, k, y_up, coords, names, report)
        if t is None:
            continue
        samples.append(Sample(r.line, r.path, t, r.info.width, r.info.height))
    report.rows = len(rows)
    if task == "class":
        _check_class_counts(samples, names, report, strict=not class_names)
    if not rows and not report.problems:
        report.problems.append(Problem("no images found"))
    _stats(report, rows, samples, task, names, target_name)
    return report, samples, k, names, target_name


def _bad(report: CheckReport, line: int, rel: str, fld: str, msg: str) -> None:
    report.problems.append(Problem(msg, row=line, file=rel, field=fld, droppable=True))
    report.bad_rows.add(line or rel)


def _folder_rows(root: Path, report: CheckReport) -> list[_Row]:
    rows: list[_Row] = []
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        report.problems.append(
            Problem(
                f"no {LABELS_CSV} and no class sub-folders in {root}: give either a "
                f"{LABELS_CSV} with image,label or one sub-folder of images per class"
            )
        )
        return rows
    ignored = 0
    for d in dirs:
        for f in sorted(d.rglob("*")):
            if f.name.startswith(".") or not (f.is_file() or f.is_symlink()):
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                ignored += 1
                continue
            rel = f.relative_to(root).as_posix()
            # row numbers: folder data has none; we number them for messages only
            try:
                path: Path | None = resolve_image_path(root, rel)
            except DataError as e:
                path = None
                _bad(report, 0, rel, "image", str(e))
            rows.append(_Row(0, rel, path, d.name))
    if ignored:
        report.warnings.append(f"{ignored} non-image file(s) in the class folders were ignored")
    return rows


def _parse_rows(
    header: list[str],
    csv_rows: list[tuple[int, list[str]]],
    task: str,
    target: str | None,
    root: Path,
    report: CheckReport,
    target_name: str,
) -> tuple[list[_Row], int, str]:
    lc = [h.lower() for h in header]
    k = 1 if task == "point" else 0
    first = header[0] if header else ""
    if "image" not in lc:
        hint = ""
        if first and Path(first).suffix.lower() in IMAGE_SUFFIXES:
            hint = " (line 1 looks like data: the first line must be the header)"
        report.problems.append(
            Problem(f"missing header column 'image'{hint}", row=1, field="image")
        )
        return [], k, target_name
    need: list[str]
    if task == "point":
        need = ["x", "y"]
    elif task == "keypoints":
        k = _keypoint_count(lc)
        if k == 0:
            report.problems.append(
                Problem(
                    "missing header columns x1,y1,...,xK,yK (keypoints need numbered x/y pairs)",
                    row=1,
                    field="x1",
                )
            )
            return [], k, target_name
        need = [c for i in range(1, k + 1) for c in (f"x{i}", f"y{i}")]
        stray = [
            h for h in lc if h[:1] in "xy" and h[1:].isdigit() and int(h[1:]) > k and h not in need
        ]
        if stray:
            report.problems.append(
                Problem(
                    f"header has {', '.join(stray)} but not a complete pair for every "
                    f"keypoint up to it (found x1..y{k} complete)",
                    row=1,
                )
            )
    elif task == "value":
        need = [(target or "value").lower()]
    else:
        need = ["label"]
    missing = [c for c in need if c not in lc]
    if missing:
        have = ",".join(header)
        report.problems.append(
            Problem(
                f"missing header column(s) {', '.join(missing)} (header is '{have}'; "
                f"a {task} CSV needs image,{','.join(need)})",
                row=1,
                field=missing[0],
            )
        )
        return [], k, target_name
    if task == "value":
        target_name = header[lc.index(need[0])]
    col_img = lc.index("image")
    cols = [lc.index(c) for c in need]
    ncol = len(header)
    seen: dict[str, int] = {}
    rows: list[_Row] = []
    for line, fields in csv_rows:
        rel = fields[col_img] if col_img < len(fields) else ""
        while len(fields) > ncol and not fields[-1]:  # trailing empty cells (spreadsheets)
            fields = fields[:-1]
        if len(fields) != ncol:
            _bad(
                report,
                line,
                rel,
                "",
                f"{len(fields)} columns, the header has {ncol} ({','.join(header)})",
            )
            rows.append(_Row(line, rel, None, None))
            continue
        if not rel:
            _bad(report, line, "", "image", "empty image path")
            rows.append(_Row(line, rel, None, None))
            continue
        try:
            path: Path | None = resolve_image_path(root, rel)
        except DataError as e:
            _bad(report, line, rel, "image", str(e))
            rows.append(_Row(line, rel, None, None))
            continue
        key = str(path)
        if key in seen:
            _bad(
                report,
                line,
                rel,
                "image",
                f"duplicated row: this image is already listed on row {seen[key]}",
            )
            rows.append(_Row(line, rel, None, None))
            continue
        seen[key] = line
        raw: Any
        if task == "class":
            raw = fields[cols[0]]
            if not raw:
                _bad(report, line, rel, "label", "empty label")
                path = None
        else:
            vals = []
            for c in cols:
                v = _parse_number(fields[c])
                name = header[c]
                if v is None:
                    _bad(report, line, rel, name, f"{fields[c]!r} is not a number")
                elif not math.isfinite(v):
                    _bad(report, line, rel, name, f"{fields[c]} is not a finite number")
                vals.append(v)
            raw = vals if task != "value" else (vals[0] if vals else None)
            if line in report.bad_rows:
                path = None
        rows.append(_Row(line, rel, path, raw))
    return rows, k, target_name


def _make_target(
    r: _Row,
    task: str,
    k: int,
    y_up: bool,
    coords: str,
    names: tuple[str, ...],
    report: CheckReport,
) -> np.ndarray | None:
    assert r.info is not None
    if task == "value":
        return np.asarray(r.raw_target, dtype=np.float32)
    if task == "class":
        if r.raw_target not in names:
            return None  # reported by _class_names
        return np.asarray(names.index(r.raw_target), dtype=np.int64)
    vals = np.asarray(r.raw_target, dtype=np.float64).reshape(k, 2)
    w, h = r.info.width, r.info.height
    ok = True
    for i in range(k):
        for j, (axis, size) in enumerate((("x", w), ("y", h))):
            name = axis if task == "point" else f"{axis}{i + 1}"
            v = vals[i, j]
            if coords == "pixels":
                if not 0 <= v <= size:
                    _bad(
                        report,
                        r.line,
                        r.rel,
                        name,
                        f"{name}={v:g} px is outside the image (0..{size} px)",
                    )
                    ok = False
                vals[i, j] = v / size
            elif not 0 <= v <= 1:
                hint = " (pixel labels? use --coords pixels)" if v > 1.5 else ""
                _bad(
                    report,
                    r.line,
                    r.rel,
                    name,
                    f"{name}={v:g} is outside [0, 1]{hint}",
                )
                ok = False
    if not ok:
        return None
    if y_up:
        vals[:, 1] = 1.0 - vals[:, 1]
    return np.clip(vals, 0.0, 1.0).astype(np.float32)


def _class_names(
    rows: list[_Row], class_names: Sequence[str] | None, report: CheckReport
) -> tuple[str, ...]:
    labels = [r.raw_target for r in rows if r.path is not None and r.raw_target]
    if class_names:
        names = tuple(str(c) for c in class_names)
        for r in rows:
            if r.path is not None and r.raw_target and r.raw_target not in names:
                _bad(
                    report,
                    r.line,
                    r.rel,
                    "label",
                    f"label {r.raw_target!r} is not one of the model's classes "
                    f"({', '.join(names)})",
                )
        return names
    names = tuple(sorted(set(labels)))
    if len(names) == 1:
        report.problems.append(
            Problem(f"only one class ({names[0]!r}): a class task needs at least 2", field="label")
        )
    return names


def _check_class_counts(
    samples: list[Sample], names: tuple[str, ...], report: CheckReport, strict: bool
) -> None:
    """Training data needs MIN_IMAGES_PER_CLASS of every class (a problem). Data checked
    against a model's known classes (validation, evaluation) may lack some: a warning."""
    counts = Counter(int(s.target) for s in samples)
    for i, name in enumerate(names):
        n = counts.get(i, 0)
        if len(names) < 2 or n >= MIN_IMAGES_PER_CLASS:
            continue
        if strict:
            report.problems.append(
                Problem(
                    f"class {name!r} has only {n} usable image(s); each class needs at least "
                    f"{MIN_IMAGES_PER_CLASS} (add images or merge/remove the class)",
                    field="label",
                )
            )
        else:
            report.warnings.append(f"class {name!r} has only {n} image(s) here")


def _histogram(values: np.ndarray, bins: int = 10, width: int = 40) -> list[str]:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return [f"all {len(values)} values are {lo:g}"]
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    top = counts.max()
    out = []
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        bar = "#" * int(round(width * c / top)) if top else ""
        out.append(f"{a:10.4g} .. {b:<10.4g} {c:6d} {bar}")
    return out


def _stats(
    report: CheckReport,
    rows: list[_Row],
    samples: list[Sample],
    task: str,
    names: tuple[str, ...],
    target_name: str,
) -> None:
    infos = [r.info for r in rows if r.info is not None]
    st: dict[str, Any] = {"rows": len(rows), "usable": len(samples)}
    lines = [f"rows: {len(rows)}, usable: {len(samples)}, with problems: {len(report.bad_rows)}"]
    if infos:
        sizes = Counter((i.width, i.height) for i in infos)
        ws = [i.width for i in infos]
        hs = [i.height for i in infos]
        st["sizes"] = {f"{w}x{h}": n for (w, h), n in sizes.most_common()}
        st["layouts"] = dict(Counter(i.layout for i in infos).most_common())
        st["formats"] = dict(Counter(i.fmt for i in infos).most_common())
        common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(3))
        lines.append(
            f"image sizes: {len(sizes)} distinct, width {min(ws)}..{max(ws)}, "
            f"height {min(hs)}..{max(hs)}; most common {common}"
        )
        lines.append(
            "channel layouts: " + ", ".join(f"{k} ({v})" for k, v in st["layouts"].items())
        )
        lines.append("formats: " + ", ".join(f"{k} ({v})" for k, v in st["formats"].items()))
    if samples:
        if task == "value":
            v = np.array([float(s.target) for s in samples])
            st["target"] = {
                "name": target_name,
                "min": float(v.min()),
                "max": float(v.max()),
                "mean": float(v.mean()),
                "std": float(v.std()),
            }
            lines.append(
                f"{target_name}: min {v.min():.4g}, max {v.max():.4g}, mean {v.mean():.4g}, "
                f"std {v.std():.4g}"
            )
            lines += ["histogram:"] + [f"  {h}" for h in _histogram(v)]
        elif task == "class":
            c = Counter(int(s.target) for s in samples)
            st["classes"] = {n: c.get(i, 0) for i, n in enumerate(names)}
            lines.append(
                "classes: " + ", ".join(f"{n} ({c.get(i, 0)})" for i, n in enumerate(names))
            )
            if names and max(c.values(), default=0) > 0:
                maj = max(c.values()) / len(samples)
                lines.append(f"majority-class accuracy (the baseline to beat): {maj:.3f}")
        else:
            t = np.stack([s.target for s in samples]).reshape(len(samples), -1, 2)
            st["target"] = {
                "x_min": float(t[..., 0].min()),
                "x_max": float(t[..., 0].max()),
                "y_min": float(t[..., 1].min()),
                "y_max": float(t[..., 1].max()),
                "x_mean": float(t[..., 0].mean()),
                "y_mean": float(t[..., 1].mean()),
            }
            s = st["target"]
            lines.append(
                f"normalized coords (top-left origin): x {s['x_min']:.3f}..{s['x_max']:.3f} "
                f"(mean {s['x_mean']:.3f}), y {s['y_min']:.3f}..{s['y_max']:.3f} "
                f"(mean {s['y_mean']:.3f})"
            )
            if len(samples) > 1 and float(t.std(axis=0).max()) < 1e-6:
                report.warnings.append("every label is the same point: nothing to learn")
    report.stats = st
    report.stats_lines = lines


# --------------------------------------------------------------------------- public API
def check_dataset(
    data_dir: str | Path,
    task: str,
    *,
    y_up: bool = False,
    coords: str = "normalized",
    target: str | None = None,
    class_names: Sequence[str] | None = None,
) -> CheckReport:
    """Run every check on ``data_dir`` and return the report (never raises for bad rows)."""
    report, *_ = _scan(
        data_dir, task, y_up=y_up, coords=coords, target=target, class_names=class_names
    )
    return report


def load_dataset(
    data_dir: str | Path,
    task: str,
    *,
    y_up: bool = False,
    coords: str = "normalized",
    target: str | None = None,
    skip_bad: bool = False,
    class_names: Sequence[str] | None = None,
) -> Dataset:
    """Load a checked dataset. Raises DataError with the whole report if anything is wrong.

    ``skip_bad=True`` drops the bad rows instead (``Dataset.dropped`` counts them, and
    ``Dataset.message`` says so); problems with the dataset as a whole still raise.
    """
    report, samples, k, names, target_name = _scan(
        data_dir, task, y_up=y_up, coords=coords, target=target, class_names=class_names
    )
    if not report.ok and (not skip_bad or report.fatal):
        raise DataError(report.format())
    if not samples:
        raise DataError(report.format() + "\nno usable images left")
    return Dataset(
        root=report.data_dir,
        task=task,
        samples=samples,
        num_keypoints=k,
        class_names=names,
        target_name=target_name,
        dropped=report.rows - len(samples),
        report=report,
    )


def split_dataset(ds: Dataset, val_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Deterministic (train, val) split; stratified by class for class tasks.

    Each part keeps the CSV order. Every class with at least 2 images gets at least one
    validation image when ``val_fraction > 0``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"--val-fraction: {val_fraction} must be in [0, 1)")
    n = len(ds)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    if val_fraction > 0 and n:
        if ds.task == "class":
            t = ds.targets()
            for c in range(len(ds.class_names)):
                idx = np.flatnonzero(t == c)
                if len(idx) < 2:
                    continue
                m = min(len(idx) - 1, max(1, int(round(len(idx) * val_fraction))))
                val += rng.permutation(idx)[:m].tolist()
        else:
            m = min(n - 1, max(1, int(round(n * val_fraction)))) if n > 1 else 0
            val = rng.permutation(n)[:m].tolist()
    vset = set(val)
    train_idx = [i for i in range(n) if i not in vset]
    return ds.subset(train_idx), ds.subset(sorted(vset))


def _resolve_dir(text: str, run_dir: Path) -> Path:
    p = Path(text)
    if p.is_absolute() or p.exists():
        return p
    alt = run_dir / p
    return alt if alt.exists() else p


def load_run_splits(run_dir: str | Path) -> tuple[Dataset, Dataset]:
    """(train, val) exactly as ``edgereg train`` used them, from ``run_dir/config.json``."""
    run = Path(run_dir)
    cfg_path = run / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{cfg_path}: not found (is {run} a run directory from edgereg train?)"
        ) from None
    except (OSError, ValueError) as e:
        raise DataError(f"{cfg_path}: cannot read ({e})") from None
    if not isinstance(cfg, dict) or "data_dir" not in cfg or "task" not in cfg:
        raise DataError(f"{cfg_path}: needs at least 'data_dir' and 'task'")
    names = cfg.get("class_names")
    spec_path = run / "spec.json"
    if not names and spec_path.exists():
        try:
            names = json.loads(spec_path.read_text(encoding="utf-8")).get("class_names")
        except (OSError, ValueError, AttributeError):
            names = None
    kw: dict[str, Any] = {
        "y_up": bool(cfg.get("y_up", False)),
        "coords": cfg.get("coords") or "normalized",
        "target": cfg.get("target"),
        "skip_bad": bool(cfg.get("skip_bad", False)),
        "class_names": list(names) if names else None,
    }
    task = cfg["task"]
    data = load_dataset(_resolve_dir(cfg["data_dir"], run), task, **kw)
    if cfg.get("val_dir"):
        val = load_dataset(_resolve_dir(cfg["val_dir"], run), task, **kw)
        return data, val
    return split_dataset(
        data, float(cfg.get("val_fraction", 0.2) or 0.0), int(cfg.get("seed", 0) or 0)
    )
