"""`edgereg data import`: every labelling tool's export into the dataset contract.

Files come from the tools' own code where a package ships it: label-studio-converter
(Heartex's converter, the code behind Label Studio's COCO/YOLO exports and its COCO
import) writes COCO and YOLO from a Label Studio export, and Label Studio tasks from a
COCO file; pycocotools (the COCO API) loads every COCO file we read. CVAT, LabelMe and
Ultralytics ship no such package (labelme on PyPI pulls PyQt5 and onnxruntime;
ultralytics pulls torch), so their fixtures are written to the published format pages,
cited where they are built. Images are small JPEGs made with OpenCV; the CLI runs in
real subprocesses. Only two tests train (one epoch, 64 px, CPU).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.errors import DataError, OutputError
from train.dataset import load_dataset
from train.importers import FORMATS, run_import

TRAIN_ARGS = ["--epochs", "1", "--input-size", "64", "--weights", "none", "--alpha", "0.35"]
TRAIN_ARGS += ["--batch-size", "4"]


# --------------------------------------------------------------------------- helpers
def _jpeg(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    assert cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


def _imp(run_cli, *args: object) -> subprocess.CompletedProcess:
    """``edgereg data import ARGS...`` in a real subprocess."""
    return run_cli("data", "import", *args)


def _ok(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _rows(data_dir: Path) -> dict[str, dict[str, str]]:
    """labels.csv rows by image file name (cells as written, empty for missing)."""
    with open(data_dir / "labels.csv", newline="", encoding="utf-8") as f:
        return {Path(r["image"]).name: r for r in csv.DictReader(f)}


def _targets(data_dir: Path, task: str) -> dict[str, np.ndarray]:
    """What training will see: load_dataset's targets by image file name."""
    ds = load_dataset(data_dir, task)
    return {s.path.name: s.target for s in ds.samples}


def _close(a: object, b: object) -> None:
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=1e-6)


def _nothing_written(data_dir: Path) -> None:
    assert not data_dir.exists()
    assert not [p for p in data_dir.parent.iterdir() if p.name.startswith(f".{data_dir.name}.")]


# --------------------------------------------------------------------------- Label Studio
LS_RECT_CONFIG = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
    '<Label value="needle"/></RectangleLabels></View>'
)


def _ls_rect_export(root: Path) -> tuple[Path, dict[str, tuple[float, float]]]:
    """A Label Studio export (one rectangle per task, images in upload/1 with LS's 8-hex
    prefix) and the expected normalized centre per image name."""
    tasks, truth = [], {}
    for i in range(6):
        w, h = (64, 48) if i % 2 else (48, 64)
        name = f"3f2a9c1{i}-dial{i}.jpg"
        _jpeg(root / "upload" / "1" / name, w, h, seed=i)
        x, y, bw, bh = 10.0 + 7 * i, 12.5 + 5 * i, 30.0, 20.0 + i
        truth[name] = ((x + bw / 2) / 100, (y + bh / 2) / 100)
        rect = {
            "id": f"r{i}",
            "type": "rectanglelabels",
            "from_name": "label",
            "to_name": "image",
            "original_width": w,
            "original_height": h,
            "image_rotation": 0,
            "value": {
                "x": x,
                "y": y,
                "width": bw,
                "height": bh,
                "rotation": 0,
                "rectanglelabels": ["needle"],
            },
        }
        tasks.append(
            {
                "id": 100 + i,
                "data": {"image": f"/data/upload/1/{name}"},
                "annotations": [{"id": 200 + i, "was_cancelled": False, "result": [rect]}],
                "predictions": [],
            }
        )
    # a cancelled annotation and a task with only predictions: reported, not imported
    tasks.append(
        {
            "id": 190,
            "data": {"image": "/data/upload/1/3f2a9c10-dial0.jpg"},
            "annotations": [{"id": 290, "was_cancelled": True, "result": []}],
        }
    )
    tasks.append(
        {
            "id": 191,
            "data": {"image": "/data/upload/1/3f2a9c10-dial0.jpg"},
            "annotations": [],
            "predictions": [{"result": []}],
        }
    )
    path = root / "project-1-at-2026.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path, truth


