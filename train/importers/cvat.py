"""CVAT for images 1.1 XML (https://docs.cvat.ai/docs/dataset_management/formats/format-xml/).

Per ``<image name= width= height=>``:

- ``<skeleton label=>`` with one ``<points label= points="x,y" outside= occluded=>`` per
  keypoint (``outside="1"``: not in the image -> missing; ``occluded="1"`` keeps its
  coordinates);
- ``<points label= points="x,y">``: a keypoint named by its label (one point per shape);
- ``<box xtl= ytl= xbr= ybr=>``: its centre, for a point task;
- ``<tag label=>``: the class.

Coordinates are pixels of the image's ``width``/``height``. The keypoint order is the
order of the label definitions in ``<meta>`` (a skeleton's point labels, whose
``<parent>`` is the skeleton), unless ``--keypoints`` is given. The XML is parsed with
no DTD and no entities (defusedxml when installed; otherwise such files are refused).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from edge_runtime.errors import DataError

from .common import ImageFinder, ImportOptions, Item, Parsed, number, read_text, wrong_format

EXPECTED = "a CVAT for images 1.1 XML file (<annotations> with <image> elements)"
_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def read(src: Path, opts: ImportOptions) -> Parsed:
    xml_path = _xml_path(src)
    root = _parse(xml_path)
    if root.tag != "annotations":
        raise wrong_format(xml_path, EXPECTED + f" (the root element is <{root.tag}>)")
    images = root.findall("image")
    if not images and root.findall("track"):
        raise DataError(
            f"{xml_path}: a CVAT for video export (<track> elements); export the task as "
            "'CVAT for images 1.1'"
        )
    finder = _finder(xml_path, opts)
    parsed = Parsed(items=[], image_roots=[r for r, s in finder.roots if s])
    used_skeleton: set[str] = set()
    used_points: set[str] = set()
    multi: list[str] = []  # labels of <points> shapes holding several points
    for el in images:
        parsed.items.append(_item(xml_path, el, finder, (used_skeleton, used_points), multi))
    parsed.file_order, parsed.order_source = _order(root, used_skeleton, used_points - set(multi))
    if multi:
        shown = ", ".join(sorted(set(multi)))
        parsed.notes.append(
            f"{len(multi)} <points> shape(s) with several points ignored (label {shown}): "
            "give each keypoint its own label, or use a skeleton"
        )
    return parsed


def _xml_path(src: Path) -> Path:
    if src.is_dir():
        xml = src / "annotations.xml"
        if not xml.is_file():
            raise DataError(f"{src}: no annotations.xml in this folder (expected {EXPECTED})")
        return xml
    return src


def _parse(path: Path) -> ET.Element:
    """Parse without DTDs or entities: defusedxml if installed, else refuse them ourselves."""
    text = read_text(path, EXPECTED)
    try:
        import defusedxml.ElementTree as safe_et
    except ImportError:  # pragma: no cover - defusedxml is in the train extra
        safe_et = None
    if _DECLARATION.search(text):
        raise DataError(f"{path}: has a DOCTYPE/ENTITY declaration: refused (CVAT writes none)")
    try:
        if safe_et is not None:
            return safe_et.fromstring(text.encode("utf-8"))  # type: ignore[no-any-return]
        return ET.fromstring(text)
    except ET.ParseError as e:
        raise DataError(f"{path}: not valid XML ({e}); expected {EXPECTED}") from None
    except ValueError as e:  # defusedxml's refusals (DTDForbidden, EntitiesForbidden...)
        raise DataError(f"{path}: refused ({type(e).__name__}); expected {EXPECTED}") from None


def _finder(xml_path: Path, opts: ImportOptions) -> ImageFinder:
    """--images, else the export's ``images/`` folder (CVAT's zip layout), else beside it."""
    if opts.images:
        return ImageFinder([(opts.images, True)])
    here = xml_path.parent
    return ImageFinder([(here / "images", True), (here, False)])


def _item(
    xml_path: Path,
    el: ET.Element,
    finder: ImageFinder,
    used: tuple[set[str], set[str]],
    multi: list[str],
) -> Item:
    ref = el.get("name", "")
    item = Item(
        where=f"{xml_path.name} image id {el.get('id')} ({ref})", image_ref=ref, pixels=True
    )
    w, h = number(el.get("width")), number(el.get("height"))
    item.size = (w, h) if w and h else None
    item.image, why = finder.find([ref])
    if item.image is None:
        item.problem = f"image not found: {ref!r} ({why})"
    skeletons = el.findall("skeleton")
    if len(skeletons) > 1:
        item.problem = item.problem or f"{len(skeletons)} skeletons: one object per image is needed"
    for sk in skeletons[:1]:
        used[0].add(sk.get("label", ""))
        for p in sk.findall("points"):
            _add_point(item, p, p.get("outside") == "1", multi)
    for p in el.findall("points"):
        used[1].add(p.get("label", ""))
        _add_point(item, p, False, multi)
    for b in el.findall("box"):
        xs = [number(b.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")]
        if all(v is not None for v in xs):
            x0, y0, x1, y1 = xs  # a rotation about the centre leaves the centre in place
            item.boxes.append((b.get("label", ""), ((x0 + x1) / 2, (y0 + y1) / 2)))  # type: ignore[operator]
    item.labels += [t.get("label", "") for t in el.findall("tag")]
    return item


def _add_point(item: Item, el: ET.Element, outside: bool, multi: list[str]) -> None:
    """One keypoint (``None`` when outside); a several-point shape is noted in ``multi``."""
    label = el.get("label", "")
    pts = _xy_list(el.get("points", ""))
    if pts is None:
        item.problem = (
            item.problem or f"points {label!r}: bad points attribute {el.get('points')!r}"
        )
    elif len(pts) != 1:
        multi.append(label)
    else:
        item.points.append((label, None if outside else pts[0]))


def _xy_list(text: str) -> list[tuple[float, float]] | None:
    out = []
    for pair in text.split(";"):
        xy = [number(v) for v in pair.split(",")]
        if len(xy) != 2 or xy[0] is None or xy[1] is None:
            return None
        out.append((xy[0], xy[1]))
    return out


def _order(
    root: ET.Element, used_skel: set[str], used_pts: set[str]
) -> tuple[tuple[str, ...] | None, str]:
    """Keypoint order from the label definitions in <meta> (task, job or project)."""
    labels = _meta_labels(root)
    if not labels:
        return None, ""
    if len(used_skel) == 1:
        parent = next(iter(used_skel))
        kids = tuple(lb["name"] for lb in labels if lb["parent"] == parent)
        if kids:
            return kids, f"from the CVAT skeleton {parent!r} definition in <meta>"
    if used_pts and not used_skel:
        names = tuple(lb["name"] for lb in labels if lb["name"] in used_pts and not lb["parent"])
        if set(names) == used_pts:
            return names, "from the CVAT label definitions in <meta>"
    return None, ""


def _meta_labels(root: ET.Element) -> list[dict[str, Any]]:
    meta = root.find("meta")
    if meta is None:
        return []
    out = []
    for lb in meta.iter("label"):
        name = lb.findtext("name")
        if name is not None:
            out.append({"name": name, "parent": lb.findtext("parent") or ""})
    return out
