"""The dataset contract and `edgereg data check`: every kind of bad input, one by one.

Every test builds its own small dataset with real image files (OpenCV writes them).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.errors import DataError
from train.dataset import (
    check_dataset,
    load_dataset,
    load_run_splits,
    split_dataset,
)
from train.tasks.classification import MIN_IMAGES_PER_CLASS


def _img(path: Path, w: int = 40, h: int = 30, seed: int = 0, channels: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    assert cv2.imwrite(str(path), rng.integers(0, 255, shape, dtype=np.uint8))
    return path


def _dataset(root: Path, rows: list[str], header: str = "image,x,y", n_images: int = 6) -> Path:
    """Images 0.jpg .. {n-1}.jpg (40x30) and labels.csv with ``header`` + ``rows``."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        _img(root / f"{i}.jpg", seed=i)
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return root


GOOD_POINT_ROWS = [f"{i}.jpg,0.{i + 1},0.{9 - i}" for i in range(5)]


def _only_problem(report, row: int | None = None):
    assert not report.ok
    probs = [p for p in report.problems if row is None or p.row == row]
    assert len(probs) == 1, report.format()
    return probs[0]


# --------------------------------------------------------------------------- clean data
def test_clean_point_dataset_loads(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS)
    report = check_dataset(root, "point")
    assert report.ok, report.format()
    ds = load_dataset(root, "point")
    assert len(ds) == 5 and ds.num_keypoints == 1 and ds.dropped == 0
    t = ds.targets()
    assert t.shape == (5, 1, 2) and t.dtype == np.float32
    np.testing.assert_allclose(t[2, 0], [0.3, 0.7], atol=1e-6)
    s = ds.samples[0]
    assert s.row == 2 and s.path == (root / "0.jpg").resolve()
    assert (s.width, s.height) == (40, 30)
    assert "OK: no problems found" in report.format()
    assert "40x30 (5)" in report.format()


def test_bom_blank_lines_whitespace_and_crlf(tmp_path):
    root = _dataset(tmp_path / "d", [], n_images=3)
    text = "\ufeffimage , x , y\r\n\r\n 0.jpg , 0.5 , 0.25\r\n\r\n1.jpg,0.1,0.2\r\n  \r\n"
    (root / "labels.csv").write_bytes(text.encode("utf-8"))
    ds = load_dataset(root, "point")
    assert [s.row for s in ds.samples] == [3, 5]
    np.testing.assert_allclose(ds.targets()[0, 0], [0.5, 0.25])


# --------------------------------------------------------------------------- bad input, one by one
def test_truncated_jpeg(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS + ["cut.jpg,0.5,0.5"])
    data = (root / "0.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(data[: len(data) // 2])
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.file, p.field) == (7, "cut.jpg", "image")
    assert "truncated JPEG" in p.message
    assert "labels.csv row 7, file cut.jpg" in check_dataset(root, "point").format()


def test_text_file_named_png(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS + ["notes.png,0.5,0.5"])
    (root / "notes.png").write_text("this is not a picture\n")
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.file) == (7, "notes.png")
    assert "text file, not an image" in p.message


def test_corrupt_image_with_valid_magic(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS + ["bad.png,0.5,0.5"])
    junk = b"\x89PNG\r\n\x1a\n" + os.urandom(200) + b"IEND\xaeB`\x82"
    (root / "bad.png").write_bytes(junk)
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.file) == (7, "bad.png") and "corrupt PNG" in p.message


def test_empty_image_file(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS + ["zero.jpg,0.5,0.5"])
    (root / "zero.jpg").write_bytes(b"")
    p = _only_problem(check_dataset(root, "point"))
    assert p.row == 7 and "empty file" in p.message


def test_missing_image(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS + ["gone.jpg,0.5,0.5"])
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.file, p.field) == (7, "gone.jpg", "image")
    assert "file not found" in p.message


def test_nan_label(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS[:4] + ["4.jpg,0.5,NaN"])
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.file, p.field) == (6, "4.jpg", "y")
    assert "not a finite number" in p.message


def test_non_numeric_label(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS[:4] + ["4.jpg,left,0.5"])
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.field) == (6, "x") and "'left' is not a number" in p.message