def test_labelstudio_coco_and_yolo_agree_on_files_made_by_label_studio_converter(tmp_path, run_cli):
    from label_studio_converter import Converter
    from pycocotools.coco import COCO

    export, truth = _ls_rect_export(tmp_path)
    conv = Converter(LS_RECT_CONFIG, project_dir=str(tmp_path), upload_dir=str(tmp_path / "upload"))
    conv.convert_to_coco(str(export), str(tmp_path / "coco"), is_dir=False)
    conv.convert_to_yolo(str(export), str(tmp_path / "yolo"), is_dir=False)

    out = _ok(
        _imp(
            run_cli,
            "labelstudio",
            export,
            tmp_path / "d_ls",
            "--task",
            "point",
            "--images",
            tmp_path / "upload",
        )
    )
    assert "imported 6 image(s)" in out
    assert "task 190" in out and "every annotation was cancelled" in out
    assert "task 191" in out and "only predictions" in out
    coco_json = tmp_path / "coco" / "result.json"
    _ok(_imp(run_cli, "coco", coco_json, tmp_path / "d_coco", "--task", "point"))
    out = _ok(_imp(run_cli, "yolo-pose", tmp_path / "yolo", tmp_path / "d_yolo", "--task", "point"))
    assert "Label Studio YOLO export" in out

    results = {}
    for name in ("d_ls", "d_coco", "d_yolo"):
        _ok(run_cli("data", "check", tmp_path / name, "--task", "point"))
        results[name] = _targets(tmp_path / name, "point")
        assert sorted(results[name]) == sorted(truth), name
    for img, xy in truth.items():
        for name in results:
            _close(results[name][img][0], xy)
    # the COCO API reads the converter's file the same way: bbox centre / image size
    api = COCO(str(coco_json))
    for ann in api.loadAnns(api.getAnnIds()):
        im = api.loadImgs(ann["image_id"])[0]
        x, y, w, h = ann["bbox"]
        got = results["d_coco"][Path(im["file_name"]).name][0]
        _close(got, ((x + w / 2) / im["width"], (y + h / 2) / im["height"]))


def test_labelstudio_number_choices_and_ground_truth(tmp_path, run_cli):
    """Result types per https://labelstud.io/tags/ (Number, Choices, RectangleLabels)."""
    tasks = []
    for i in range(10):
        _jpeg(tmp_path / "storage" / "imgs" / f"w{i}.jpg", 80, 40, seed=i)
        stale = {
            "id": 1000 + i,
            "updated_at": "2026-01-01T00:00:00Z",
            "result": [
                {"type": "number", "from_name": "ppm", "to_name": "image", "value": {"number": -1}}
            ],
        }
        truth = {
            "id": 2000 + i,
            "ground_truth": True,
            "updated_at": "2025-01-01T00:00:00Z",
            "result": [
                {
                    "type": "number",
                    "from_name": "ppm",
                    "to_name": "image",
                    "value": {"number": 80.5 + 27 * i},
                },
                {
                    "type": "choices",
                    "from_name": "state",
                    "to_name": "image",
                    "value": {"choices": ["open" if i % 2 else "closed"]},
                },
            ],
        }
        tasks.append(
            {
                "id": i,
                "data": {"image": f"/data/local-files/?d=imgs/w{i}.jpg"},
                "annotations": [stale, truth],
            }
        )
    (tmp_path / "export.json").write_text(json.dumps(tasks), encoding="utf-8")
    _ok(
        _imp(
            run_cli,
            "labelstudio",
            tmp_path / "export.json",
            tmp_path / "v",
            "--task",
            "value",
            "--images",
            tmp_path / "storage",
        )
    )
    _ok(
        _imp(
            run_cli,
            "labelstudio",
            tmp_path / "export.json",
            tmp_path / "c",
            "--task",
            "class",
            "--images",
            tmp_path / "storage",
        )
    )
    for d, task in (("v", "value"), ("c", "class")):
        _ok(run_cli("data", "check", tmp_path / d, "--task", task))
    values = _targets(tmp_path / "v", "value")
    for i in range(10):
        _close(values[f"w{i}.jpg"], 80.5 + 27 * i)  # the ground-truth annotation, not the newer one
    assert {r["label"] for r in _rows(tmp_path / "c").values()} == {"open", "closed"}


def test_labelstudio_rotated_box_centre(tmp_path):
    """Rotation is about the top-left corner, in pixels (labelstud.io/templates/image_bbox)."""
    _jpeg(tmp_path / "storage" / "imgs" / "w0.jpg", 80, 40)
    w, h = 80.0, 40.0
    rect = {
        "x": 25.0,
        "y": 20.0,
        "width": 25.0,
        "height": 50.0,
        "rotation": 90.0,
        "rectanglelabels": ["a"],
    }
    task = [
        {
            "id": 1,
            "data": {"image": "imgs/w0.jpg"},
            "annotations": [
                {
                    "result": [
                        {
                            "type": "rectanglelabels",
                            "original_width": w,
                            "original_height": h,
                            "value": rect,
                        }
                    ]
                }
            ],
        }
    ]
    rot = tmp_path / "storage" / "rot.json"
    rot.write_text(json.dumps(task), encoding="utf-8")
    report = run_import("labelstudio", rot, tmp_path / "r", task="point")
    # corner (20, 8) px; 90 deg clockwise: the box's width runs down, its height runs left
    _close(report.records[0].points[0], ((20 - 10) / w, (8 + 10) / h))


