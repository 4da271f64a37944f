"""COCO keypoints JSON (https://cocodataset.org/#format-data): ``images``, ``annotations``,
``categories``.

``annotations[].keypoints`` is ``[x1, y1, v1, x2, y2, v2, ...]`` in pixels with
``v = 0`` not labelled (x = y = 0), ``1`` labelled but not visible, ``2`` visible; the
names and their order are the annotation category's ``keypoints``. A file without
keypoints (detection) gives the ``bbox`` ``[x, y, w, h]`` centre for a point task.

One annotated object per image: an image with more is reported and skipped. Crowd
annotations (``iscrowd: 1``) and, for keypoint tasks, objects with no labelled keypoint
are not objects here (they are counted in the report's notes).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from edge_runtime.errors import DataError

from .common import ImageFinder, ImportOptions, Item, Parsed, number, read_json, wrong_format

EXPECTED = "a COCO JSON file (an object with images, annotations and categories)"


def read(src: Path, opts: ImportOptions) -> Parsed:
    coco = _load(src)
    cats = {c.get("id"): c for c in coco["categories"] if isinstance(c, dict)}
    by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for a in coco["annotations"]:
        if isinstance(a, dict):
            by_image[a.get("image_id")].append(a)
    with_kps = any(isinstance(a.get("keypoints"), list) for anns in by_image.values() for a in anns)
    finder = _finder(src, opts)
    parsed = Parsed(items=[], image_roots=[r for r, s in finder.roots if s])
    ignored = {"crowd": 0, "no keypoints": 0}
    for img in coco["images"]:
        if isinstance(img, dict):
            anns = by_image.get(img.get("id"), [])
            parsed.items.append(_item(src, img, anns, cats, opts, with_kps, finder, ignored))
    parsed.file_order, parsed.order_source = _order(src, cats, coco["annotations"], opts)
    if ignored["crowd"]:
        parsed.notes.append(f"{ignored['crowd']} crowd annotation(s) (iscrowd 1) ignored")
    if ignored["no keypoints"]:
        parsed.notes.append(
            f"{ignored['no keypoints']} annotation(s) with no labelled keypoint ignored"
        )
    return parsed


def _load(src: Path) -> dict[str, Any]:
    if src.is_dir():
        raise wrong_format(src, f"a file: SRC is {EXPECTED}")
    coco = read_json(src, EXPECTED)
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise wrong_format(src, EXPECTED, coco, "coco")
    return coco


def _finder(src: Path, opts: ImportOptions) -> ImageFinder:
    """--images, else the JSON's folder and the ``images/`` folder beside or above it."""
    if opts.images:
        return ImageFinder([(opts.images, True)])
    here = src.parent
    return ImageFinder([(here, False), (here / "images", True), (here.parent / "images", True)])


def _item(
    src: Path,
    img: dict[str, Any],
    anns: list[dict[str, Any]],
    cats: dict[Any, dict[str, Any]],
    opts: ImportOptions,
    with_kps: bool,
    finder: ImageFinder,
    ignored: dict[str, int],
) -> Item:
    ref = str(img.get("file_name", ""))
    item = Item(where=f"{src.name} image id {img.get('id')} ({ref})", image_ref=ref, pixels=True)
    w, h = number(img.get("width")), number(img.get("height"))
    item.size = (w, h) if w and h else None
    item.image, why = finder.find([ref])
    if item.image is None:
        item.problem = f"image not found: {ref!r} ({why})"
    objects = _objects(anns, opts.wants_points, with_kps, ignored)
    if len(objects) != 1:
        ids = ", ".join(str(a.get("id")) for a in objects)
        item.problem = item.problem or (
            "no annotated object"
            if not objects
            else f"{len(objects)} annotated objects (annotation ids {ids}): one per image is needed"
        )
        return item
    ann = objects[0]
    item.where += f" annotation id {ann.get('id')}"
    cat = cats.get(ann.get("category_id"), {})
    item.labels.append(str(cat.get("name", ann.get("category_id"))))
    _add_keypoints(item, ann, cat)
    bbox = ann.get("bbox")
    if isinstance(bbox, list) and len(bbox) == 4 and all(number(b) is not None for b in bbox):
        x, y, bw, bh = (float(b) for b in bbox)
        item.boxes.append((item.labels[0], (x + bw / 2, y + bh / 2)))
    return item


def _objects(
    anns: list[dict[str, Any]], wants_points: bool, with_kps: bool, ignored: dict[str, int]
) -> list[dict[str, Any]]:
    out = []
    for a in anns:
        if a.get("iscrowd"):
            ignored["crowd"] += 1
        elif wants_points and with_kps and not _labelled(a):
            ignored["no keypoints"] += 1
        else:
            out.append(a)
    return out


def _labelled(a: dict[str, Any]) -> bool:
    kps = a.get("keypoints")
    return isinstance(kps, list) and any((number(v) or 0) > 0 for v in kps[2::3])


def _add_keypoints(item: Item, ann: dict[str, Any], cat: dict[str, Any]) -> None:
    kps = ann.get("keypoints")
    if not isinstance(kps, list):
        return
    names = [str(n) for n in cat.get("keypoints") or []]
    if len(kps) != 3 * len(names):
        item.problem = (
            f"{len(kps)} keypoint numbers, but category {cat.get('name')!r} names "
            f"{len(names)} keypoints (3 numbers each: x, y, v)"
        )
        return
    for i, name in enumerate(names):
        x, y, v = (number(k) for k in kps[3 * i : 3 * i + 3])
        visible = v is not None and v > 0 and x is not None and y is not None
        item.points.append((name, (x, y) if visible else None))  # type: ignore[arg-type]


def _order(
    src: Path, cats: dict[Any, dict[str, Any]], anns: list[Any], opts: ImportOptions
) -> tuple[tuple[str, ...] | None, str]:
    """The keypoint order of the categories that have annotated keypoints."""
    used = {a.get("category_id") for a in anns if isinstance(a, dict) and a.get("keypoints")}
    lists = {tuple(str(n) for n in cats[c].get("keypoints") or []) for c in used if c in cats}
    lists.discard(())
    if not lists:
        return None, ""
    if len(lists) > 1 and not opts.keypoints:
        shown = "; ".join(",".join(names) for names in sorted(lists))
        raise DataError(
            f"{src}: categories define different keypoint lists ({shown}); pass the names to "
            "use, in order, with --keypoints"
        )
    return next(iter(sorted(lists))), "from the COCO categories[].keypoints"