def test_coordinate_out_of_range(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS[:4] + ["4.jpg,1.7,0.5"])
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.file, p.field) == (6, "4.jpg", "x")
    assert "x=1.7 is beyond the margin outside the frame: valid is [-0.25, 1.25]" in p.message


def test_coordinate_just_past_the_margin_shows_every_digit(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS[:4] + ["4.jpg,0.5,-0.2500001"])
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.field) == (6, "y") and "y=-0.2500001 is beyond the margin" in p.message


def test_points_slightly_outside_the_frame_are_counted_not_refused(tmp_path):
    rows = GOOD_POINT_ROWS[:4] + ["4.jpg,1.25,0.5", "5.jpg,-0.1,-0.25"]
    report = check_dataset(_dataset(tmp_path / "d", rows), "point")
    assert report.ok, report.format()
    assert report.stats["outside_frame"] == {"x,y": 2} and report.stats["margin"] == 0.25
    assert "2 of 6 point(s) outside the frame, within the margin of 0.25" in report.format()
    t = load_dataset(tmp_path / "d", "point").targets()
    np.testing.assert_allclose(t[-2:, 0], [[1.25, 0.5], [-0.1, -0.25]], atol=1e-7)


def test_missing_keypoints_are_masked_and_counted_per_keypoint(tmp_path):
    rows = [
        "0.jpg,0.1,0.2,0.3,0.4",
        "1.jpg,,,0.5,0.6",
        "2.jpg,0.7,0.8,,",
        "3.jpg,,,0.2,0.2",
        "4.jpg,0.4,0.4,0.6,0.6",
    ]
    root = _dataset(tmp_path / "d", rows, header="image,x1,y1,x2,y2")
    report = check_dataset(root, "keypoints")
    assert report.ok, report.format()
    assert report.stats["missing"] == {"x1,y1": 2, "x2,y2": 1}
    assert "3 of 10 missing/occluded point(s) (empty cells)" in report.format()
    assert "x1,y1: 2, x2,y2: 1" in report.format()
    t = load_dataset(root, "keypoints").targets()
    assert t.shape == (5, 2, 2)
    assert np.isnan(t[1, 0]).all() and np.isnan(t[2, 1]).all() and np.isfinite(t[0]).all()
    np.testing.assert_allclose(t[1, 1], [0.5, 0.6], atol=1e-7)


@pytest.mark.parametrize(
    ("row", "field", "text"),
    [
        ("1.jpg,0.5,,0.5,0.5", "y1", "y1 is empty but x1=0.5"),
        ("1.jpg,0.5,0.5,,0.5", "x2", "x2 is empty but y2=0.5"),
        ("1.jpg,,,,", "x1", "all 2 keypoints are empty: a row with no point"),
    ],
)
def test_half_empty_pairs_and_rows_without_points_are_refused(tmp_path, row, field, text):
    root = _dataset(tmp_path / "d", ["0.jpg,0.1,0.2,0.3,0.4", row], header="image,x1,y1,x2,y2")
    p = _only_problem(check_dataset(root, "keypoints"))
    assert (p.row, p.field) == (3, field) and text in p.message, p.message


def test_a_point_row_without_its_point_is_refused(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS[:4] + ["4.jpg,,"])
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.field) == (6, "x")
    assert "x,y are empty: a row with no point has nothing to learn from" in p.message


def test_nine_columns_in_three_column_csv(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS[:4] + ["4.jpg,0.1,0.2,0.3,0.4,5,6,7,8"])
    p = _only_problem(check_dataset(root, "point"))
    assert p.row == 6 and "9 columns, the header has 3" in p.message


def test_trailing_empty_cells_are_not_extra_columns(tmp_path):
    root = _dataset(tmp_path / "d", [r + ",," for r in GOOD_POINT_ROWS])
    assert check_dataset(root, "point").ok


def test_nul_in_path(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS + ["a\x00b.jpg,0.5,0.5"])
    p = _only_problem(check_dataset(root, "point"))
    assert p.row == 7 and "NUL" in p.message


def test_duplicated_row(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS + ["./2.jpg,0.2,0.2"])
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.file) == (7, "./2.jpg")
    assert "duplicated row" in p.message and "row 4" in p.message