def test_labelstudio_keypoints_need_an_order_and_keep_off_frame_coordinates(tmp_path, run_cli):
    """keypointlabels as documented at https://labelstud.io/tags/keypointlabels."""
    corners = {"tl": (10.0, 12.0), "tr": (90.0, 11.0), "br": (100.5, 88.0), "bl": (9.0, 90.0)}
    tasks = []
    for i in range(3):
        _jpeg(tmp_path / "upload" / f"0123abcd-g{i}.jpg", seed=i)
        res = [
            {
                "id": n,
                "type": "keypointlabels",
                "original_width": 64,
                "original_height": 48,
                "value": {"x": x, "y": y + i, "width": 1, "keypointlabels": [n]},
            }
            for n, (x, y) in corners.items()
            if not (i == 2 and n == "br")
        ]
        tasks.append(
            {
                "id": i,
                "data": {"image": f"/data/upload/7/0123abcd-g{i}.jpg"},
                "annotations": [{"id": i, "result": res}],
            }
        )
    src = tmp_path / "kp.json"
    src.write_text(json.dumps(tasks), encoding="utf-8")
    out = _imp(
        run_cli,
        "labelstudio",
        src,
        tmp_path / "d",
        "--task",
        "keypoints",
        "--images",
        tmp_path / "upload",
    )
    assert out.returncode == 3 and "Traceback" not in out.stderr
    assert "bl, br, tl, tr" in out.stderr and "--keypoints" in out.stderr
    _nothing_written(tmp_path / "d")

    out = _ok(
        _imp(
            run_cli,
            "labelstudio",
            src,
            tmp_path / "d",
            "--task",
            "keypoints",
            "--images",
            tmp_path / "upload",
            "--keypoints",
            "tl,tr,br,bl",
        )
    )
    assert "missing keypoints: 1 in 1 image(s)" in out and "from --keypoints" in out
    rows = _rows(tmp_path / "d")
    assert float(rows["0123abcd-g0.jpg"]["x3"]) == pytest.approx(1.005)  # written as it is
    assert rows["0123abcd-g2.jpg"]["x3"] == "" and rows["0123abcd-g2.jpg"]["y3"] == ""
    assert float(rows["0123abcd-g1.jpg"]["y4"]) == pytest.approx(0.91)
    # what edgereg reads: the off-frame corner is a target (within the margin), the
    # missing one is masked (NaN); data check counts both and passes
    check = _ok(run_cli("data", "check", tmp_path / "d", "--task", "keypoints"))
    assert "1 of 12 missing/occluded point(s)" in check and "outside the frame" in check
    t = _targets(tmp_path / "d", "keypoints")
    assert np.isnan(t["0123abcd-g2.jpg"][2]).all()
    assert t["0123abcd-g0.jpg"][2, 0] == pytest.approx(1.005)


