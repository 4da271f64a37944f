"""What every importer shares: the parsed item, image lookup, targets, the report, the writer.

A format module only *parses* its files into :class:`Item` objects (one per image: named
keypoints, box centres, class labels, values, in pixels or normalized units). Everything
that depends on the task is done here, once for all formats:

- the keypoint order (``--keypoints``, or the order the file defines, never the order
  names happen to appear in);
- probing each image, normalizing pixel coordinates by the size the file declares, and
  refusing an image whose shape disagrees with that size;
- turning an item into a row of the dataset contract (``docs/dataset-format.md``), with
  empty cells for a missing keypoint;
- writing ``DATA_DIR`` whole or not at all: images and ``labels.csv`` are built in a
  hidden folder beside it and renamed into place at the end.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.atomic import atomic_write_text
from edge_runtime.errors import ClashError, DataError, OptionError, OutputError
from edge_runtime.images import IMAGE_SUFFIXES
from edge_runtime.outputs import check_outputs
from train.tasks.base import ImportRule

LABELS_CSV = "labels.csv"
IMAGES_DIR = "images"
#: Cap on the skipped items listed one by one in a report (the count is always given).
MAX_LISTED = 200
#: Largest annotation file read (JSON/XML/YAML); bigger is refused before parsing.
MAX_ANNOTATION_BYTES = 1024 * 1024 * 1024
#: Files indexed when looking images up by name in a folder tree.
MAX_INDEXED_FILES = 500_000
#: Relative difference of aspect ratios (file's declared size vs the image) tolerated.
ASPECT_TOLERANCE = 0.02

Point = tuple[float, float]


# --------------------------------------------------------------------------- parsed data
@dataclass(frozen=True)
class ImportOptions:
    """What the user asked for, as every reader sees it."""

    task: str
    #: what the task's labels are made of (its ``import_rule``: points, a label, a number)
    rule: ImportRule
    keypoints: tuple[str, ...] | None = None  # --keypoints, in the user's order
    images: Path | None = None  # --images

    @property
    def wants_points(self) -> bool:
        return self.rule.kind == "points"

    @property
    def one_point(self) -> bool:
        return self.rule.kind == "points" and self.rule.points == 1


@dataclass
class Item:
    """One image and everything a format file says about it, before any task logic.

    Coordinates are pixels of the declared ``size`` when ``pixels`` is True, else
    normalized to [0, 1]; origin top-left in both. A keypoint that is not labelled or
    not visible (COCO/YOLO ``v=0``, CVAT ``outside``) is ``None``.
    """

    where: str  # e.g. "export.json task 12": names the file and the row/annotation id
    image_ref: str  # the image as the file names it
    image: Path | None = None  # the resolved source image (None: not found)
    pixels: bool = False
    size: tuple[float, float] | None = None  # declared (width, height) in pixels
    points: list[tuple[str, Point | None]] = field(default_factory=list)
    boxes: list[tuple[str, Point]] = field(default_factory=list)  # box centres
    labels: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    problem: str = ""  # set by the reader when this item cannot be used, and why


@dataclass
class Parsed:
    """What a reader returns: the items, and what it knows about keypoint order."""

    items: list[Item]
    #: the keypoint order the file itself defines (COCO categories, CVAT <meta>, data.yaml)
    file_order: tuple[str, ...] | None = None
    order_source: str = ""  # where file_order comes from, for the report
    image_roots: list[Path] = field(default_factory=list)  # folders searched for images
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Record:
    """One row of the dataset to write."""

    where: str
    image: Path
    points: tuple[Point | None, ...] = ()  # normalized, top-left; None: missing keypoint
    value: float | None = None
    label: str | None = None


@dataclass
class ImportReport:
    """What was imported, what was skipped and why, printed like ``data check``'s report."""

    fmt: str
    src: Path
    data_dir: Path
    task: str
    records: list[Record] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    notes: list[str] = field(default_factory=list)
    keypoint_names: tuple[str, ...] = ()
    order_source: str = ""
    image_roots: list[Path] = field(default_factory=list)
    missing_keypoints: int = 0
    images_with_missing: int = 0
    written: bool = False
    linked: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.records)

    def format(self) -> str:
        lines = [f"import {self.fmt} {self.src} -> {self.data_dir} (task {self.task})"]
        if self.keypoint_names:
            lines.append(f"keypoint order: {', '.join(self.keypoint_names)} ({self.order_source})")
        if self.image_roots:
            lines.append("images looked up in: " + ", ".join(str(p) for p in self.image_roots))
        lines.append("")
        lines += self._result_lines()
        if self.skipped:
            lines += ["", f"skipped {len(self.skipped)}:"]
            for where, reason in self.skipped[:MAX_LISTED]:
                lines.append(f"  - {where}: {reason}")
            if len(self.skipped) > MAX_LISTED:
                lines.append(f"  ... and {len(self.skipped) - MAX_LISTED} more")
            reasons = Counter(_reason_kind(r) for _, r in self.skipped)
            if len(reasons) > 1:
                lines.append("  by reason: " + "; ".join(f"{k} ({n})" for k, n in reasons.items()))
        if self.notes:
            lines += ["", "notes:"] + [f"  - {n}" for n in self.notes]
        if self.written:
            lines += ["", f"next: edgereg data check {self.data_dir} --task {self.task}"]
        return "\n".join(lines)

    def _result_lines(self) -> list[str]:
        if not self.records:
            return ["nothing usable found: nothing written"]
        how = "hard-linked" if self.linked == len(self.records) else "copied"
        if 0 < self.linked < len(self.records):
            how = f"{self.linked} hard-linked, {len(self.records) - self.linked} copied"
        out = [
            f"imported {len(self.records)} image(s) into {self.data_dir} "
            f"({LABELS_CSV}; images {how} into {IMAGES_DIR}/)"
        ]
        if self.missing_keypoints:
            out.append(
                f"missing keypoints: {self.missing_keypoints} in {self.images_with_missing} "
                "image(s), written as empty x/y cells"
            )
        return out