def test_missing_header_column(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS, header="image,x,z")
    p = _only_problem(check_dataset(root, "point"))
    assert p.field == "y" and "missing header column(s) y" in p.message


def test_no_header_at_all(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS[1:], header=GOOD_POINT_ROWS[0])
    p = _only_problem(check_dataset(root, "point"))
    assert "missing header column 'image'" in p.message and "looks like data" in p.message


def test_empty_csv(tmp_path):
    root = _dataset(tmp_path / "d", [])
    (root / "labels.csv").write_text("")
    p = _only_problem(check_dataset(root, "point"))
    assert "labels.csv is empty" in p.message


def test_header_only_csv(tmp_path):
    root = _dataset(tmp_path / "d", [])
    p = _only_problem(check_dataset(root, "point"))
    assert "has a header but no rows" in p.message


def test_csv_not_utf8(tmp_path):
    root = _dataset(tmp_path / "d", [])
    (root / "labels.csv").write_bytes("image,x,y\nbild_\u00e4.jpg,0.1,0.2\n".encode("latin-1"))
    p = _only_problem(check_dataset(root, "point"))
    assert "not UTF-8" in p.message


def test_image_path_is_a_folder(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS + ["sub,0.5,0.5"])
    (root / "sub").mkdir()
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.file) == (7, "sub") and "not a file" in p.message


def test_quoted_fields_and_empty_label(tmp_path):
    rows = ['"0.jpg","0.5","0.5"', "1.jpg,,0.5"]
    root = _dataset(tmp_path / "d", rows)
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.field) == (3, "x") and "x is empty but y=0.5" in p.message


def test_missing_labels_csv(tmp_path):
    root = _dataset(tmp_path / "d", [])
    (root / "labels.csv").unlink()
    p = _only_problem(check_dataset(root, "value"))
    assert "no labels.csv" in p.message


def test_class_with_too_few_images(tmp_path):
    rows = [f"{i}.jpg,good" for i in range(6)] + ["6.jpg,bad", "7.jpg,bad"]
    root = _dataset(tmp_path / "d", rows, header="image,label", n_images=8)
    p = _only_problem(check_dataset(root, "class"))
    assert p.field == "label" and "class 'bad' has only 2" in p.message
    assert f"at least {MIN_IMAGES_PER_CLASS}" in p.message
    # checked against a model's known classes (validation/evaluation data): only a warning
    report = check_dataset(root, "class", class_names=["bad", "good"])
    assert report.ok and "class 'bad' has only 2 image(s) here" in report.format()


@pytest.mark.parametrize("bad", ["../../etc/passwd", "../outside.jpg", "sub/../../outside.jpg"])
def test_path_escaping_data_dir_is_refused(tmp_path, bad):
    _img(tmp_path / "outside.jpg")
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS + [f"{bad},0.5,0.5"])
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.file, p.field) == (7, bad, "image")
    assert "outside the dataset folder: refused" in p.message


def test_absolute_path_is_refused(tmp_path):
    outside = _img(tmp_path / "outside.jpg")
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS + [f"{outside},0.5,0.5"])
    p = _only_problem(check_dataset(root, "point"))
    assert p.row == 7 and "absolute path" in p.message and "refused" in p.message


def test_symlink_pointing_outside_is_refused(tmp_path):
    outside = _img(tmp_path / "outside.jpg")
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS + ["link.jpg,0.5,0.5"])
    (root / "link.jpg").symlink_to(outside)
    p = _only_problem(check_dataset(root, "point"))
    assert (p.row, p.file) == (7, "link.jpg") and "symlink pointing outside" in p.message


def test_symlink_inside_is_fine(tmp_path):
    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS + ["link.jpg,0.5,0.5"])
    target = _img(root / "originals" / "x.jpg")
    (root / "link.jpg").symlink_to(target)
    assert check_dataset(root, "point").ok
    # a link to an image already listed is the same image twice
    (root / "link.jpg").unlink()
    (root / "link.jpg").symlink_to(root / "0.jpg")
    assert "duplicated row" in _only_problem(check_dataset(root, "point")).message