# --------------------------------------------------------------------------- COCO
def _coco(root: Path) -> Path:
    """A COCO keypoints file as https://cocodataset.org/#format-data describes it."""
    images, anns = [], []
    for i in range(6):
        w, h = 64, 48
        _jpeg(root / "images" / f"c{i}.jpg", w, h, seed=i)
        images.append({"id": i + 1, "file_name": f"c{i}.jpg", "width": w, "height": h})
        kps = [5.5 + i, 6.0, 2, 58.0, 7.0 + i, 2, 57.0, 41.0, 2, 6.0, 40.5, 2]
        if i == 3:
            kps[3:6] = [0, 0, 0]  # tr not labelled
            kps[11] = 1  # bl labelled but not visible: kept
        anns.append(
            {
                "id": 10 + i,
                "image_id": i + 1,
                "category_id": 1,
                "iscrowd": 0,
                "keypoints": kps,
                "num_keypoints": 4,
                "bbox": [5, 6, 53, 35],
                "area": 1855,
            }
        )
    anns.append(
        {
            "id": 30,
            "image_id": 5,
            "category_id": 1,
            "iscrowd": 0,
            "num_keypoints": 1,
            "keypoints": [1, 1, 2] + [0, 0, 0] * 3,
            "bbox": [0, 0, 2, 2],
            "area": 4,
        }
    )
    anns.append(
        {
            "id": 31,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 1,
            "num_keypoints": 0,
            "keypoints": [0, 0, 0] * 4,
            "bbox": [0, 0, 9, 9],
            "area": 81,
        }
    )
    images.append({"id": 7, "file_name": "c0.jpg", "width": 64, "height": 48})
    cats = [
        {
            "id": 1,
            "name": "gauge",
            "supercategory": "gauge",
            "keypoints": ["tl", "tr", "br", "bl"],
            "skeleton": [[1, 2], [2, 3], [3, 4], [4, 1]],
        }
    ]
    path = root / "annotations" / "gauge_keypoints.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def test_coco_keypoints_order_visibility_and_one_object_per_image(tmp_path, run_cli):
    from pycocotools.coco import COCO

    src = _coco(tmp_path)
    out = _ok(_imp(run_cli, "coco", src, tmp_path / "d", "--task", "keypoints"))
    assert "keypoint order: tl, tr, br, bl (from the COCO categories[].keypoints)" in out
    assert "2 annotated objects (annotation ids 14, 30)" in out
    assert "image id 7 (c0.jpg): no annotated object" in out
    assert "1 crowd annotation(s)" in out and "missing keypoints: 1 in 1 image(s)" in out
    rows = _rows(tmp_path / "d")
    assert sorted(rows) == ["c0.jpg", "c1.jpg", "c2.jpg", "c3.jpg", "c5.jpg"]
    assert (rows["c3.jpg"]["x2"], rows["c3.jpg"]["y2"]) == ("", "")
    api = COCO(str(src))
    assert api.loadCats(1)[0]["keypoints"] == ["tl", "tr", "br", "bl"]
    for img_id in (1, 2, 3, 4, 6):
        (ann,) = api.loadAnns(api.getAnnIds(imgIds=img_id, iscrowd=False))
        im = api.loadImgs(img_id)[0]
        row = rows[im["file_name"]]
        for k, (x, y, v) in enumerate(np.reshape(ann["keypoints"], (-1, 3)), start=1):
            if v == 0:
                assert row[f"x{k}"] == row[f"y{k}"] == ""
            else:  # v = 1 (occluded) keeps its coordinates, like v = 2
                _close(
                    (float(row[f"x{k}"]), float(row[f"y{k}"])), (x / im["width"], y / im["height"])
                )

    # --keypoints picks and reorders by name; unknown names are listed
    _ok(
        _imp(
            run_cli,
            "coco",
            src,
            tmp_path / "e",
            "--task",
            "keypoints",
            "--keypoints",
            "br,tl",
        )
    )
    t = _targets(tmp_path / "e", "keypoints")
    _close(t["c1.jpg"], [[57.0 / 64, 41.0 / 48], [6.5 / 64, 6.0 / 48]])
    out = _imp(
        run_cli,
        "coco",
        src,
        tmp_path / "f",
        "--task",
        "keypoints",
        "--keypoints",
        "tl,nose",
    )
    assert out.returncode == 3 and "nose" in out.stderr and "bl, br, tl, tr" in out.stderr


def test_coco_point_and_label_studio_converter_coco_import_agree(tmp_path, run_cli):
    """COCO -> Label Studio tasks by the converter's own importer; both imports agree."""
    from label_studio_converter.imports.coco import convert_coco_to_ls

    images, anns = [], []
    for i in range(5):
        w, h = (64, 48) if i % 2 else (40, 60)
        _jpeg(tmp_path / "imgs" / f"n{i}.jpg", w, h, seed=i)
        images.append({"id": i, "file_name": f"n{i}.jpg", "width": w, "height": h})
        anns.append(
            {
                "id": i,
                "image_id": i,
                "category_id": 3,
                "iscrowd": 0,
                "num_keypoints": 1,
                "keypoints": [3.25 + 5 * i, 30.5 - i, 2],
                "bbox": [0, 0, 40, 40],
                "area": 1,
            }
        )
    cats = [{"id": 3, "name": "needle", "keypoints": ["tip"], "skeleton": []}]
    src = tmp_path / "needle.json"
    src.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    ls = tmp_path / "ls_tasks.json"
    convert_coco_to_ls(str(src), str(ls), image_root_url="/data/local-files/?d=imgs/")

    _ok(
        _imp(
            run_cli,
            "coco",
            src,
            tmp_path / "a",
            "--task",
            "point",
            "--images",
            tmp_path / "imgs",
        )
    )
    _ok(
        _imp(
            run_cli,
            "labelstudio",
            ls,
            tmp_path / "b",
            "--task",
            "point",
            "--images",
            tmp_path / "imgs",
        )
    )
    a, b = _targets(tmp_path / "a", "point"), _targets(tmp_path / "b", "point")
    assert sorted(a) == sorted(b) == [f"n{i}.jpg" for i in range(5)]
    for name in a:
        _close(a[name], b[name])
    _close(a["n1.jpg"], [[8.25 / 64, 29.5 / 48]])
    # the converter names every keypoint after its category: no order can be recovered
    with pytest.raises(DataError, match="Keypoint names found: needle"):
        run_import("labelstudio", ls, tmp_path / "c", task="keypoints", images=tmp_path / "imgs")