def _reason_kind(reason: str) -> str:
    """The first words of a reason (before any ':'), to count skips by kind."""
    return reason.split(":")[0].split("(")[0].strip()[:60]


# --------------------------------------------------------------------------- reading files
def read_json(path: Path, expected: str) -> Any:
    """Parse a JSON file; a DataError naming the file and what was expected otherwise."""
    text = read_text(path, expected)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
            f"expected {expected}"
        ) from None


def read_text(path: Path, expected: str) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_ANNOTATION_BYTES:
            raise DataError(f"{path}: {size} bytes is too large for {expected}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: not found (expected {expected})") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder (expected {expected})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (expected {expected})") from None


def guess_format(obj: Any) -> str:
    """Which importer a parsed JSON document looks like it belongs to ('' if none)."""
    if isinstance(obj, dict):
        if {"images", "annotations"} <= set(obj):
            return "coco"
        if "shapes" in obj and "imagePath" in obj:
            return "labelme"
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        if "data" in obj[0] and ("annotations" in obj[0] or "predictions" in obj[0]):
            return "labelstudio"
    return ""


def wrong_format(path: Path, expected: str, obj: Any = None, this: str = "") -> DataError:
    """The error for a file of another format, with a hint when we recognise it."""
    other = guess_format(obj) if obj is not None else ""
    hint = ""
    if other and other != this:
        hint = f"; it looks like a {other} file: use `edgereg data import {other}`"
    return DataError(f"{path}: not {expected}{hint}")


def number(v: Any) -> float | None:
    """A finite float from a JSON/XML/text value, or None."""
    if isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


