"""``edgereg data import``: labelling tools' exports -> the dataset contract.

One module per format parses its files into :class:`~train.importers.common.Item`
objects; :mod:`train.importers.common` does the rest (keypoint order, targets, the
report, writing DATA_DIR atomically). :data:`FORMATS` is the registry the CLI builds its
FORMAT choice and help from; a format's module is imported only when it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import DataError, OptionError

from .common import (
    ImportOptions,
    ImportReport,
    Parsed,
    build_records,
    check_data_dir,
    resolve_order,
    write_dataset,
)

#: The kinds of label a format can give (see ``train.tasks.ImportRule``).
POINTS, LABEL, NUMBER = "points", "label", "number"


@dataclass(frozen=True)
class ImportFormat:
    """A registered format: its reader module and what the CLI says about it."""

    name: str
    module: str  # defines ``read(src: Path, opts: ImportOptions) -> Parsed``
    summary: str
    src: str  # what SRC is
    #: the kinds of label its files hold: POINTS, LABEL, NUMBER
    kinds: tuple[str, ...]
    example: str

    def tasks(self) -> list[str]:
        """The registered tasks whose labels this format can fill."""
        from train import tasks

        return [t.name for t in tasks.tasks() if t.import_rule and t.import_rule.kind in self.kinds]

    def reader(self) -> Callable[[Path, ImportOptions], Parsed]:
        return importlib.import_module(self.module).read  # type: ignore[no-any-return]


FORMATS: dict[str, ImportFormat] = {
    f.name: f
    for f in (
        ImportFormat(
            "labelstudio",
            "train.importers.labelstudio",
            "Label Studio JSON export: keypointlabels -> point/keypoints, rectanglelabels -> "
            "box centre, choices -> class, number -> value.",
            "the exported .json file (a list of tasks)",
            (POINTS, LABEL, NUMBER),
            "edgereg data import labelstudio project-1.json data/gauges --task keypoints "
            "--keypoints tl,tr,br,bl --images label-studio/media/upload",
        ),
        ImportFormat(
            "cvat",
            "train.importers.cvat",
            "CVAT for images 1.1 XML: <points>/<skeleton> -> point/keypoints, <box> -> centre, "
            "<tag> -> class.",
            "annotations.xml, or the unzipped export folder holding it (images/ beside it)",
            (POINTS, LABEL),
            "edgereg data import cvat task_7/annotations.xml data/corners --task keypoints",
        ),
        ImportFormat(
            "coco",
            "train.importers.coco",
            "COCO keypoints JSON: one annotated object per image; keypoint order from "
            "categories[].keypoints; bbox centre for a point task without keypoints.",
            "the COCO .json file (images, annotations, categories)",
            (POINTS, LABEL),
            "edgereg data import coco annotations/person_keypoints_default.json data/pose "
            "--task keypoints --images images",
        ),
        ImportFormat(
            "labelme",
            "train.importers.labelme",
            "LabelMe JSON files: point shapes by label, rectangle -> centre, flags -> class.",
            "a folder of LabelMe .json files (or one file); images next to them",
            (POINTS, LABEL),
            "edgereg data import labelme shots/ data/needle --task point",
        ),
        ImportFormat(
            "yolo-pose",
            "train.importers.yolo",
            "Ultralytics YOLO pose labels (class cx cy w h x1 y1 v1 ...) with data.yaml "
            "(kpt_shape, names); images/... <-> labels/... as Ultralytics pairs them.",
            "data.yaml, or the dataset folder holding it (or a Label Studio YOLO export folder: "
            "classes.txt, images/, labels/)",
            (POINTS, LABEL),
            "edgereg data import yolo-pose datasets/dials/data.yaml data/dials --task keypoints",
        ),
    )
}


def run_import(
    fmt: str,
    src: str | Path,
    data_dir: str | Path,
    *,
    task: str,
    keypoints: tuple[str, ...] | None = None,
    images: str | Path | None = None,
    link: bool = False,
) -> ImportReport:
    """Import ``src`` (format ``fmt``) into a new ``data_dir``; return the report.

    Nothing is written when nothing usable is found (``report.ok`` is False). Raises
    DataError for bad options, a file of the wrong format, a DATA_DIR that would overwrite
    something or lies inside the source, and a keypoints task with no keypoint order.
    """
    spec = _format(fmt, task)
    src_p, out = Path(src), Path(data_dir)
    img_p = Path(images) if images is not None else None
    if not src_p.exists():
        raise DataError(f"{src_p}: not found (SRC for {fmt} is {spec.src})")
    if img_p is not None and not img_p.is_dir():
        raise OptionError(f"--images {img_p}: not a folder")
    forbidden = [(src_p, "SRC"), *([(img_p, "--images")] if img_p else [])]
    check_data_dir(out, forbidden)
    from train import tasks

    rule = tasks.get(task).import_rule
    assert rule is not None  # _format checked it
    opts = ImportOptions(task=task, rule=rule, keypoints=keypoints or None, images=img_p)
    parsed = spec.reader()(src_p, opts)
    check_data_dir(out, [(r, "the images folder SRC names") for r in parsed.image_roots])
    order, order_source = resolve_order(opts, parsed, fmt)
    report = ImportReport(
        fmt=fmt,
        src=src_p,
        data_dir=out,
        task=task,
        notes=list(parsed.notes),
        keypoint_names=order,
        order_source=order_source,
        image_roots=list(parsed.image_roots),
    )
    build_records(parsed, opts, order, report)
    if report.records:
        write_dataset(report, order, link)
    return report


def _format(fmt: str, task: str) -> ImportFormat:
    if fmt not in FORMATS:
        raise OptionError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    from train import tasks

    rule = tasks.get(task).import_rule  # DataError for an unknown task
    spec = FORMATS[fmt]
    if rule is None or rule.kind not in spec.kinds:
        raise OptionError(
            f"{fmt} exports have no {task} labels; {fmt} imports --task {', '.join(spec.tasks())}"
        )
    return spec
