"""LabelMe JSON files (https://github.com/wkentaro/labelme): one ``.json`` per image.

Each file has ``shapes`` (``label``, ``points`` ``[[x, y], ...]`` in pixels,
``shape_type``, ``group_id``), ``imagePath`` (relative to the JSON file),
``imageWidth``/``imageHeight`` (older files lack them: the image's own size is used) and
``flags`` (image-level check boxes, LabelMe's classification).

- ``shape_type: point`` -> a keypoint named by its label;
- ``rectangle`` (two corners) -> its centre, for a point task;
- the one ``flags`` entry set to true (names starting with ``__`` excepted) -> the class.

Shapes with different ``group_id`` values are different objects: such an image is skipped.
LabelMe defines no keypoint order: a keypoints task needs ``--keypoints``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_runtime.errors import DataError

from .common import ImageFinder, ImportOptions, Item, Parsed, number, read_json, wrong_format

EXPECTED = "LabelMe JSON (an object with shapes and imagePath)"


def read(src: Path, opts: ImportOptions) -> Parsed:
    files = _json_files(src)
    extra: list[tuple[Path, bool]] = [(opts.images, True)] if opts.images else []
    parsed = Parsed(items=[], image_roots=[opts.images] if opts.images else [])
    others: list[str] = []
    ignored: list[str] = []  # shape types that are neither point nor rectangle
    for f in files:
        doc = read_json(f, EXPECTED)
        if not _is_labelme(doc):
            if not src.is_dir():
                raise wrong_format(f, EXPECTED, doc, "labelme")
            others.append(f.name)
            continue
        where = str(f.relative_to(src)) if src.is_dir() else f.name
        finder = ImageFinder([(f.parent, False), *extra])
        parsed.items.append(_item(where, doc, finder, ignored))
    if src.is_dir() and not parsed.items:
        raise DataError(f"{src}: no LabelMe JSON files in this folder (expected {EXPECTED})")
    if ignored:
        kinds = ", ".join(sorted(set(ignored)))
        parsed.notes.append(f"{len(ignored)} shape(s) of other types ignored ({kinds})")
    if others:
        shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
        parsed.notes.append(f"{len(others)} .json file(s) that are not LabelMe ignored: {shown}")
    return parsed


def _json_files(src: Path) -> list[Path]:
    """SRC itself, or every .json below the folder SRC (hidden folders skipped), sorted."""
    if not src.is_dir():
        return [src]
    return sorted(
        f
        for f in src.rglob("*.json")
        if not any(p.startswith(".") for p in f.relative_to(src).parts)
    )


def _is_labelme(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("shapes"), list) and "imagePath" in doc


def _item(where: str, doc: dict[str, Any], finder: ImageFinder, ignored: list[str]) -> Item:
    ref = str(doc.get("imagePath") or "").replace("\\", "/")
    item = Item(where=where, image_ref=ref, pixels=True)
    w, h = number(doc.get("imageWidth")), number(doc.get("imageHeight"))
    item.size = (w, h) if w and h else None
    item.image, why = finder.find([ref, Path(ref).name])
    if item.image is None:
        item.problem = f"image not found: {ref!r} ({why})"
    groups = {s.get("group_id") for s in doc["shapes"] if isinstance(s, dict)}
    if len(groups - {None}) > 1:
        shown = ", ".join(str(g) for g in sorted(groups - {None}, key=str))
        item.problem = (
            item.problem
            or f"shapes of {len(groups - {None})} objects (group_id {shown}): one per image is needed"
        )
    for s in doc["shapes"]:
        if isinstance(s, dict) and not _add_shape(item, s):
            ignored.append(str(s.get("shape_type") or "polygon"))
    flags = doc.get("flags") if isinstance(doc.get("flags"), dict) else {}
    item.labels += [str(k) for k, v in flags.items() if v is True and not str(k).startswith("__")]
    return item


def _add_shape(item: Item, s: dict[str, Any]) -> bool:
    """Add a point or a rectangle's centre; False for a shape of another type."""
    kind = s.get("shape_type") or "polygon"  # LabelMe's default when the key is absent
    pts = [p for p in s.get("points") or [] if isinstance(p, list) and len(p) == 2]
    xy = [(number(p[0]), number(p[1])) for p in pts]
    if any(x is None or y is None for x, y in xy):
        item.problem = item.problem or f"shape {s.get('label')!r}: non-numeric points"
        return True
    label = str(s.get("label", ""))
    if kind == "point" and len(xy) == 1:
        item.points.append((label, xy[0]))  # type: ignore[arg-type]
    elif kind == "rectangle" and len(xy) == 2:
        (x0, y0), (x1, y1) = xy
        item.boxes.append((label, ((x0 + x1) / 2, (y0 + y1) / 2)))  # type: ignore[operator]
    else:
        return False
    return True
