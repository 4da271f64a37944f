"""Friday-evening mistakes: what a new user gets wrong, and what edgereg now does about it.

One section per class of the reliability issue (the output rule itself is
tests/test_outputs_matrix.py): labels read silently wrong (3), an interrupted first epoch
(4), options never checked (5), plausible mistakes with no hint (6), exit codes that the
docs and the code disagree on (7). Real files (OpenCV writes the images), real
``edgereg`` subprocesses; the one training run is tiny (32 px, alpha 0.35, from scratch).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from subproc import ENV, edgereg

from edge_runtime.errors import EXIT_CODES, OptionError
from edge_runtime.images import MAX_IMAGE_PIXELS, read_image
from train.dataset import check_dataset, load_dataset

REPO = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--input-size", "32", "--weights", "none", "--alpha", "0.35"]


def images(root: Path, n: int = 6, w: int = 40, h: int = 30) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
        assert cv2.imwrite(str(root / f"{i}.jpg"), img)
    return root


def dataset(root: Path, text: str, n: int = 6) -> Path:
    """Images 0.jpg .. and labels.csv with exactly ``text`` (any separator, any bytes)."""
    images(root, n)
    (root / "labels.csv").write_text(text, encoding="utf-8")
    return root


def problems(report) -> str:
    return "\n".join(p.format() for p in report.problems)


# =========================================================================== 3. labels
KP_ROWS = [(0.1, 0.2, 0.3, 0.4), (0.5, 0.6, 0.7, 0.8), (0.15, 0.25, 0.35, 0.45)] * 2


def _kp_csv(names: str, rows=KP_ROWS, sep: str = ",") -> str:
    lines = [sep.join(["image", *names.split(",")])]
    lines += [sep.join([f"{i}.jpg", *(str(v) for v in r)]) for i, r in enumerate(rows)]
    return "\n".join(lines) + "\n"


def test_keypoints_numbered_from_0_are_read_whole_and_the_numbering_is_said(tmp_path):
    zero = load_dataset(dataset(tmp_path / "z", _kp_csv("x0,y0,x1,y1")), "keypoints")
    one = load_dataset(dataset(tmp_path / "o", _kp_csv("x1,y1,x2,y2")), "keypoints")
    # keypoint 0 used to be dropped as an "extra column": now both give 2 keypoints, equal
    assert zero.num_keypoints == one.num_keypoints == 2
    np.testing.assert_array_equal(zero.targets(), one.targets())
    assert "numbered from 0 (x0,y0 .. x1,y1)" in "\n".join(zero.report.notes)
    assert "numbered from 1" in "\n".join(one.report.notes)
    r = edgereg("data", "check", tmp_path / "z", "--task", "keypoints", cwd=tmp_path)
    assert r.returncode == 0 and "keypoint columns numbered from 0" in r.stdout, r.stdout


@pytest.mark.parametrize(
    "header,why",
    [
        ("x0,y0,x2,y2", "skip 1"),  # a gap
        ("x1,y1,x2,note", "no y2"),  # half a pair
        ("x1,y1,x01,y2", "same keypoint coordinate"),  # one number written twice
    ],
)
def test_keypoint_headers_that_cannot_be_read_one_way_are_refused(tmp_path, header, why):
    text = _kp_csv(header)
    report = check_dataset(dataset(tmp_path / "d", text), "keypoints")
    assert not report.ok and why in problems(report), problems(report)
    assert report.problems[0].row == 1


def test_a_duplicated_header_column_is_refused_not_silently_the_first(tmp_path):
    root = dataset(
        tmp_path / "d", "image,x,y,x\n" + "".join(f"{i}.jpg,0.1,0.2,0.9\n" for i in range(6))
    )
    report = check_dataset(root, "point")
    assert "column 'x' appears 2 times in the header (columns 2, 4)" in problems(report)
    (root / "labels.csv").write_text("image,X,y,note,Note\n0.jpg,0.1,0.2,a,b\n")
    assert "column 'note' appears 2 times" in problems(check_dataset(root, "point"))


@pytest.mark.parametrize(
    "text,said",
    [
        ("image;x;y\n" + "".join(f"{i}.jpg;0,{i + 1};0,5\n" for i in range(6)), "separator ';'"),
        ("image\tx\ty\n" + "".join(f"{i}.jpg\t0.{i + 1}\t0.5\n" for i in range(6)), "tab"),
        ("sep=;\nimage;x;y\n" + "".join(f"{i}.jpg;0.{i + 1};0.5\n" for i in range(6)), "sep=;"),
        ('"sep=,"\nimage,x,y\n' + "".join(f"{i}.jpg,0.{i + 1},0.5\n" for i in range(6)), "sep=,"),
    ],
    ids=["semicolon-decimal-comma", "tab", "excel-sep-line", "excel-sep-comma"],
)
def test_spreadsheet_separators_are_read_and_said(tmp_path, text, said):
    plain = "image,x,y\n" + "".join(f"{i}.jpg,0.{i + 1},0.5\n" for i in range(6))
    want = load_dataset(dataset(tmp_path / "plain", plain), "point").targets()
    ds = load_dataset(dataset(tmp_path / "d", text), "point")
    np.testing.assert_array_equal(ds.targets(), want)
    assert said in "\n".join(ds.report.notes), ds.report.notes


def test_separator_rows_keep_their_line_numbers_and_an_unknown_one_is_named(tmp_path):
    rows = "".join(f"{i}.jpg;0,{i + 1};0,5\n" for i in range(5)) + "5.jpg;1,5;0,5\n"
    report = check_dataset(dataset(tmp_path / "d", "sep=;\nimage;x;y\n" + rows), "point")
    assert [p.row for p in report.problems] == [8]  # line 8 of the file: sep=, header, 6 rows
    assert "x=1.5 is beyond the margin" in problems(report)
    assert "decimal comma" in report.format()
    (tmp_path / "d" / "labels.csv").write_text("image|x|y\n0.jpg|0.1|0.2\n")
    text = problems(check_dataset(tmp_path / "d", "point"))
    assert "missing header column 'image'" in text and "one column" in text and "tab" in text
    r = edgereg("data", "check", tmp_path / "d", "--task", "point", cwd=tmp_path)
    assert r.returncode == 1 and "one column" in r.stdout and "Traceback" not in r.stderr


def test_target_messages_name_the_columns_and_refuse_the_image_column(tmp_path):
    root = dataset(
        tmp_path / "d", "image,conc,batch\n" + "".join(f"{i}.jpg,{i},1\n" for i in range(6))
    )
    text = problems(check_dataset(root, "value", target="nope"))
    assert "--target nope: labels.csv has no column 'nope'" in text and "conc, batch" in text
    text = problems(check_dataset(root, "value"))
    assert "--target COLUMN" in text and "(here: conc, batch)" in text
    text = problems(check_dataset(root, "value", target="image"))
    assert "--target image: that is the image path column" in text
    assert load_dataset(root, "value", target="CONC").targets().tolist() == list(range(6))


# =========================================================================== 5. options
RANGE_CASES = [
    # (arguments after the command, option, words of the range in click's message)
    (["train", "D", "--task", "value", "--out", "r", "--lr", "-1"], "--lr", "0.0<x<=1.0"),
    (["train", "D", "--task", "value", "--out", "r", "--lr", "0"], "--lr", "0.0<x<=1.0"),
    (
        ["train", "D", "--task", "value", "--out", "r", "--val-fraction", "1"],
        "--val-fraction",
        "<1.0",
    ),
    (
        ["train", "D", "--task", "value", "--out", "r", "--weight-decay", "-0.1"],
        "--weight-decay",
        "0.0<=x<=1.0",
    ),
    (["train", "D", "--task", "value", "--out", "r", "--dropout", "1"], "--dropout", "x<1.0"),
    (
        ["train", "D", "--task", "value", "--out", "r", "--max-minutes", "0"],
        "--max-minutes",
        "x>0.0",
    ),
    (
        ["train", "D", "--task", "value", "--out", "r", "--fine-tune-lr", "5"],
        "--fine-tune-lr",
        "x<=1.0",
    ),
    (["train", "D", "--task", "value", "--out", "r", "--seed", "-1"], "--seed", "0<=x"),
    (
        ["train", "D", "--task", "value", "--out", "r", "--input-size", "16"],
        "--input-size",
        "32 <= x <= 1024",
    ),
    (["train", "D", "--task", "value", "--out", "r", "--epochs", "0"], "--epochs", "1<=x"),
    (["train", "D", "--task", "value", "--out", "r", "--alpha", "5"], "--alpha", "0.1<=x<=2.0"),
    (["convert", "r", "--calib", "0"], "--calib", "1<=x"),
    (["convert", "r", "--max-drop", "2"], "--max-drop", "0<=x<=1"),
    (["samples", "make", "s", "--task", "point", "--seed", "-3"], "--seed", "0<=x"),
    (["samples", "make", "s", "--task", "point", "--n", "0"], "--n", "1<=x"),
    (["demo", "--seed", "-1"], "--seed", "0<=x"),
    (["bench", "m.tflite", "--frames", "0"], "--frames", "1<=x"),
]


@pytest.mark.parametrize(
    "args,option,words", RANGE_CASES, ids=[" ".join(c[0][:1] + [c[1]]) for c in RANGE_CASES]
)
def test_every_numeric_option_is_refused_outside_its_range_with_the_range(
    tmp_path, args, option, words
):
    images(tmp_path / "D")
    (tmp_path / "m.tflite").write_bytes(b"x")
    r = edgereg(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert option in r.stderr and words in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_the_library_checks_the_same_ranges(tmp_path):
    from train.training import train

    root = dataset(tmp_path / "d", "image,value\n" + "".join(f"{i}.jpg,{i}\n" for i in range(6)))
    for kw, words in [
        ({"lr": -1.0}, "--lr: -1.0 is not in the range 0 < x <= 1"),
        ({"val_fraction": 1.5}, "--val-fraction"),
        ({"seed": -2}, "--seed"),
        ({"input_size": [16, 64]}, "--input-size: 16"),
        ({"alpha": 0.2}, "mobilenet_v2 supports 0.35 to 1.4"),
        ({"invariances": "sideways"}, "--invariant"),
    ]:
        with pytest.raises(OptionError, match=re.escape(words)):
            train(root, "value", tmp_path / "run", verbose=False, **kw)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "command,task,option,owner",
    [
        (
            "train",
            "value",
            ["--flip-pairs", "0:1"],
            "--flip-pairs applies to --task keypoints only",
        ),
        (
            "train",
            "value",
            ["--coords", "pixels"],
            "--coords applies to --task point and keypoints",
        ),
        ("train", "value", ["--y-up"], "--y-up applies to --task point and keypoints"),
        ("train", "point", ["--range", "1", "2"], "--range applies to --task value only"),
        ("check", "keypoints", ["--target", "conc"], "--target applies to --task value only"),
        ("check", "value", ["--zero", "right"], "--zero applies to --task angle only"),
    ],
)
def test_options_of_another_task_are_refused_naming_their_task(
    tmp_path, command, task, option, owner
):
    images(tmp_path / "D")
    args = ["train", "D", "--out", "r"] if command == "train" else ["data", "check", "D"]
    r = edgereg(*args, "--task", task, *option, cwd=tmp_path)
    assert r.returncode == 2 and owner in r.stderr and f"(this is --task {task})" in r.stderr, (
        r.stderr
    )
    assert not (tmp_path / "r").exists()


def test_flip_pairs_message_names_the_wrong_pair_and_the_numbering(tmp_path):
    dataset(tmp_path / "D", _kp_csv("x0,y0,x1,y1"))
    r = edgereg(
        "train",
        "D",
        "--task",
        "keypoints",
        "--flip-pairs",
        "0:2",
        "--out",
        "r",
        *TINY,
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    assert "--flip-pairs: 0:2 is out of range" in r.stderr and "from 0 to 1" in r.stderr
    assert "index i is columns xi,yi" in r.stderr and "below 0" not in r.stderr
    r = edgereg(
        "train",
        "D",
        "--task",
        "keypoints",
        "--flip-pairs",
        "1:1",
        "--out",
        "r",
        *TINY,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "1 and 1 are the same keypoint" in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()


# =========================================================================== 6. warnings
def test_plausible_mistakes_are_warned_about(tmp_path):
    norm = "image,x,y\n" + "".join(f"{i}.jpg,0.{i + 1},0.5\n" for i in range(6))
    report = check_dataset(dataset(tmp_path / "p", norm), "point", coords="pixels")
    assert report.ok and any("look like normalized labels" in w for w in report.warnings)
    assert not check_dataset(tmp_path / "p", "point").warnings  # the same labels, no flag
    one = "image,value\n" + "".join(f"{i}.jpg,42\n" for i in range(6))
    report = check_dataset(dataset(tmp_path / "v", one), "value")
    assert report.ok and any("every value is 42: one value only" in w for w in report.warnings)
    case = "image,label\n" + "".join(f"{i}.jpg,{'OK' if i % 2 else 'ok'}\n" for i in range(12))
    report = check_dataset(dataset(tmp_path / "c", case, n=12), "class")
    assert report.ok and any("'OK' and 'ok' differ only in case" in w for w in report.warnings)
    close = "image,x,y\n0.jpg,1.2500001,0.5\n" + "".join(f"{i}.jpg,0.5,0.5\n" for i in range(1, 6))
    report = check_dataset(dataset(tmp_path / "n", close), "point")
    # the value with every digit, not "x=1.25 is beyond the margin" (1.25 is allowed)
    assert "x=1.2500001 is beyond the margin" in problems(report)
    r = edgereg(
        "data", "check", tmp_path / "p", "--task", "point", "--coords", "pixels", cwd=tmp_path
    )
    assert r.returncode == 0 and "warnings:" in r.stdout and "drop --coords pixels" in r.stdout


def test_resume_of_a_folder_that_does_not_exist_says_so(tmp_path):
    bad = "image,value\n0.jpg,1\n1.jpg,oops\n" + "".join(f"{i}.jpg,{i}\n" for i in range(2, 6))
    dataset(tmp_path / "D", bad)
    r = edgereg("train", "D", "--out", "nowhere", "--resume", cwd=tmp_path)
    assert r.returncode == 12 and "no such folder, so there is no run to resume" in r.stderr
    assert "first epoch" not in r.stderr
    # with --task it starts a new run (here the data is bad: refused, and nothing is left)
    r = edgereg(
        "train", "D", "--task", "value", "--out", "nowhere", "--resume", *TINY, cwd=tmp_path
    )
    assert "nowhere: does not exist: there is no run to resume; starting a new run" in r.stderr
    assert r.returncode == 3 and "'oops' is not a number" in r.stderr, r.stderr
    assert not (tmp_path / "nowhere").exists()


@pytest.fixture(scope="module")
def phone_photo(tmp_path_factory) -> Path:
    """A real 108-MP JPEG (12000 x 9000) with a red disc at pixel (3000, 6000)."""
    d = tmp_path_factory.mktemp("photo")
    img = np.full((9000, 12000, 3), 90, np.uint8)
    cv2.circle(img, (3000, 6000), 300, (0, 0, 255), -1)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    (d / "big.jpg").write_bytes(buf.tobytes())
    return d / "big.jpg"


def test_a_108_megapixel_photo_is_decoded_at_a_reduced_size_not_refused(tmp_path, phone_photo):
    assert 12000 * 9000 > MAX_IMAGE_PIXELS
    rgb = read_image(phone_photo)
    assert rgb.shape == (4500, 6000, 3)  # 1/2 size: the least reduction under the limit
    y, x = np.argwhere((rgb[..., 0] > 200) & (rgb[..., 2] < 60)).mean(axis=0)
    assert abs(x - 1500) < 3 and abs(y - 3000) < 3  # the disc, where it is at full size
    root = images(tmp_path / "D", n=4)
    os.link(phone_photo, root / "big.jpg")
    rows = "".join(f"{i}.jpg,20,15\n" for i in range(4)) + "big.jpg,3000,6000\n"
    (root / "labels.csv").write_text("image,x,y\n" + rows)
    ds = load_dataset(root, "point", coords="pixels")
    big = next(s for s in ds.samples if s.path.name == "big.jpg")
    assert (big.width, big.height) == (12000, 9000)  # the true size: pixel labels stay right
    np.testing.assert_allclose(big.target, [[0.25, 2 / 3]], atol=1e-6)
    r = edgereg("data", "check", root, "--task", "point", "--coords", "pixels", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "decoded at 1/2 to 1/8" in r.stdout and "width 40..12000" in r.stdout


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp"])
def test_header_size_reads_every_format_the_dataset_takes(tmp_path, ext):
    from edge_runtime.images import header_size

    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok and header_size(buf.tobytes()) == (53, 37)
    assert header_size(b"not an image at all") is None
    assert header_size(buf.tobytes()[:12]) is None  # cut inside the header: no guess


def test_a_reduced_decode_keeps_the_true_size_turned_by_exif(tmp_path, monkeypatch):
    """A photo stored sideways with EXIF orientation 6 (turn 90 degrees clockwise):
    the decoded pixels are upright and the size reported is the upright one. The limit is
    lowered so a 4000x3000 JPEG counts as large (a real file, a real OpenCV decode)."""
    import struct

    import edge_runtime.images as images_mod

    monkeypatch.setattr(images_mod, "MAX_IMAGE_PIXELS", 1_000_000)
    img = np.zeros((3000, 4000, 3), np.uint8)
    img[:100, :100] = 255  # a white corner at the stored top-left
    ok, buf = cv2.imencode(".jpg", img)
    tiff = b"MM\x00\x2a" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0)
    app1 = b"Exif\x00\x00" + tiff + struct.pack(">I", 0)
    data = buf.tobytes()[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    data += buf.tobytes()[2:]
    pixels, w, h, factor = images_mod.decode_image(data, "sideways.jpg")
    assert (w, h, factor) == (3000, 4000, 4) and pixels.shape[:2] == (1000, 750)
    assert pixels[:20, -20:].mean() > 200  # the stored top-left is now top-right
    plain, w, h, factor = images_mod.decode_image(buf.tobytes(), "upright.jpg")
    assert (w, h, factor) == (4000, 3000, 4) and plain.shape[:2] == (750, 1000)
    monkeypatch.setattr(images_mod, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(images_mod.ImageError, match="too large even decoded at 1/8"):
        images_mod.decode_image(buf.tobytes(), "huge.jpg")


def test_ownership_rules_for_folders_and_files(tmp_path):
    from edge_runtime.errors import ClashError
    from edge_runtime.ownership import claim_file, claim_folder, json_with_keys, mark

    assert claim_folder("--out", tmp_path / "new", "run") == "new"
    (tmp_path / "empty").mkdir()
    assert claim_folder("--out", tmp_path / "empty", "run") == "empty"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    with pytest.raises(ClashError, match=r"files edgereg did not write \(a.txt\)"):
        claim_folder("--out", tmp_path / "mine", "run")
    mark(tmp_path / "mine", "samples")  # made by edgereg, but for something else
    with pytest.raises(ClashError, match="edgereg's samples"):
        claim_folder("--out", tmp_path / "mine", "run")
    assert claim_folder("OUT_DIR/train", tmp_path / "mine", "samples") == "own"
    f = tmp_path / "r.json"
    f.write_text('{"full_ms": 1}')
    claim_file("--json", f, json_with_keys("full_ms"), "bench")
    with pytest.raises(ClashError, match="not a file eval wrote"):
        claim_file("--json", f, json_with_keys("model_kind"), "eval")
    f.write_text("")
    claim_file("--json", f, json_with_keys("model_kind"), "eval")  # empty: nothing to lose


# =========================================================================== 4. Ctrl-C
def test_ctrl_c_in_the_first_epoch_then_resume_restarts_instead_of_going_round(tmp_path):
    """Ctrl-C (SIGINT) once the run has written its config, before the first checkpoint:
    the folder used to be refused by --resume ("no checkpoint") and by a plain rerun
    ("already holds a run"). Now both start it again; --val = DATA_DIR is warned about."""
    from train.training import _Logger, _plan_run, run_state

    rows = "".join(f"{i}.jpg,{10 * i}\n" for i in range(8))
    dataset(tmp_path / "D", "image,value\n" + rows, n=8)
    cmd = ["train", "D", "--task", "value", "--val", "D", "--out", "run", *TINY]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgereg", *cmd],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as in a terminal: a test run started in the background by a
        # non-interactive shell passes SIGINT down ignored, and the run rightly ignores it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 600
    while not (tmp_path / "run" / "config.json").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "--val" in err and "is DATA_DIR itself" in err
    run = tmp_path / "run"
    assert not (run / "checkpoint" / "last.npz").exists(), "SIGINT came after epoch 1"
    assert run_state(run) == "unstarted"
    # a plain rerun would start again too (decided here; --resume runs it for real below)
    _, resume, clear = _plan_run(
        "unstarted", tmp_path / "D", "value", run, {}, False, False, _Logger(False)
    )
    assert (resume, clear) == (False, True)
    (run / "my_notes.txt").write_text("kept")
    r = edgereg("train", "D", "--out", "run", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped before its first epoch ended" in r.stderr and "starting it again" in r.stderr
    assert (run / "model.keras").is_file() and (run / "my_notes.txt").read_text() == "kept"
    assert json.loads((run / "config.json").read_text())["status"] == "complete"
    # finished: a plain rerun is refused with the way out, and --overwrite is that way
    r = edgereg("train", "D", "--task", "value", "--out", "run", *TINY, cwd=tmp_path)
    assert r.returncode == 12 and "--overwrite" in r.stderr
    r = edgereg(
        "train", "D", "--task", "value", "--out", "run", "--resume", "--overwrite", cwd=tmp_path
    )
    assert r.returncode == 2 and "give one" in r.stderr
    _, resume, clear = _plan_run(
        "complete", tmp_path / "D", "value", run, {}, False, True, _Logger(False)
    )
    assert (resume, clear) == (False, True)


def test_overwrite_removes_the_runs_own_files_and_keeps_the_users(tmp_path):
    from edge_runtime.ownership import MARKER, mark
    from train.training import RUN_ARTIFACTS, _clear_run, run_state

    run = tmp_path / "run"
    for name in RUN_ARTIFACTS:
        if "." in name:
            (run / name).parent.mkdir(parents=True, exist_ok=True)
            (run / name).write_text("old")
        else:
            (run / name / "x.png").parent.mkdir(parents=True)
            (run / name / "x.png").write_text("old")
    (run / "notes.txt").write_text("mine")
    mark(run, "run")
    assert run_state(run) == "complete"
    _clear_run(run)
    assert sorted(os.listdir(run)) == sorted([MARKER, "notes.txt"])


# =========================================================================== 7. exit codes
def test_exit_codes_in_the_docs_are_the_codes_of_the_code(tmp_path):
    """docs/reliability.md lists every error class with its code; a bad option is 2
    whether click or edgereg finds it; dataset-format.md says so."""
    text = (REPO / "docs" / "reliability.md").read_text()
    for name, code in EXIT_CODES.items():
        if name != "EdgeregError":
            assert f"{name} {code}" in text, f"docs/reliability.md lacks '{name} {code}'"
    assert "usage error" in text.lower()
    fmt = (REPO / "docs" / "dataset-format.md").read_text()
    assert "2 for a bad option" in fmt
    images(tmp_path / "D")
    click_error = edgereg("data", "check", "D", "--task", "nope", cwd=tmp_path)
    ours = edgereg("data", "check", "D", "--task", "value", "--y-up", cwd=tmp_path)
    assert click_error.returncode == ours.returncode == OptionError.exit_code == 2