# --------------------------------------------------------------------------- CVAT
# The example of https://docs.cvat.ai/docs/dataset_management/formats/format-xml/
# ("Annotation", version 1.1), trimmed to the shapes edgereg reads plus one polygon.
CVAT_DOC_EXAMPLE = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>4</id><name>segmentation</name><size>27</size><mode>annotation</mode>
      <labels>
        <label><name>car</name><attributes></attributes></label>
        <label><name>wheel</name><attributes></attributes></label>
        <label><name>plate</name><attributes></attributes></label>
        <label><name>s1</name><type>skeleton</type><attributes></attributes><svg></svg></label>
        <label><name>1</name><type>points</type><attributes></attributes><parent>s1</parent></label>
        <label><name>2</name><type>points</type><attributes></attributes><parent>s1</parent></label>
        <label><name>3</name><type>points</type><attributes></attributes><parent>s1</parent></label>
      </labels>
    </task>
    <dumped>2018-09-25 11:38:28.799808+03:00</dumped>
  </meta>
  <image id="0" name="filename000.jpg" width="1600" height="1200">
    <box label="plate" xtl="797.33" ytl="870.92" xbr="965.52" ybr="928.94" occluded="0" z_order="4">
    </box>
    <polygon label="car" points="561.30,916.23;561.30,842.77;554.72,761.63" occluded="0" z_order="1">
    </polygon>
    <points label="wheel" points="574.90,939.48;1170.16,907.90;1130.69,445.26;600.16,459.48" occluded="0" z_order="5">
    </points>
    <tag label="good_frame" source="manual">
    </tag>
    <skeleton label="s1" source="manual" z_order="0">
      <points label="3" occluded="0" source="manual" outside="0" points="125.87,62.85">
      </points>
      <points label="1" occluded="0" source="manual" outside="0" points="54.47,94.81">
      </points>
      <points label="2" occluded="1" source="manual" outside="0" points="68.02,162.34">
      </points>
    </skeleton>
  </image>
