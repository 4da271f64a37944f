"""Ultralytics YOLO pose dataset (https://docs.ultralytics.com/datasets/pose/).

``data.yaml`` gives ``path`` (the dataset root; default the YAML's folder), ``train`` /
``val`` / ``test`` (a folder of images, a ``.txt`` list of images, or a list of those),
``names`` (class names, a dict or list), ``kpt_shape: [K, 2 or 3]`` and optionally
``kpt_names`` (per class). Each image ``.../images/.../a.jpg`` has its labels in
``.../labels/.../a.txt`` (the last ``/images/`` becomes ``/labels/``, as Ultralytics
pairs them), one object per line: ``class cx cy w h x1 y1 [v1] ... xK yK [vK]``, all
normalized to [0, 1]; ``v = 0`` means not labelled.

Keypoint order is the file's (keypoint ``i`` is column group ``i``), named by
``kpt_names`` when given, else ``1..K``. Without ``kpt_shape`` (detection labels) a
point task uses the box centre. One object (line) per image; an image without a label
file is skipped (Ultralytics reads it as background).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge_runtime.errors import DataError

from .common import ImportOptions, Item, Parsed, number, read_text

EXPECTED = "an Ultralytics data.yaml (train/val image folders, names, kpt_shape)"
#: Ultralytics' image suffixes; those edgereg cannot read are reported, not ignored.
YOLO_IMAGE_SUFFIXES = {
    ".bmp",
    ".dng",
    ".jpeg",
    ".jpg",
    ".mpo",
    ".png",
    ".tif",
    ".tiff",
    ".webp",
    ".pfm",
    ".heic",
}
SPLITS = ("train", "val", "test")


def read(src: Path, opts: ImportOptions) -> Parsed:
    yaml_path, cfg = _config(src)
    root = _root(yaml_path, cfg)
    k, dims = _kpt_shape(yaml_path, cfg)
    classes = _names(cfg.get("names"))
    kpt_names = _kpt_names(cfg.get("kpt_names"), k)
    parsed = Parsed(items=[], image_roots=[root])
    if opts.images:
        parsed.notes.append("--images is not used by yolo-pose: data.yaml says where images are")
    if yaml_path.is_dir():
        parsed.notes.append(
            "no data.yaml: read as a Label Studio YOLO export (classes.txt, images/, labels/)"
        )
    seen: set[str] = set()
    for split in SPLITS:
        for img in _split_images(root, cfg.get(split), split, parsed.notes):
            if str(img) not in seen:
                seen.add(str(img))
                parsed.items.append(_item(root, img, k, dims, classes, kpt_names))
    if not parsed.items:
        raise DataError(
            f"{yaml_path}: no images found under {', '.join(s for s in SPLITS if cfg.get(s))} of {root}"
        )
    if k:
        used = {tuple(n for n, _ in it.points) for it in parsed.items if it.points}
        if len(used) <= 1:
            parsed.file_order = next(iter(used)) if used else next(iter(kpt_names.values()))
            named = "named by kpt_names" if cfg.get("kpt_names") else "numbered 1..K (no kpt_names)"
            parsed.order_source = f"from data.yaml kpt_shape, {named}"
    return parsed


def _config(src: Path) -> tuple[Path, dict[str, Any]]:
    """(the YAML file, its content); a folder with no YAML but ``classes.txt``, ``images/``
    and ``labels/`` (Label Studio's YOLO export) reads as ``train: images``."""
    if src.is_dir() and not _yamls(src) and (src / "classes.txt").is_file():
        if (src / "images").is_dir() and (src / "labels").is_dir():
            names = (src / "classes.txt").read_text(encoding="utf-8").splitlines()
            return src, {"train": "images", "names": [n.strip() for n in names if n.strip()]}
    yaml_path = _yaml_path(src)
    return yaml_path, _load(yaml_path)


def _yamls(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))


def _yaml_path(src: Path) -> Path:
    if not src.is_dir():
        return src
    if (src / "data.yaml").is_file():
        return src / "data.yaml"
    found = _yamls(src)
    if len(found) != 1:
        raise DataError(
            f"{src}: {'no' if not found else len(found)} .yaml file(s) here; give the data.yaml "
            f"itself (expected {EXPECTED})"
        )
    return found[0]


def _load(path: Path) -> dict[str, Any]:
    import yaml

    text = read_text(path, EXPECTED)
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({e}); expected {EXPECTED}") from None
    if not isinstance(cfg, dict) or not any(cfg.get(s) for s in SPLITS):
        raise DataError(f"{path}: not {EXPECTED}: it needs train/val image folders")
    return cfg