# --------------------------------------------------------------------------- images
class ImageFinder:
    """Finds the image a file names: first as a path under each root, then by file name.

    Roots marked ``search`` (``--images``, an ``images/`` folder of an export) are also
    indexed by file name, recursively, so ``/data/upload/1/x.jpg`` finds ``x.jpg``
    anywhere below them. A name found twice in the index is ambiguous and not used.
    """

    def __init__(self, roots: Sequence[tuple[Path, bool]]) -> None:
        self.roots = [(Path(r), s) for r, s in roots if Path(r).is_dir()]
        self._index: dict[str, list[Path]] | None = None

    @property
    def folders(self) -> list[Path]:
        return [r for r, _ in self.roots]

    def find(self, candidates: Iterable[str]) -> tuple[Path | None, str]:
        """The first existing file among the candidate paths/names, or (None, why)."""
        names = [c.replace("\\", "/").strip() for c in candidates if c and c.strip()]
        for text in names:
            p = Path(text)
            if p.is_absolute() and p.is_file():
                return p, ""
            for root, _ in self.roots:
                q = root / text.lstrip("/")
                if not p.is_absolute() and q.is_file():
                    return q, ""
        for text in names:
            hits = self._by_name().get(Path(text).name.lower(), [])
            if len(hits) == 1:
                return hits[0], ""
            if len(hits) > 1:
                shown = ", ".join(str(h) for h in hits[:3])
                return None, f"file name {Path(text).name!r} is ambiguous: {shown}"
        where = ", ".join(str(r) for r in self.folders) or "no existing folder"
        return None, f"looked for {names[0] if names else '?'!r} in {where}"

    def _by_name(self) -> dict[str, list[Path]]:
        if self._index is None:
            self._index = {}
            count = 0
            for root, search in self.roots:
                if not search:
                    continue
                for dirpath, dirnames, filenames in os.walk(root):
                    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                    for f in sorted(filenames):
                        if Path(f).suffix.lower() in IMAGE_SUFFIXES:
                            self._index.setdefault(f.lower(), []).append(Path(dirpath) / f)
                            count += 1
                    if count > MAX_INDEXED_FILES:
                        break
        return self._index


def inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies below it (both resolved)."""
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- keypoint order
def resolve_order(opts: ImportOptions, parsed: Parsed, fmt: str) -> tuple[tuple[str, ...], str]:
    """The keypoint names, in target order, and where that order comes from.

    ``()`` for a point task without ``--keypoints`` (the single point or box is used).
    Raises DataError when a keypoints task has no order, listing the names found.
    """
    if not opts.wants_points:
        if opts.keypoints:
            raise OptionError(
                f"--keypoints is for tasks whose labels are points (this is --task {opts.task})"
            )
        return (), ""
    found = _names_found(parsed)
    if opts.keypoints:
        _check_user_names(opts, parsed, found)
        return tuple(opts.keypoints), "from --keypoints"
    if opts.one_point:
        return (), ""
    if parsed.file_order:
        return tuple(parsed.file_order), parsed.order_source
    listed = ", ".join(sorted(found)) or "(none)"
    example = ",".join(sorted(found)[:4]) or "tl,tr,br,bl"
    raise DataError(
        f"no keypoint order: a {fmt} export does not define one, and the order names happen "
        f"to appear in is not used. Keypoint names found: {listed}. Pass the order the model "
        f"should learn (x1,y1 first), e.g. --keypoints {example} (reordered as you need)"
    )


def _names_found(parsed: Parsed) -> set[str]:
    return {name for item in parsed.items for name, _ in item.points}


def _check_user_names(opts: ImportOptions, parsed: Parsed, found: set[str]) -> None:
    names = opts.keypoints or ()
    if opts.one_point and len(names) != 1:
        raise DataError(
            f"--keypoints: a {opts.task} task takes one name (the keypoint to use), "
            f"got {len(names)}"
        )
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise OptionError(f"--keypoints: {', '.join(dupes)} given more than once")
    known = set(parsed.file_order or ()) | found
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "(none)"
        raise DataError(
            f"--keypoints: {', '.join(unknown)} not found in the export; names there: {listed}"
        )


# --------------------------------------------------------------------------- items -> records
def build_records(
    parsed: Parsed, opts: ImportOptions, order: tuple[str, ...], report: ImportReport
) -> None:
    """Turn every usable item into a Record (in file order); the rest become skips."""
    from train.dataset import probe_image  # OpenCV only when importing, not for --help

    seen: dict[str, str] = {}
    for item in parsed.items:
        reason = item.problem or _find_problem(item)
        if not reason:
            key = os.path.realpath(item.image)  # type: ignore[arg-type]
            if key in seen:
                reason = f"same image as {seen[key]}: listed once"
        size: tuple[float, float] | None = None
        if not reason:
            size, reason = _image_size(item, probe_image)
        rec = None
        if not reason:
            rec, reason = _target(item, opts, order, size)  # type: ignore[arg-type]
        if reason or rec is None:
            report.skipped.append((item.where, reason or "no target"))
            continue
        seen[key] = item.where
        report.records.append(rec)
        missing = sum(p is None for p in rec.points)
        report.missing_keypoints += missing
        report.images_with_missing += bool(missing)


def _find_problem(item: Item) -> str:
    if item.image is None:
        return f"image not found: {item.image_ref!r}"
    return ""


def _image_size(item: Item, probe: Callable[[Path], Any]) -> tuple[tuple[float, float], str]:
    """(width, height) to normalize pixel coordinates with, or a reason to skip the item."""
    from edge_runtime.errors import ImageError

    try:
        info = probe(item.image)
    except ImageError as e:
        return (0.0, 0.0), f"image {item.image_ref!r}: {e}"
    if item.size is None:
        return (float(info.width), float(info.height)), ""
    w, h = item.size
    if w <= 0 or h <= 0:
        return (0.0, 0.0), f"the file gives the image size as {w:g}x{h:g}"
    declared, actual = w / h, info.width / info.height
    if abs(declared - actual) > ASPECT_TOLERANCE * actual:
        return (0.0, 0.0), (
            f"the file says the image is {w:g}x{h:g} but {item.image_ref!r} is "
            f"{info.width}x{info.height} (rotated or a different image?)"
        )
    return (w, h), ""


def _target(
    item: Item, opts: ImportOptions, order: tuple[str, ...], size: tuple[float, float]
) -> tuple[Record | None, str]:
    """The record for one item, or (None, why not)."""
    assert item.image is not None
    kind, task = opts.rule.kind, opts.task
    if kind == "label":
        labels = sorted(set(item.labels))
        if len(labels) != 1:
            what = (
                "no class label"
                if not labels
                else f"{len(labels)} class labels ({', '.join(labels)})"
            )
            return None, f"{what}: a {task} task needs exactly one per image"
        return Record(item.where, item.image, label=labels[0]), ""
    if kind == "number":
        if len(item.values) != 1:
            what = "no value" if not item.values else f"{len(item.values)} values"
            return None, f"{what}: a {task} task needs exactly one number per image"
        return Record(item.where, item.image, value=item.values[0]), ""
    pts, reason = _points(item, opts, order)
    if reason:
        return None, reason
    scale = size if item.pixels else (1.0, 1.0)
    norm = tuple(None if p is None else (p[0] / scale[0], p[1] / scale[1]) for p in pts)
    return Record(item.where, item.image, points=norm), ""


def _points(
    item: Item, opts: ImportOptions, order: tuple[str, ...]
) -> tuple[list[Point | None], str]:
    """The item's points in ``order`` (pixels or normalized, as the item has them)."""
    if opts.one_point and not order:
        visible = [(n, p) for n, p in item.points if p is not None]
        if len(visible) == 1:
            return [visible[0][1]], ""
        if not visible and len(item.boxes) == 1:
            return [item.boxes[0][1]], ""
        if not visible and not item.boxes:
            return [], "no point or box labelled"
        return [], (
            f"{len(visible)} point(s) and {len(item.boxes)} box(es): a {opts.task} task needs "
            "one; pass --keypoints NAME to choose a keypoint by name"
        )
    out: list[Point | None] = []
    for name in order:
        hits = [p for n, p in item.points if n == name]
        if len(hits) > 1:
            return [], f"keypoint {name!r} labelled {len(hits)} times"
        out.append(hits[0] if hits else None)
    if all(p is None for p in out):
        return [], f"none of the keypoints {', '.join(order)} is labelled"
    if opts.one_point and out[0] is None:
        return [], f"point {order[0]!r} is not labelled or not visible"
    return out, ""