</annotations>
"""


def test_cvat_doc_example_skeleton_order_from_meta(tmp_path, run_cli):
    export = tmp_path / "task_4"
    (export / "annotations.xml").parent.mkdir()
    # the skeleton's points are listed 3, 1, 2: the order comes from <meta>, not from them
    (export / "annotations.xml").write_text(CVAT_DOC_EXAMPLE, encoding="utf-8")
    _jpeg(export / "images" / "filename000.jpg", 1600, 1200)
    out = _ok(_imp(run_cli, "cvat", export, tmp_path / "d", "--task", "keypoints"))
    assert "keypoint order: 1, 2, 3 (from the CVAT skeleton 's1' definition in <meta>)" in out
    assert "several points ignored (label wheel)" in out
    t = _targets(tmp_path / "d", "keypoints")["filename000.jpg"]
    _close(
        t,
        [
            [54.47 / 1600, 94.81 / 1200],
            [68.02 / 1600, 162.34 / 1200],
            [125.87 / 1600, 62.85 / 1200],
        ],
    )  # "2" is occluded: kept
    rows = run_import("cvat", export, tmp_path / "c", task="class").records
    assert [r.label for r in rows] == ["good_frame"]
    rec = run_import("cvat", export, tmp_path / "p", task="point", keypoints=("2",)).records[0]
    _close(rec.points[0], (68.02 / 1600, 162.34 / 1200))


def _cvat_corners(root: Path, n: int = 10, outside: int | None = None) -> Path:
    """A CVAT for images 1.1 export (format-xml page above): skeleton 'gauge' whose point
    labels tl, tr, br, bl are defined in that order in <meta>; images/ beside the XML."""
    meta = "".join(
        f"<label><name>{k}</name><type>points</type><parent>gauge</parent></label>"
        for k in ("tl", "tr", "br", "bl")
    )
    body = []
    for i in range(n):
        w, h = (64, 48) if i % 3 else (48, 64)
        _jpeg(root / "images" / "cam" / f"f{i:03d}.png", w, h, seed=i)
        pts = {
            "br": (w - 6.5, h - 5.0 - i / 4),
            "tl": (4.0 + i, 5.25),
            "bl": (5.0, h - 4.5),
            "tr": (w - 4.0, 6.0 + i / 2),
        }
        kids = "".join(
            f'<points label="{k}" source="manual" outside="{int(i == outside and k == "tr")}" '
            f'occluded="0" points="{x:.2f},{y:.2f}"></points>'
            for k, (x, y) in pts.items()
        )
        body.append(
            f'<image id="{i}" name="cam/f{i:03d}.png" width="{w}" height="{h}">'
            f'<skeleton label="gauge" source="manual" z_order="0">{kids}</skeleton>'
            f'<tag label="{"wet" if i % 2 else "dry"}" source="manual"></tag></image>'
        )
    xml = (
        f'<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version><meta><task>'
        f"<labels><label><name>gauge</name><type>skeleton</type></label>{meta}</labels></task>"
        f"</meta>{''.join(body)}</annotations>"
    )
    (root / "annotations.xml").write_text(xml, encoding="utf-8")
    return root / "annotations.xml"


@pytest.mark.slow
def test_cvat_keypoints_round_trip_check_train_targets(tmp_path, run_cli):
    xml = _cvat_corners(tmp_path / "export")
    data = tmp_path / "data"
    _ok(_imp(run_cli, "cvat", xml, data, "--task", "keypoints"))
    _ok(run_cli("data", "check", data, "--task", "keypoints"))
    _ok(run_cli("train", data, "--task", "keypoints", "--out", tmp_path / "run", *TRAIN_ARGS))
    assert (tmp_path / "run" / "config.json").exists()
    t = _targets(data, "keypoints")
    import xml.etree.ElementTree as ET

    for image in ET.parse(xml).getroot().iter("image"):
        w, h = float(image.get("width")), float(image.get("height"))
        by = {p.get("label"): p.get("points").split(",") for p in image.iter("points")}
        want = [(float(by[k][0]) / w, float(by[k][1]) / h) for k in ("tl", "tr", "br", "bl")]
        _close(t[Path(image.get("name")).name], want)


def test_cvat_outside_is_missing_video_and_unsafe_xml_refused(tmp_path, run_cli):
    xml = _cvat_corners(tmp_path / "export", n=3, outside=1)
    report = run_import("cvat", xml, tmp_path / "d", task="keypoints")
    assert report.missing_keypoints == 1
    assert _rows(tmp_path / "d")["f001.png"]["x2"] == ""

    video = tmp_path / "video.xml"
    video.write_text(
        '<annotations><version>1.1</version><track id="0" label="a"></track></annotations>'
    )
    with pytest.raises(DataError, match="CVAT for video.*CVAT for images 1.1"):
        run_import("cvat", video, tmp_path / "v", task="keypoints")
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx">'
        '<!ENTITY y "&x;&x;&x;&x;">]><annotations>&y;</annotations>'
    )
    out = _imp(run_cli, "cvat", bomb, tmp_path / "b", "--task", "keypoints")
    assert out.returncode == 3 and "DOCTYPE/ENTITY" in out.stderr
    _nothing_written(tmp_path / "b")


# --------------------------------------------------------------------------- LabelMe
def _labelme(root: Path, n: int = 10, with_size: bool = True) -> Path:
    """LabelMe files shaped like labelme's own examples (examples/primitives/primitives.json
    for shapes, examples/classification/data_annotated/0001.json for flags)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        w, h = 64, 48
        _jpeg(root / f"shot{i}.jpg", w, h, seed=i)
        shapes = [
            {
                "label": k,
                "points": [[x, y]],
                "group_id": None,
                "description": "",
                "shape_type": "point",
                "flags": {},
                "mask": None,
            }
            for k, (x, y) in {"tip": (40.5 + i, 10.0), "hub": (32.0, 30.25 - i)}.items()
        ]
        shapes.append(
            {
                "label": "face",
                "points": [[2.0, 3.0], [60.0, 45.0]],
                "group_id": None,
                "shape_type": "rectangle",
                "flags": {},
            }
        )
        doc = {
            "version": "5.5.0",
            "flags": {"__ignore__": False, "red": i % 2 == 0, "green": i % 2 == 1},
            "shapes": shapes,
            "imagePath": f"shot{i}.jpg",
            "imageData": None,
        }
        if with_size:
            doc.update(imageHeight=h, imageWidth=w)
        (root / f"shot{i}.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return root


@pytest.mark.slow
def test_labelme_class_round_trip_check_train_targets(tmp_path, run_cli):
    src = _labelme(tmp_path / "shots")
    data = tmp_path / "data"
    _ok(_imp(run_cli, "labelme", src, data, "--task", "class"))
    _ok(run_cli("data", "check", data, "--task", "class"))
    _ok(run_cli("train", data, "--task", "class", "--out", tmp_path / "run", *TRAIN_ARGS))
    ds = load_dataset(data, "class")
    assert ds.class_names == ("green", "red")
    for s in ds.samples:
        want = "red" if int(s.path.stem.removeprefix("shot")) % 2 == 0 else "green"
        assert ds.class_names[int(s.target)] == want


def test_labelme_points_order_and_refusals(tmp_path, run_cli):
    src = _labelme(tmp_path / "shots", n=4, with_size=False)  # old files: the image's size
    out = _imp(run_cli, "labelme", src, tmp_path / "d", "--task", "keypoints")
    assert out.returncode == 3 and "hub, tip" in out.stderr and "--keypoints" in out.stderr
    _nothing_written(tmp_path / "d")
    _ok(
        _imp(
            run_cli,
            "labelme",
            src,
            tmp_path / "d",
            "--task",
            "keypoints",
            "--keypoints",
            "tip,hub",
        )
    )
    _ok(run_cli("data", "check", tmp_path / "d", "--task", "keypoints"))
    t = _targets(tmp_path / "d", "keypoints")
    _close(t["shot2.jpg"], [[42.5 / 64, 10.0 / 48], [32.0 / 64, 28.25 / 48]])
    # the rectangle's centre for a point task that names no keypoint: two points -> refused
    report = run_import("labelme", src, tmp_path / "p", task="point")
    assert not report.ok and "pass --keypoints NAME" in report.skipped[0][1]
    _nothing_written(tmp_path / "p")

    # DATA_DIR inside SRC, or a non-empty DATA_DIR: refused (ClashError), nothing written
    out = _imp(run_cli, "labelme", src, src / "out", "--task", "class")
    assert out.returncode == 13 and "inside the input folder SRC" in out.stderr
    assert not (src / "out").exists()
    out = _imp(run_cli, "labelme", src, tmp_path / "d", "--task", "class")
    assert out.returncode == 13 and "not empty" in out.stderr


# --------------------------------------------------------------------------- YOLO pose
def _yolo(root: Path) -> Path:
    """An Ultralytics pose dataset as https://docs.ultralytics.com/datasets/pose/ lays it
    out: data.yaml, images/<split>/..., labels/<split>/... (val given as a .txt list)."""
    rows = {
        "train/a": "0 0.5 0.5 0.8 0.8 0.5 0.5 2 0.9 0.25 2 0.1 0.75 2",
        "train/b": "0 0.5 0.5 0.8 0.8 0.45 0.55 2 0 0 0 0.2 0.7 1",  # tip not labelled
        "train/c": "0 0.5 0.5 0.8 0.8 0.5 0.5 2 0.9 0.2 2 0.1 0.7 2\n0 0.5 0.5 0.1 0.1 0 0 0 0 0 0 0 0 0",
        "val/a": "0 0.4 0.6 0.5 0.5 0.40625 0.5 2 0.875 0.125 2 0.0625 0.9375 2",
    }
    for i, (stem, text) in enumerate(rows.items()):
        _jpeg(root / "images" / f"{stem}.jpg", seed=i)
        (root / "labels" / f"{stem}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{stem}.txt").write_text(text + "\n")
    _jpeg(root / "images" / "train" / "d.jpg", seed=9)  # no label file
    # a list relative to the dataset root, as CVAT's "Ultralytics YOLO Pose 1.0" export
    # writes it (docs.cvat.ai/docs/dataset_management/formats/format-yolo-ultralytics/)
    (root / "val.txt").write_text("images/val/a.jpg\n")
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: val.txt\n\n# Keypoints\nkpt_shape: [3, 3]\n"
        "flip_idx: [0, 1, 2]\n\nnames:\n  0: dial\n\nkpt_names:\n  0:\n    - hub\n    - tip\n"
        "    - tail\n"
    )
    return root / "data.yaml"