def _root(yaml_path: Path, cfg: dict[str, Any]) -> Path:
    """The dataset root: ``path`` (relative to the YAML's folder, else to the working
    folder, as Ultralytics also tries), or the YAML's folder."""
    text = cfg.get("path")
    if not text:
        return yaml_path if yaml_path.is_dir() else yaml_path.parent
    p = Path(str(text)).expanduser()
    tries = [p] if p.is_absolute() else [yaml_path.parent / p, Path.cwd() / p]
    for t in tries:
        if t.is_dir():
            return t
    raise DataError(
        f"{yaml_path}: path {text!r} is not a folder (tried {', '.join(map(str, tries))})"
    )


def _kpt_shape(path: Path, cfg: dict[str, Any]) -> tuple[int, int]:
    shape = cfg.get("kpt_shape")
    if shape is None:
        return 0, 0
    ok = isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) for v in shape)
    if not ok or shape[0] < 1 or shape[1] not in (2, 3):
        raise DataError(f"{path}: kpt_shape {shape!r} must be [K, 2] or [K, 3]")
    return shape[0], shape[1]


def _names(names: Any) -> dict[int, str]:
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items() if str(k).lstrip("-").isdigit()}
    if isinstance(names, list):
        return {i: str(v) for i, v in enumerate(names)}
    return {}


def _kpt_names(spec: Any, k: int) -> dict[int | None, tuple[str, ...]]:
    """Keypoint names per class (key None: all classes); ``1..K`` when the file has none."""
    if isinstance(spec, dict):
        out: dict[int | None, tuple[str, ...]] = {
            int(c): tuple(map(str, v))
            for c, v in spec.items()
            if isinstance(v, list) and len(v) == k
        }
        if out:
            return out
    if isinstance(spec, list) and len(spec) == k and all(isinstance(v, str) for v in spec):
        return {None: tuple(spec)}
    return {None: tuple(str(i) for i in range(1, k + 1))}


def _split_images(root: Path, entry: Any, split: str, notes: list[str]) -> list[Path]:
    """Images of one split: folders (recursively) and .txt lists, as Ultralytics reads them."""
    out: list[Path] = []
    for text in entry if isinstance(entry, list) else [entry] if entry else []:
        p = root / str(text)
        if not p.exists() and str(text).startswith("../"):
            p = root / str(text)[3:]
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in YOLO_IMAGE_SUFFIXES)
        elif p.is_file() and p.suffix == ".txt":
            out += _listed_images(p)
        else:
            notes.append(f"{split}: {text} not found under {root}")
    return out


def _listed_images(txt: Path) -> list[Path]:
    out = []
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line:
            p = Path(line[2:]) if line.startswith("./") else Path(line)
            out.append(p if p.is_absolute() else txt.parent / p)
    return out


def label_path(image: Path) -> Path:
    """Ultralytics' pairing: the last ``/images/`` becomes ``/labels/``, suffix ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


def _item(
    root: Path,
    img: Path,
    k: int,
    dims: int,
    classes: dict[int, str],
    kpt_names: dict[int | None, tuple[str, ...]],
) -> Item:
    rel = os.path.relpath(img, root)
    item = Item(where=rel, image_ref=rel, image=img if img.is_file() else None)
    if item.image is None:
        item.problem = f"image not found: {rel!r}"
        return item
    lbl = label_path(img)
    item.where = os.path.relpath(lbl, root)
    if not lbl.is_file():
        item.problem = f"no label file (looked for {item.where})"
        return item
    rows = [(i, ln.split()) for i, ln in enumerate(lbl.read_text(errors="replace").splitlines(), 1)]
    rows = [(i, r) for i, r in rows if r]
    if len(rows) != 1:
        item.problem = (
            "empty label file: no object"
            if not rows
            else f"{len(rows)} objects (lines): one per image is needed"
        )
        return item
    line, values = rows[0]
    item.where += f" line {line}"
    _parse_row(item, [number(v) for v in values], k, dims, classes, kpt_names)
    return item


def _parse_row(
    item: Item,
    v: list[float | None],
    k: int,
    dims: int,
    classes: dict[int, str],
    kpt_names: dict[int | None, tuple[str, ...]],
) -> None:
    want = 5 + k * dims
    if len(v) != want or any(x is None for x in v):
        item.problem = f"{len(v)} values, expected {want} (class, box{f', {k} keypoints x {dims}' if k else ''}), all numbers"
        return
    cls = int(v[0])  # type: ignore[arg-type]
    name = classes.get(cls, str(cls))
    item.labels.append(name)
    item.boxes.append((name, (v[1], v[2])))  # type: ignore[arg-type]
    names = kpt_names.get(cls, kpt_names.get(None, ()))
    for i in range(k):
        x, y = v[5 + i * dims], v[6 + i * dims]
        visible = dims == 2 or (v[7 + i * dims] or 0) > 0
        item.points.append(
            (names[i] if i < len(names) else str(i + 1), (x, y) if visible else None)
        )  # type: ignore[arg-type]
