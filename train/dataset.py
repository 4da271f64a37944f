"""The dataset contract: reading, checking and splitting a DATA_DIR.

A dataset is a folder with ``labels.csv``; image paths in it are relative to the folder.
Which columns hold the labels, how they are read and checked, and the form of a target
are the task's (``train/tasks/<task>.py``): e.g. point ``image,x,y``, keypoints
``image,x1,y1,...,xK,yK``, value ``image,value``, class ``image,label`` (or one sub-folder
per class), angle ``image,angle``. This module does what every task shares: the CSV, the
image paths and files, duplicates, the report and the split. Every check runs on every
row and all problems are reported at once (row number, file, field, what to do).
See ``docs/dataset-format.md``.

This module needs only numpy, OpenCV and the standard library (no TensorFlow).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import DataError, ImageError, OptionError
from edge_runtime.images import IMAGE_SUFFIXES, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, decode_image
from train import tasks
from train.tasks import HeaderProblem, LabelColumns, TrainTask

LABELS_CSV = "labels.csv"
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
        """Every target stacked in the task's dataset form: (N, K, 2) float32 coordinates,
        (N,) float32 values or angles, (N,) int64 class indices."""
        task = tasks.get(self.task)
        return task.stack([s.target for s in self.samples], self.num_keypoints)

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
    #: how the labels were read (separator, keypoint numbering ...): said, not a problem
    notes: list[str] = field(default_factory=list)
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
        if self.notes:
            lines += ["", "read as:"] + [f"  {n}" for n in self.notes]
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
    #: 1, or 2/4/8 when the image is so large it is decoded at that fraction of its size
    reduced: int = 1


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
    try:
        img, w, h, reduced = decode_image(np.frombuffer(data, np.uint8), "image")
    except ImageError as e:
        if "not a readable image" in str(e):
            raise ImageError(f"corrupt {fmt} image (cannot be decoded)") from None
        raise ImageError(str(e).removeprefix("image: ")) from None
    channels = 1 if img.ndim == 2 else img.shape[2]
    kind = {1: "gray", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels}-channel")
    if alpha and kind == "RGB":
        kind = "RGBA"
    depth = {np.dtype(np.uint8): "8-bit", np.dtype(np.uint16): "16-bit"}.get(img.dtype, "float")
    layout = f"{kind} {depth}" if reduced == 1 else f"decoded at 1/{reduced} size"
    return ImageInfo(int(w), int(h), layout, fmt, reduced)


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
#: Separators a labels.csv may use: a spreadsheet saves "CSV" with ';' where the decimal
#: mark is a comma, and "Text (tab-delimited)" with tabs.
SEPARATORS = (",", ";", "\t")
_SEP_LINE = re.compile(r'^\s*"?sep=(.)"?\s*$', re.IGNORECASE)


def _sep_name(sep: str) -> str:
    return {"\t": "tab", ",": "','", ";": "';'"}.get(sep, repr(sep))


@dataclass(frozen=True)
class CsvDialect:
    """How labels.csv is written: its separator and how that was found."""

    separator: str = ","
    #: "" (the default comma), "header" (the header line splits into 'image' with it) or
    #: "sep-line" (Excel's ``sep=;`` first line, which is then skipped)
    found_by: str = ""
    #: the line number of the header (2 after a ``sep=`` line)
    header_line: int = 1

    def note(self) -> str:
        if self.found_by == "sep-line":
            return (
                f"separator {_sep_name(self.separator)}, from the file's first line "
                f"'sep={self.separator}' (as Excel writes it)"
            )
        if self.found_by == "header":
            return f"separator {_sep_name(self.separator)}, detected from the header line"
        return ""


def _split_line(line: str, sep: str) -> list[str]:
    try:
        return [f.strip().lower() for f in next(csv.reader([line], delimiter=sep), [])]
    except csv.Error:
        return []


def sniff_dialect(text: str) -> tuple[CsvDialect, int]:
    """The separator of labels.csv text and how many leading lines to skip (``sep=``).

    Why not ``csv.Sniffer``: it guesses from character frequencies across lines and
    misreads the decimal commas of ';' files (``a.jpg;0,41;0,65``); here the header must
    name an ``image`` column, which decides the separator exactly.
    """
    lines = text.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None:
        return CsvDialect(), 0
    m = _SEP_LINE.match(lines[first])
    if m:
        return CsvDialect(m.group(1), "sep-line"), first + 1
    header = lines[first]
    fits = [sep for sep in SEPARATORS if "image" in _split_line(header, sep)]
    if "," in fits or not fits:
        return CsvDialect(), 0
    return CsvDialect(fits[0], "header"), 0


def read_header(path: str | Path) -> list[str]:
    """The header of a labels.csv (any separator), or [] when it cannot be read."""
    try:
        text = Path(path).read_bytes()[: 1024 * 1024].decode("utf-8-sig", errors="replace")
    except OSError:
        return []
    dialect, skip = sniff_dialect(text)
    lines = [ln for ln in text.splitlines()[skip:] if ln.strip()]
    if not lines:
        return []
    return [f.strip() for f in next(csv.reader(lines[:1], delimiter=dialect.separator), [])]


def _read_csv(
    path: Path, report: CheckReport
) -> tuple[list[str], list[tuple[int, list[str]]], CsvDialect]:
    """Header (stripped), (line number, fields) of every non-blank row, and the dialect."""
    text = _csv_text(path, report)
    if text is None:
        return [], [], CsvDialect()
    dialect, skip = sniff_dialect(text)
    if dialect.found_by:
        report.notes.append(f"{LABELS_CSV}: {dialect.note()}")
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=dialect.separator, skipinitialspace=True
    )
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for fields in reader:
            line = start
            start = reader.line_num + 1
            if line <= skip or not fields or all(not f.strip() for f in fields):
                continue
            fields = [f.strip() for f in fields]
            if header is None:
                header = fields
                dialect = replace(dialect, header_line=line)
                continue
            rows.append((line, fields))
    except csv.Error as e:
        report.problems.append(Problem(f"{LABELS_CSV} is not valid CSV: {e}", row=start))
    return header or [], rows, dialect


def _csv_text(path: Path, report: CheckReport) -> str | None:
    """labels.csv as text, or None with the problem reported."""
    try:
        size = path.stat().st_size
        if size > MAX_CSV_BYTES:
            report.problems.append(Problem(f"{LABELS_CSV} is {size} bytes: too large"))
            return None
        raw = path.read_bytes()
    except OSError as e:
        report.problems.append(Problem(f"cannot read {LABELS_CSV}: {e.strerror or e}"))
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        report.problems.append(
            Problem(
                f"{LABELS_CSV} is not UTF-8 text (byte {e.start}); save it as UTF-8 CSV",
            )
        )
        return None
    if not text.strip():
        report.problems.append(
            Problem(f"{LABELS_CSV} is empty: it needs a header line and one row per image")
        )
        return None
    return text


# --------------------------------------------------------------------------- the scan
@dataclass
class _Row:
    line: int
    rel: str
    path: Path | None
    raw_target: Any  # the task's raw label (numbers, text)
    info: ImageInfo | None = None


@dataclass
class _Scan:
    """What one pass over a dataset found."""

    report: CheckReport
    samples: list[Sample]
    columns: LabelColumns
    vocabulary: tuple[str, ...]


def _scan(
    data_dir: str | Path,
    task_name: str,
    options: dict[str, Any],
    class_names: Sequence[str] | None,
    workers: int | None = None,
) -> _Scan:
    """Check every row: the rows, their images, then the targets and the whole set."""
    task = tasks.get(task_name)
    opts = tasks.task_options(task, options, labels_only=True)
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (a dataset is a folder with {LABELS_CSV})")
    root = root.resolve()
    report = CheckReport(data_dir=root, task=task_name)
    rows, cols = _read_rows(root, task, opts, report)
    _probe_images(rows, report, workers)
    vocab = _vocabulary(rows, task, class_names, cols, report)
    samples = _targets(rows, task, cols, opts, vocab, report)
    report.rows = len(rows)
    good = {s.row for s in samples}
    raws = [r.raw_target for r in rows if r.line in good and r.raw_target is not None]
    report.warnings += task.label_warnings(raws, cols, opts)
    problems, warnings = task.dataset_checks(
        [s.target for s in samples], vocab, strict=not class_names
    )
    report.problems += [Problem(m, field=_first(cols.names)) for m in problems]
    report.warnings += warnings
    if not rows and not report.problems:
        report.problems.append(Problem("no images found"))
    _stats(report, rows, samples, task, vocab, cols.target_name)
    return _Scan(report, samples, cols, vocab)


def _first(names: list[str]) -> str:
    return names[0] if names else ""


def _read_rows(
    root: Path, task: TrainTask, opts: dict[str, Any], report: CheckReport
) -> tuple[list[_Row], LabelColumns]:
    """The rows of labels.csv (or of the class folders) with their raw labels."""
    csv_path = root / LABELS_CSV
    cols = LabelColumns([], [], "")
    if not csv_path.exists():
        if task.folder_labels:
            return _folder_rows(root, report, task), LabelColumns([], [], "folder")
        report.problems.append(
            Problem(
                f"no {LABELS_CSV} in {root}: a {task.name} dataset needs one "
                f"(see docs/dataset-format.md)"
            )
        )
        return [], cols
    header, csv_rows, dialect = _read_csv(csv_path, report)
    rows: list[_Row] = []
    if header:
        rows, cols = _parse_rows(header, csv_rows, task, opts, root, report, dialect)
    if not csv_rows and not report.problems:
        report.problems.append(
            Problem(f"{LABELS_CSV} has a header but no rows: add one row per image")
        )
    return rows, cols


def _probe_images(rows: list[_Row], report: CheckReport, workers: int | None) -> None:
    """Decode every image (OpenCV releases the GIL: threads help)."""
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


def _vocabulary(
    rows: list[_Row],
    task: TrainTask,
    given: Sequence[str] | None,
    cols: LabelColumns,
    report: CheckReport,
) -> tuple[str, ...]:
    raws = [r.raw_target for r in rows if r.path is not None and r.raw_target is not None]
    vocab, problems = task.vocabulary(raws, given)
    report.problems += [Problem(m, field=_first(cols.names) or "label") for m in problems]
    return vocab


def _targets(
    rows: list[_Row],
    task: TrainTask,
    cols: LabelColumns,
    opts: dict[str, Any],
    vocab: tuple[str, ...],
    report: CheckReport,
) -> list[Sample]:
    samples: list[Sample] = []
    for r in rows:
        if (r.line or r.rel) in report.bad_rows or r.path is None or r.info is None:
            continue
        t, problems = task.make_target(r.raw_target, r.info.width, r.info.height, cols, opts, vocab)
        for fld, msg in problems:
            _bad(report, r.line, r.rel, fld, msg)
        if t is not None and not problems:
            samples.append(Sample(r.line, r.path, t, r.info.width, r.info.height))
    return samples


def _bad(report: CheckReport, line: int, rel: str, fld: str, msg: str) -> None:
    report.problems.append(Problem(msg, row=line, file=rel, field=fld, droppable=True))
    report.bad_rows.add(line or rel)


def _folder_rows(root: Path, report: CheckReport, task: TrainTask) -> list[_Row]:
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
            rows.append(_Row(0, rel, path, task.folder_label(d.name)))
    if ignored:
        report.warnings.append(f"{ignored} non-image file(s) in the class folders were ignored")
    return rows


def _parse_rows(
    header: list[str],
    csv_rows: list[tuple[int, list[str]]],
    task: TrainTask,
    opts: dict[str, Any],
    root: Path,
    report: CheckReport,
    dialect: CsvDialect,
) -> tuple[list[_Row], LabelColumns]:
    """Every CSV row -> a _Row: its image path checked, its label cells parsed by the task."""
    lc = [h.lower() for h in header]
    cols = LabelColumns([], [], "")
    problem = _header_problem(header, dialect)
    if problem is not None:
        report.problems.append(problem)
        return [], cols
    try:
        cols = task.label_columns(header, opts)
    except HeaderProblem as e:
        report.problems.append(Problem(e.message, row=dialect.header_line, field=e.field))
        return [], cols
    cols.decimal_comma = dialect.separator != ","
    report.notes += cols.notes
    col_img = lc.index("image")
    seen: dict[str, int] = {}
    rows = [
        _parse_row(line, f, header, col_img, cols, task, root, report, seen) for line, f in csv_rows
    ]
    if cols.decimal_commas:
        report.notes.append(
            f"{cols.decimal_commas} number(s) written with a decimal comma (0,5) read as "
            "0.5, as the spreadsheet meant"
        )
    return rows, cols


def _header_problem(header: list[str], dialect: CsvDialect) -> Problem | None:
    """A missing 'image' column (saying why, when it can) or a duplicated column name."""
    lc = [h.lower() for h in header]
    first = header[0] if header else ""
    if "image" not in lc:
        hint = ""
        if first and Path(first).suffix.lower() in IMAGE_SUFFIXES:
            hint = " (line 1 looks like data: the first line must be the header)"
        elif len(header) == 1:
            hint = (
                f" (the header line is {first!r}: one column, so its separator is none of "
                "',' ';' or tab that labels.csv may use; save it as CSV)"
            )
        else:
            hint = f" (the header is {','.join(header)!r})"
        return Problem(
            f"missing header column 'image'{hint}", row=dialect.header_line, field="image"
        )
    where: dict[str, list[int]] = {}
    for i, name in enumerate(lc):
        if name:
            where.setdefault(name, []).append(i + 1)
    dupes = {n: cols for n, cols in where.items() if len(cols) > 1}
    if dupes:
        name, at = next(iter(dupes.items()))
        more = f" (and {len(dupes) - 1} more duplicated name(s))" if len(dupes) > 1 else ""
        return Problem(
            f"column {name!r} appears {len(at)} times in the header (columns "
            f"{', '.join(map(str, at))}){more}: which one holds the labels is ambiguous; "
            "rename or remove the extra one(s)",
            row=dialect.header_line,
            field=name,
        )
    return None


def _parse_row(
    line: int,
    fields: list[str],
    header: list[str],
    col_img: int,
    cols: LabelColumns,
    task: TrainTask,
    root: Path,
    report: CheckReport,
    seen: dict[str, int],
) -> _Row:
    ncol = len(header)
    rel = fields[col_img] if col_img < len(fields) else ""
    while len(fields) > ncol and not fields[-1]:  # trailing empty cells (spreadsheets)
        fields = fields[:-1]
    if len(fields) != ncol:
        msg = f"{len(fields)} columns, the header has {ncol} ({','.join(header)})"
        _bad(report, line, rel, "", msg)
        return _Row(line, rel, None, None)
    if not rel:
        _bad(report, line, "", "image", "empty image path")
        return _Row(line, rel, None, None)
    try:
        path: Path | None = resolve_image_path(root, rel)
    except DataError as e:
        _bad(report, line, rel, "image", str(e))
        return _Row(line, rel, None, None)
    key = str(path)
    if key in seen:
        msg = f"duplicated row: this image is already listed on row {seen[key]}"
        _bad(report, line, rel, "image", msg)
        return _Row(line, rel, None, None)
    seen[key] = line
    raw, problems = task.parse_cells([fields[c] for c in cols.columns], cols)
    for fld, msg in problems:
        _bad(report, line, rel, fld, msg)
    return _Row(line, rel, None if problems else path, raw)


def _stats(
    report: CheckReport,
    rows: list[_Row],
    samples: list[Sample],
    task: TrainTask,
    vocab: tuple[str, ...],
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
        big = [i for i in infos if i.reduced > 1]
        if big:
            st["reduced"] = len(big)
            report.notes.append(
                f"{len(big)} image(s) over {MAX_IMAGE_PIXELS / 1e6:.0f} MP (largest "
                f"{max(i.width * i.height for i in big) / 1e6:.0f} MP) decoded at 1/2 to 1/8 "
                "of their size: the model input is far smaller, labels are unaffected"
            )
    if samples:
        k = len(np.asarray(samples[0].target).reshape(-1)) // 2
        targets = task.stack([s.target for s in samples], k)
        extra, more, warnings = task.describe(targets, vocab, target_name)
        st.update(extra)
        lines += more
        report.warnings += warnings
    report.stats = st
    report.stats_lines = lines


# --------------------------------------------------------------------------- public API
def check_dataset(
    data_dir: str | Path,
    task: str,
    *,
    class_names: Sequence[str] | None = None,
    **options: Any,
) -> CheckReport:
    """Run every check on ``data_dir`` and return the report (never raises for bad rows).

    ``options`` are the task's label options (``y_up``, ``coords``, ``target``, ...: see
    its module in train/tasks); an option of another task is refused.
    """
    return _scan(data_dir, task, options, class_names).report


def load_dataset(
    data_dir: str | Path,
    task: str,
    *,
    skip_bad: bool = False,
    class_names: Sequence[str] | None = None,
    **options: Any,
) -> Dataset:
    """Load a checked dataset. Raises DataError with the whole report if anything is wrong.

    ``skip_bad=True`` drops the bad rows instead (``Dataset.dropped`` counts them, and
    ``Dataset.message`` says so); problems with the dataset as a whole still raise.
    """
    scan = _scan(data_dir, task, options, class_names)
    report = scan.report
    if not report.ok and (not skip_bad or report.fatal):
        raise DataError(report.format())
    if not scan.samples:
        raise DataError(report.format() + "\nno usable images left")
    return Dataset(
        root=report.data_dir,
        task=task,
        samples=scan.samples,
        num_keypoints=scan.columns.num_keypoints,
        class_names=scan.vocabulary,
        target_name=scan.columns.target_name,
        dropped=report.rows - len(scan.samples),
        report=report,
    )


def split_dataset(ds: Dataset, val_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Deterministic (train, val) split; stratified by the task's strata (class labels).

    Each part keeps the CSV order. Every stratum with at least 2 images gets at least one
    validation image when ``val_fraction > 0``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise OptionError(f"--val-fraction: {val_fraction} must be in [0, 1)")
    n = len(ds)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    strata = tasks.get(ds.task).strata(ds.targets()) if n else None
    if val_fraction > 0 and n:
        if strata is not None:
            for c in np.unique(strata):
                idx = np.flatnonzero(strata == c)
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


#: Label options written at the top level of config.json before task options had a
#: section of their own (runs from earlier versions).
LEGACY_OPTION_KEYS = ("y_up", "coords", "target", "value_range", "flip_pairs")


def run_options(cfg: dict[str, Any]) -> dict[str, Any]:
    """A run's task options from its config.json (``options``, or the legacy top level)."""
    opts = dict(cfg.get("options") or {})
    for k in LEGACY_OPTION_KEYS:
        if k in cfg and k not in opts:
            opts[k] = cfg[k]
    return opts


def label_options(task: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Only the options of ``task`` that say how labels are read."""
    names = tasks.get(task).option_names(labels_only=True)
    return {k: v for k, v in opts.items() if k in names}


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
    task = cfg["task"]
    kw: dict[str, Any] = {
        "skip_bad": bool(cfg.get("skip_bad", False)),
        "class_names": list(names) if names else None,
        **label_options(task, run_options(cfg)),
    }
    data = load_dataset(_resolve_dir(cfg["data_dir"], run), task, **kw)
    if cfg.get("val_dir"):
        val = load_dataset(_resolve_dir(cfg["val_dir"], run), task, **kw)
        return data, val
    return split_dataset(
        data, float(cfg.get("val_fraction", 0.2) or 0.0), int(cfg.get("seed", 0) or 0)
    )