# --------------------------------------------------------------------------- writing
def check_data_dir(data_dir: Path, forbidden: Iterable[tuple[Path, str]]) -> None:
    """Refuse (ClashError, exit 13) a DATA_DIR that is, holds or lies inside an input
    (``forbidden``: (path, what) pairs, files or folders), or exists with content."""
    pairs = [(what, p) for p, what in forbidden if p is not None and os.path.lexists(p)]
    check_outputs(
        [(w, p) for w, p in pairs if not p.is_dir()],
        [],
        input_folders=[(w, p) for w, p in pairs if p.is_dir()],
        output_folders=[("DATA_DIR", data_dir)],
    )
    if data_dir.exists() and not data_dir.is_dir():
        raise ClashError(f"{data_dir}: exists and is not a folder; give a new folder name")
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise ClashError(
            f"{data_dir}: exists and is not empty; import into a new (or empty) folder, "
            "nothing is overwritten"
        )


def csv_text(
    records: Sequence[Record], task: str, names: Sequence[str], images: Sequence[str]
) -> str:
    """labels.csv for ``records`` (image paths given by ``images``), full float precision.

    The label columns are the task's (``import_header``); the cells follow the kind of
    label (points: x, y per point, empty for a missing one; a number; a label).
    """
    from train import tasks

    kind = tasks.get(task)
    rule = kind.import_rule
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", *kind.import_header(max(len(names), 1))])
    for rec, rel in zip(records, images, strict=True):
        if rule is not None and rule.kind == "points":
            cells = [c for p in rec.points for c in (("", "") if p is None else map(repr, p))]
        elif rule is not None and rule.kind == "number":
            cells = [repr(float(rec.value))]  # type: ignore[arg-type]
        else:
            cells = [str(rec.label)]
        w.writerow([rel, *cells])
    return buf.getvalue()


def image_names(records: Sequence[Record]) -> list[str]:
    """``images/<file name>`` per record; a clash gets ``-2``, ``-3``... in record order.

    Names are compared case-insensitively, so the dataset also works on macOS/Windows.
    """
    used: set[str] = set()
    out = []
    for rec in records:
        stem, suffix = rec.image.stem, rec.image.suffix
        name, n = rec.image.name, 1
        while name.lower() in used:
            n += 1
            name = f"{stem}-{n}{suffix}"
        used.add(name.lower())
        out.append(f"{IMAGES_DIR}/{name}")
    return out


def write_dataset(report: ImportReport, names: Sequence[str], link: bool) -> None:
    """Build DATA_DIR in a hidden folder beside it, then rename it into place.

    A crash leaves only the hidden ``.NAME.importing-*`` folder, never a DATA_DIR that
    looks whole; an error removes it. Images are copied (or hard-linked with ``link``),
    never moved or changed.
    """
    data_dir = report.data_dir
    rels = image_names(report.records)
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{data_dir.parent}: cannot create ({e.strerror or e})") from None
    tmp = data_dir.parent / f".{data_dir.name}.importing-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / IMAGES_DIR).mkdir(parents=True)
        for rec, rel in zip(report.records, rels, strict=True):
            report.linked += _place_image(rec.image, tmp / rel, link)
        if link and report.linked < len(report.records):
            report.notes.append(
                f"{len(report.records) - report.linked} image(s) copied: a hard link needs "
                "the same file system (symlinks are not used: the dataset reader refuses "
                "links that point outside DATA_DIR)"
            )
        atomic_write_text(tmp / LABELS_CSV, csv_text(report.records, report.task, names, rels))
        _fsync_dir(tmp / IMAGES_DIR)
        _fsync_dir(tmp)
        os.replace(tmp, data_dir)  # an empty existing DATA_DIR is replaced too (POSIX rename)
        _fsync_dir(data_dir.parent)
    except OSError as e:
        raise OutputError(
            f"{data_dir}: could not be written ({e.strerror or e}); nothing written"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    report.written = True


def _place_image(src: Path, dst: Path, link: bool) -> bool:
    """Hard-link (when asked and possible) or copy ``src`` to ``dst``; True if linked."""
    if link:
        try:
            os.link(src, dst)
            return True
        except OSError:
            pass
    shutil.copyfile(src, dst)
    with open(dst, "rb+") as f:
        os.fsync(f.fileno())
    return False


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