def test_yolo_pose_pairing_visibility_and_name_clash(tmp_path, run_cli):
    cfg = _yolo(tmp_path / "ds")
    out = _ok(_imp(run_cli, "yolo-pose", cfg, tmp_path / "d", "--task", "keypoints"))
    assert "keypoint order: hub, tip, tail (from data.yaml kpt_shape, named by kpt_names)" in out
    assert f"labels{os.sep}train{os.sep}c.txt: 2 objects" in out
    assert "no label file" in out and "missing keypoints: 1 in 1 image(s)" in out
    rows = _rows(tmp_path / "d")
    assert sorted(rows) == ["a-2.jpg", "a.jpg", "b.jpg"]  # train/a and val/a: no clash
    assert (rows["b.jpg"]["x2"], rows["b.jpg"]["y2"]) == ("", "")
    assert float(rows["b.jpg"]["y3"]) == 0.7  # visibility 1 keeps its coordinates
    assert [float(rows["a-2.jpg"][c]) for c in ("x1", "y1", "x3", "y3")] == [
        0.40625,
        0.5,
        0.0625,
        0.9375,
    ]

    # point: several keypoints and no --keypoints -> nothing usable: exit 1, nothing written
    out = _imp(run_cli, "yolo-pose", cfg, tmp_path / "p", "--task", "point")
    assert out.returncode == 1 and "nothing usable found" in out.stdout
    assert "pass --keypoints NAME" in out.stdout
    _nothing_written(tmp_path / "p")
    _ok(
        _imp(
            run_cli,
            "yolo-pose",
            tmp_path / "ds",
            tmp_path / "p",
            "--task",
            "point",
            "--keypoints",
            "tail",
        )
    )
    _close(_targets(tmp_path / "p", "point")["a.jpg"], [[0.1, 0.75]])