# --------------------------------------------------------------------------- all at once
def _messy(tmp_path: Path) -> Path:
    rows = GOOD_POINT_ROWS + [
        "cut.jpg,0.5,0.5",  # row 7
        "5.jpg,nan,0.5",  # row 8
        "0.jpg,0.1,0.1",  # row 9 (duplicate of row 2)
        "gone.jpg,0.1,0.1",  # row 10
    ]
    root = _dataset(tmp_path / "d", rows)
    data = (root / "0.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(data[:100])
    return root


def test_every_problem_is_reported_at_once(tmp_path):
    report = check_dataset(_messy(tmp_path), "point")
    assert sorted(p.row for p in report.problems) == [7, 8, 9, 10]
    text = report.format()
    assert "4 problem(s) in 4 row(s)" in text
    with pytest.raises(DataError) as e:
        load_dataset(_messy(tmp_path), "point")
    for row in (7, 8, 9, 10):
        assert f"labels.csv row {row}," in str(e.value)


def test_skip_bad_drops_and_counts(tmp_path):
    ds = load_dataset(_messy(tmp_path), "point", skip_bad=True)
    assert len(ds) == 5 and ds.dropped == 4
    assert "skipped 4 bad row(s) of 9" in ds.message
    assert [s.row for s in ds.samples] == [2, 3, 4, 5, 6]


def test_skip_bad_does_not_hide_dataset_level_problems(tmp_path):
    rows = [f"{i}.jpg,good" for i in range(6)] + ["6.jpg,bad"]
    root = _dataset(tmp_path / "d", rows, header="image,label", n_images=7)
    with pytest.raises(DataError, match="class 'bad' has only 1"):
        load_dataset(root, "class", skip_bad=True)


def test_cli_data_check_exit_codes(tmp_path, run_cli):
    good = _dataset(tmp_path / "good", GOOD_POINT_ROWS)
    out = run_cli("data", "check", good, "--task", "point")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK: no problems found" in out.stdout
    out = run_cli("data", "check", _messy(tmp_path), "--task", "point")
    assert out.returncode == 1
    assert "labels.csv row 7, file cut.jpg, column image: truncated JPEG" in out.stdout
    assert "labels.csv row 8, file 5.jpg, column x: nan is not a finite number" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    out = run_cli("data", "check", tmp_path / "nope", "--task", "point")
    assert out.returncode == 3 and "not a folder" in out.stderr
    assert "Traceback" not in out.stderr


# --------------------------------------------------------------------------- formats
def test_y_up_and_pixel_coordinates(tmp_path):
    root = tmp_path / "d"
    _img(root / "a.png", w=200, h=100)
    _img(root / "b.png", w=50, h=50)
    (root / "labels.csv").write_text("image,x,y\na.png,50,25\nb.png,25,10\n")
    with pytest.raises(DataError, match="use --coords pixels"):
        load_dataset(root, "point")
    t = load_dataset(root, "point", coords="pixels").targets()
    np.testing.assert_allclose(t[:, 0], [[0.25, 0.25], [0.5, 0.2]], atol=1e-6)
    t = load_dataset(root, "point", coords="pixels", y_up=True).targets()
    np.testing.assert_allclose(t[:, 0], [[0.25, 0.75], [0.5, 0.8]], atol=1e-6)
    (root / "labels.csv").write_text("image,x,y\na.png,0.1,0.2\nb.png,0.5,0.9\n")
    t = load_dataset(root, "point", y_up=True).targets()
    np.testing.assert_allclose(t[:, 0], [[0.1, 0.8], [0.5, 0.1]], atol=1e-6)
    (root / "labels.csv").write_text("image,x,y\na.png,50,125\nb.png,25,10\n")
    assert check_dataset(root, "point", coords="pixels").ok  # 1.25 of the height: the margin
    (root / "labels.csv").write_text("image,x,y\na.png,-51,25\nb.png,25,10\n")
    p = _only_problem(check_dataset(root, "point", coords="pixels"))
    assert (p.row, p.field) == (2, "x")
    assert "x=-51 px is beyond the margin outside the image: valid is -50..250 px" in p.message


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an EXIF APP1 segment with the given orientation after SOI."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    ifd += struct.pack(">I", 0)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + app1 + jpeg[2:]


def test_exif_orientation_sets_size_and_pixel_normalization(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    ok, buf = cv2.imencode(".jpg", np.full((40, 60, 3), 128, np.uint8))
    (root / "rot.jpg").write_bytes(_with_exif_orientation(buf.tobytes(), 6))
    (root / "labels.csv").write_text("image,x,y\nrot.jpg,20,30\n")
    ds = load_dataset(root, "point", coords="pixels")
    s = ds.samples[0]
    assert (s.width, s.height) == (40, 60)  # rotated 90 degrees by EXIF
    from edge_runtime.images import read_image

    assert read_image(s.path).shape == (60, 40, 3)  # the size the runtime decodes too
    np.testing.assert_allclose(s.target[0], [0.5, 0.5], atol=1e-6)


def test_image_layouts_and_formats(tmp_path):
    root = tmp_path / "d"
    _img(root / "gray.png", channels=1)
    _img(root / "rgba.png", channels=4)
    _img(root / "pic.bmp")
    _img(root / "pic.webp")
    root.mkdir(exist_ok=True)
    cv2.imwrite(str(root / "deep.png"), np.full((30, 40), 40000, np.uint16))
    names = ["gray.png", "rgba.png", "pic.bmp", "pic.webp", "deep.png"]
    (root / "labels.csv").write_text(
        "image,value\n" + "".join(f"{n},{100 + i}\n" for i, n in enumerate(names))
    )
    report = check_dataset(root, "value")
    assert report.ok, report.format()
    layouts = report.stats["layouts"]
    assert layouts["gray 8-bit"] == 1 and layouts["gray 16-bit"] == 1
    assert layouts["RGBA 8-bit"] == 1 and layouts["RGB 8-bit"] == 2
    assert set(report.stats["formats"]) == {"PNG", "BMP", "WebP"}
    text = report.format()
    assert "value: min 100, max 104, mean 102" in text and "histogram:" in text


def test_keypoints_from_header(tmp_path):
    header = "image,x1,y1,x2,y2,x3,y3,note"
    rows = [f"{i}.jpg,0.1,0.2,0.3,0.4,0.5,0.6,hello" for i in range(4)]
    root = _dataset(tmp_path / "d", rows, header=header)
    ds = load_dataset(root, "keypoints")
    assert ds.num_keypoints == 3 and ds.targets().shape == (4, 3, 2)
    assert ds.target_name == "x1,y1,x2,y2,x3,y3"
    (root / "labels.csv").write_text("image,x1,y1,x2\n0.jpg,0.1,0.2,0.3\n")
    assert "x2" in check_dataset(root, "keypoints").format()


def test_value_with_target_column(tmp_path):
    rows = [f"{i}.jpg,{80 + 10 * i},{i}" for i in range(5)]
    root = _dataset(tmp_path / "d", rows, header="image,conc,batch")
    with pytest.raises(DataError, match="missing header column"):
        load_dataset(root, "value")
    ds = load_dataset(root, "value", target="conc")
    assert ds.target_name == "conc"
    np.testing.assert_allclose(ds.targets(), [80, 90, 100, 110, 120])
    assert ds.targets().dtype == np.float32


def test_class_csv_and_given_class_names(tmp_path):
    rows = [f"{i}.jpg,{'cat' if i % 2 else 'dog'}" for i in range(10)]
    root = _dataset(tmp_path / "d", rows, header="image,label", n_images=10)
    ds = load_dataset(root, "class")
    assert ds.class_names == ("cat", "dog")
    assert ds.targets().dtype == np.int64 and list(ds.targets()[:2]) == [1, 0]
    ds = load_dataset(root, "class", class_names=["dog", "cat"])
    assert list(ds.targets()[:2]) == [0, 1]
    report = check_dataset(root, "class", class_names=["dog", "bird"])
    assert any(p.row == 3 and "'cat' is not one of" in p.message for p in report.problems)


def test_folder_per_class(tmp_path):
    root = tmp_path / "d"
    for i in range(6):
        _img(root / "ok" / f"{i}.png", seed=i)
        _img(root / "defect" / f"{i}.jpg", seed=10 + i)
    (root / "ok" / "readme.txt").write_text("not an image")
    ds = load_dataset(root, "class")
    assert ds.class_names == ("defect", "ok") and len(ds) == 12
    assert all(s.row == 0 for s in ds.samples)
    assert np.bincount(ds.targets()).tolist() == [6, 6]
    assert "1 non-image file(s)" in ds.report.format()
    (root / "defect" / "5.jpg").write_text("oops")
    report = check_dataset(root, "class")
    p = _only_problem(report)
    assert p.file == "defect/5.jpg" and "text file" in p.message
    ds = load_dataset(root, "class", skip_bad=True)
    assert len(ds) == 11 and ds.dropped == 1


# --------------------------------------------------------------------------- splits
def test_split_is_deterministic_and_disjoint(tmp_path):
    rows = [f"{i}.jpg,0.5,0.{i % 9 + 1}" for i in range(20)]
    ds = load_dataset(_dataset(tmp_path / "d", rows, n_images=20), "point")
    tr, va = split_dataset(ds, 0.25, seed=3)
    tr2, va2 = split_dataset(ds, 0.25, seed=3)
    assert [s.row for s in va.samples] == [s.row for s in va2.samples]
    assert len(va) == 5 and len(tr) == 15
    assert not {s.row for s in tr.samples} & {s.row for s in va.samples}
    _, va3 = split_dataset(ds, 0.25, seed=4)
    assert [s.row for s in va3.samples] != [s.row for s in va.samples]
    tr0, va0 = split_dataset(ds, 0.0)
    assert len(tr0) == 20 and len(va0) == 0


def test_split_is_stratified_for_classes(tmp_path):
    rows = [f"{i}.jpg,{'a' if i < 24 else 'b'}" for i in range(30)]
    ds = load_dataset(_dataset(tmp_path / "d", rows, "image,label", n_images=30), "class")
    tr, va = split_dataset(ds, 0.2, seed=0)
    assert np.bincount(va.targets(), minlength=2).tolist() == [5, 1]
    assert np.bincount(tr.targets(), minlength=2).tolist() == [19, 5]
    assert va.class_names == ds.class_names


def test_load_run_splits(tmp_path):
    rows = [f"{i}.jpg,{100 + i}" for i in range(10)]
    root = _dataset(tmp_path / "d", rows, header="image,value", n_images=10)
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    cfg = {
        "data_dir": str(root),
        "val_dir": None,
        "task": "value",
        "y_up": False,
        "coords": "normalized",
        "target": None,
        "val_fraction": 0.3,
        "seed": 7,
    }
    (run / "config.json").write_text(json.dumps(cfg))
    tr, va = load_run_splits(run)
    ref_tr, ref_va = split_dataset(load_dataset(root, "value"), 0.3, 7)
    assert [s.row for s in va.samples] == [s.row for s in ref_va.samples]
    assert len(tr) + len(va) == 10
    cfg["val_dir"] = str(root)
    (run / "config.json").write_text(json.dumps(cfg))
    tr, va = load_run_splits(run)
    assert len(tr) == len(va) == 10
    with pytest.raises(DataError, match="config.json"):
        load_run_splits(tmp_path / "nowhere")


# --------------------------------------------------------------------------- fuzz
def test_any_csv_content_gives_a_report_not_a_crash(tmp_path):
    """Random bytes and random CSV-ish text as labels.csv: always a report, never a crash."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    root = _dataset(tmp_path / "d", GOOD_POINT_ROWS)
    cell = st.sampled_from(
        [
            "0.jpg",
            "1.jpg",
            "../x.jpg",
            "/etc/passwd",
            "nan",
            "inf",
            "-1",
            "0.5",
            "1e9",
            "",
            '"',
            "x",
        ]
    )
    row = st.lists(cell, min_size=0, max_size=5).map(",".join)
    text = st.lists(row, min_size=0, max_size=8).map("\n".join)
    tried = []

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=200), text.map(str.encode)))
    def check(data: bytes) -> None:
        tried.append(data)
        (root / "labels.csv").write_bytes(data)
        for task in ("point", "value", "class", "keypoints"):
            report = check_dataset(root, task)
            assert isinstance(report.format(), str)
            try:
                load_dataset(root, task, skip_bad=True)
            except DataError:
                pass

    check()
    assert len(tried) >= 30
