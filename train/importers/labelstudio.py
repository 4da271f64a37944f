"""Label Studio JSON export (Export -> JSON): a list of tasks with ``annotations[].result[]``.

Result types used (https://labelstud.io/tags/): ``keypointlabels`` (``value.x/y`` in
percent of the image, named by ``value.keypointlabels[0]``), ``rectanglelabels`` (top-left
``x/y``, ``width/height`` in percent, ``rotation`` in degrees about the top-left corner:
its centre), ``choices`` (class), ``number`` (value). ``original_width/height`` is the
image size the labeller saw. Cancelled annotations and predictions are not used.

Image paths such as ``/data/upload/1/3f2a9c1e-img.jpg`` or
``/data/local-files/?d=photos/img.jpg`` are looked up under ``--images`` by their path,
then by file name (with and without the upload's 8-hex-digit prefix).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from edge_runtime.images import IMAGE_SUFFIXES

from .common import ImageFinder, ImportOptions, Item, Parsed, number, read_json, wrong_format

EXPECTED = "a Label Studio JSON export (a list of tasks with data and annotations)"
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def read(src: Path, opts: ImportOptions) -> Parsed:
    tasks = _load(src)
    roots: list[tuple[Path, bool]] = [(opts.images, True)] if opts.images else []
    roots.append((src.parent, False))
    finder = ImageFinder(roots)
    items = [_item(src, i, task, finder) for i, task in enumerate(tasks)]
    parsed = Parsed(items=items, image_roots=[opts.images] if opts.images else [])
    not_found = sum(1 for it in items if it.problem.startswith("image not found"))
    if not_found and not opts.images:
        parsed.notes.append(
            f"{not_found} image(s) not found next to the export: pass --images DIR (the folder "
            "with the images, e.g. Label Studio's media/upload folder)"
        )
    return parsed


def _load(src: Path) -> list[dict[str, Any]]:
    if src.is_dir():
        raise wrong_format(src, f"a file: SRC is {EXPECTED}")
    obj = read_json(src, EXPECTED)
    if isinstance(obj, list) and not obj:
        return []
    if not isinstance(obj, list) or not all(isinstance(t, dict) for t in obj):
        raise wrong_format(src, EXPECTED, obj, "labelstudio")
    if not any("data" in t for t in obj):
        if any("image" in t or "annotator" in t for t in obj):
            raise wrong_format(src, EXPECTED + " (this looks like JSON-MIN: export as JSON)")
        raise wrong_format(src, EXPECTED, obj, "labelstudio")
    return obj


def _item(src: Path, index: int, task: dict[str, Any], finder: ImageFinder) -> Item:
    where = f"{src.name} task {task.get('id', f'#{index + 1}')}"
    ref, problem = _image_ref(task.get("data"))
    item = Item(where=where, image_ref=ref, problem=problem)
    if not problem:
        item.image, why = finder.find(_candidates(ref))
        if item.image is None:
            item.problem = f"image not found: {ref!r} ({why})"
    ann, why = _pick_annotation(task)
    if ann is None:
        item.problem = item.problem or why
        return item
    item.where += f" (annotation {ann.get('id', '?')})"
    for r in ann.get("result") or []:
        if isinstance(r, dict):
            _add_result(item, r)
    return item


def _image_ref(data: Any) -> tuple[str, str]:
    """The task's image URL/path, or ('', why none)."""
    if not isinstance(data, dict):
        return "", "task has no data"
    if isinstance(data.get("image"), str):
        return data["image"], ""
    images = [v for v in data.values() if isinstance(v, str) and _looks_like_image(v)]
    if len(images) == 1:
        return images[0], ""
    keys = ", ".join(sorted(data)) or "none"
    return "", f"no single image in the task data (keys: {keys})"


def _looks_like_image(v: str) -> bool:
    """A URL/path whose path (or ``?d=`` local-files path) ends in an image suffix."""
    url = urlparse(v)
    paths = [url.path, *parse_qs(url.query).get("d", [])]
    return any(Path(unquote(p)).suffix.lower() in IMAGE_SUFFIXES for p in paths)


def _candidates(ref: str) -> list[str]:
    """Paths/names to try for an image reference, most specific first."""
    url = urlparse(ref)
    d = parse_qs(url.query).get("d")
    if d:  # /data/local-files/?d=folder/img.jpg
        path = unquote(d[0])
    elif url.scheme in ("", "file") and not url.path.startswith("/data/upload/"):
        path = unquote(url.path)  # a local path, relative to the export or absolute
    elif url.path.startswith("/data/upload/"):  # /data/upload/<project>/<prefix>-<name>
        path = unquote(url.path)[len("/data/upload/") :]
    else:  # http(s)://, s3://, gs://: only the file name can match a local copy
        path = Path(unquote(url.path)).name
    name = Path(path).name
    out = [path, name]
    stripped = UPLOAD_PREFIX.sub("", name)
    if stripped != name:
        out.append(stripped)
    return out


def _pick_annotation(task: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The annotation to use: the only one, or the ground truth, or the latest."""
    anns = [
        a for a in task.get("annotations") or task.get("completions") or [] if isinstance(a, dict)
    ]
    usable = [a for a in anns if not a.get("was_cancelled")]
    if not usable:
        if anns:
            return None, "every annotation was cancelled"
        if task.get("predictions"):
            return None, "only predictions, no annotation"
        return None, "no annotation"
    truth = [a for a in usable if a.get("ground_truth")]
    pool = truth if len(truth) == 1 else usable
    return max(
        pool,
        key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), str(a.get("id"))),
    ), ""


def _add_result(item: Item, r: dict[str, Any]) -> None:
    kind = str(r.get("type", "")).lower()
    v = r.get("value") if isinstance(r.get("value"), dict) else {}
    w, h = number(r.get("original_width")), number(r.get("original_height"))
    if w and h and item.size is None:
        item.size = (w, h)
    if kind == "keypointlabels":
        x, y = number(v.get("x")), number(v.get("y"))
        names = v.get("keypointlabels") or [""]
        if x is not None and y is not None:
            item.points.append((str(names[0]), (x / 100.0, y / 100.0)))
    elif kind in ("rectanglelabels", "rectangle"):
        centre = _box_centre(v, w, h)
        if centre is not None:
            item.boxes.append((str((v.get("rectanglelabels") or [""])[0]), centre))
    elif kind == "choices":
        item.labels += [str(c) for c in v.get("choices") or []]
    elif kind == "number":
        n = number(v.get("number"))
        if n is not None:
            item.values.append(n)


def _box_centre(v: dict[str, Any], w: float | None, h: float | None) -> tuple[float, float] | None:
    """Normalized centre of a (possibly rotated) rectangle; rotation is about its top-left."""
    x, y, bw, bh = (number(v.get(k)) for k in ("x", "y", "width", "height"))
    if x is None or y is None or bw is None or bh is None:
        return None
    angle = number(v.get("rotation")) or 0.0
    if not angle:
        return (x + bw / 2) / 100.0, (y + bh / 2) / 100.0
    if not w or not h:
        return None  # a rotation is in pixels: it needs the image size
    t = math.radians(angle)
    half_w, half_h = bw / 200.0 * w, bh / 200.0 * h  # half sizes in pixels
    cx = x / 100.0 * w + half_w * math.cos(t) - half_h * math.sin(t)
    cy = y / 100.0 * h + half_w * math.sin(t) + half_h * math.cos(t)
    return cx / w, cy / h