# --------------------------------------------------------------------------- errors, writing
def test_wrong_format_names_the_file_and_what_was_expected(tmp_path, run_cli):
    coco = _coco(tmp_path)
    export, _ = _ls_rect_export(tmp_path)
    cases = [
        ("labelstudio", coco, "Label Studio JSON export", "use `edgereg data import coco`"),
        ("coco", export, "COCO JSON", "use `edgereg data import labelstudio`"),
        ("cvat", coco, "not valid XML", "CVAT for images 1.1"),
        ("labelme", coco, "LabelMe JSON", "use `edgereg data import coco`"),
        ("yolo-pose", coco, "Ultralytics data.yaml", ""),
    ]
    for fmt, src, expected, hint in cases:
        out = _imp(run_cli, fmt, src, tmp_path / "out", "--task", "point")
        assert out.returncode == 3, (fmt, out.stdout, out.stderr)
        assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
        assert str(src.name) in out.stderr and expected in out.stderr and hint in out.stderr
        _nothing_written(tmp_path / "out")
    out = _imp(run_cli, "cvat", coco, tmp_path / "out", "--task", "value")
    assert out.returncode == 2 and "cvat exports have no value labels" in out.stderr


def test_missing_images_are_reported_and_nothing_usable_writes_nothing(tmp_path, run_cli):
    export, _ = _ls_rect_export(tmp_path)
    out = _imp(run_cli, "labelstudio", export, tmp_path / "d", "--task", "point")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "nothing usable found: nothing written" in out.stdout
    assert (
        "task 103 (annotation 203): image not found: '/data/upload/1/3f2a9c13-dial3.jpg'"
        in out.stdout
    )
    assert "pass --images DIR" in out.stdout
    _nothing_written(tmp_path / "d")
    out = _imp(
        run_cli,
        "labelstudio",
        export,
        tmp_path / "upload" / "d",
        "--task",
        "point",
        "--images",
        tmp_path / "upload",
    )
    assert out.returncode == 13 and "inside the input folder --images" in out.stderr


def test_a_failed_write_leaves_no_dataset_and_link_hard_links(tmp_path, monkeypatch):
    import shutil

    src = _labelme(tmp_path / "shots", n=4)
    real, calls = shutil.copyfile, []

    def flaky(a, b, **kw):
        calls.append(a)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(a, b, **kw)

    monkeypatch.setattr(shutil, "copyfile", flaky)
    with pytest.raises(OutputError, match="No space left"):
        run_import("labelme", src, tmp_path / "d", task="class")
    _nothing_written(tmp_path / "d")
    monkeypatch.setattr(shutil, "copyfile", real)

    report = run_import("labelme", src, tmp_path / "d", task="class", link=True)
    assert report.linked == 4 and "hard-linked" in report.format()
    for img in (tmp_path / "d" / "images").iterdir():
        assert not img.is_symlink()
        assert img.stat().st_ino == (src / img.name).stat().st_ino
    assert (src / "shot0.jpg").stat().st_nlink == 2  # the source is untouched, only linked


def test_import_help_explains_every_format_and_imports_no_tensorflow(tmp_path):
    probe = (
        "import sys, runpy\nsys.argv = ['edgereg', 'data', 'import', '--help']\n"
        "try:\n    runpy.run_module('edgereg', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('HEAVY=' + ','.join(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('tensorflow', 'keras', 'torch'))), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "HEAVY=\n" in out.stderr + "\n", out.stderr
    text = " ".join(out.stdout.split())
    for f in FORMATS.values():
        assert f"{f.name}:" in text and " ".join(f.example.split()) in text


def test_ambiguous_file_names_are_skipped_and_an_empty_data_dir_is_used(tmp_path):
    for sub in ("a", "b"):
        _jpeg(tmp_path / "media" / sub / "same.jpg")
    _jpeg(tmp_path / "media" / "a" / "other.jpg")
    tasks = [
        {
            "id": i,
            "data": {"image": f"/data/upload/1/{name}"},
            "annotations": [
                {
                    "result": [
                        {
                            "type": "keypointlabels",
                            "value": {"x": 50, "y": 25, "keypointlabels": ["p"]},
                        }
                    ]
                }
            ],
        }
        for i, name in enumerate(("same.jpg", "other.jpg"))
    ]
    (tmp_path / "export.json").write_text(json.dumps(tasks), encoding="utf-8")
    (tmp_path / "d").mkdir()  # an existing empty DATA_DIR is fine
    report = run_import(
        "labelstudio",
        tmp_path / "export.json",
        tmp_path / "d",
        task="point",
        images=tmp_path / "media",
    )
    assert [r.image.name for r in report.records] == ["other.jpg"]
    ((where, reason),) = report.skipped
    assert where.startswith("export.json task 0") and "'same.jpg' is ambiguous" in reason
    _close(_targets(tmp_path / "d", "point")["other.jpg"], [[0.5, 0.25]])
