"""No command overwrites an input or a place it does not own: every output at every input.

Every command that writes (train, eval, bench, convert, samples make, demo, data import;
``run`` through the hook below) is run as a real ``edgereg`` subprocess with each of its
outputs pointed at each of its inputs: the input itself, a place inside an input folder,
a folder around the inputs, and places it does not own (a user's folder, a user's
file). Everything lives under one folder, ``in/``, whose every file is hashed before and
after each command: the command must be refused with its exit code and a message, and
``in/`` must be byte-for-byte the same (no file changed, none added, none removed).

The refusals happen before any model is loaded, so the run folders here hold a real spec
(the fixture model's) and a real .tflite, but ``model.keras`` is a placeholder file: it
is only an input that must not change. The controls at the end prove the commands work
when the outputs are somewhere fresh, and may then replace their own earlier outputs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from subproc import edgereg

from edge_runtime.metadata import read_spec

REPO = Path(__file__).resolve().parents[1]
FIXTURE_MODEL = REPO / "tests" / "fixtures" / "tiny_int8.tflite"  # a point model, 32x32
FIXTURE_PTH = REPO / "tests" / "fixtures" / "tiny_state_dict_zip.pth"


def point_data(root: Path, n: int = 6, size: int = 40, names: str = "im{}.png") -> Path:
    """A small point dataset in the contract's format (labels.csv + PNGs)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(root)))
    rows = []
    for i in range(n):
        img = np.full((size, size, 3), 40, np.uint8)
        x, y = rng.uniform(0.2, 0.8, 2)
        cv2.circle(img, (int(x * size), int(y * size)), 4, (0, 200, 255), -1)
        name = names.format(i)
        assert cv2.imwrite(str(root / name), img)
        rows.append([name, f"{x:.4f}", f"{y:.4f}"])
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x", "y"])
        w.writerows(rows)
    return root


def fake_run(root: Path, data: Path, val: Path | None = None) -> Path:
    """A finished run's files: the fixture's real spec, config.json naming its datasets,
    a placeholder model.keras (never loaded: every case is refused before that)."""
    root.mkdir(parents=True)
    spec = read_spec(FIXTURE_MODEL)
    assert spec is not None
    (root / "spec.json").write_text(spec.to_json())
    cfg = {"task": "point", "data_dir": str(data), "val_dir": str(val) if val else None}
    (root / "config.json").write_text(json.dumps({**cfg, "status": "complete"}))
    (root / "model.keras").write_bytes(b"PK placeholder: the user's trained model")
    (root / "metrics.json").write_text("{}")
    return root


def video(path: Path, frames: int = 6) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(frames):
        w.write(np.full((48, 64, 3), 20 * i, np.uint8))
    w.release()
    assert path.stat().st_size > 0
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: file hashes, link targets, folders (links not followed)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """``in/``: every kind of input and every place a user owns, once for all cases."""
    top = tmp_path_factory.mktemp("matrix")
    d = top / "in"
    data = point_data(d / "data")
    val = point_data(d / "val", n=4)
    shutil.copy(FIXTURE_MODEL, d / "model.tflite")
    shutil.copy(FIXTURE_PTH, d / "weights.pth")
    run = fake_run(d / "run", data, val)
    (run / "export").mkdir()
    shutil.copy(FIXTURE_MODEL, run / "export" / "model_int8.tflite")
    # a run whose export/ is a link into the dataset, and one whose export/ is the user's
    linked = fake_run(d / "linked_run", data)
    (linked / "export").symlink_to(data, target_is_directory=True)
    foreign = fake_run(d / "foreign_run", data)
    (foreign / "export").mkdir()
    (foreign / "export" / "my_notes.txt").write_text("the user's notes")
    video(d / "clip.avi")
    # a user's folder and file that no command made
    (d / "notes").mkdir()
    (d / "notes" / "notes.txt").write_text("do not lose me")
    (d / "mine.json").write_text('{"my": "settings"}')
    # a folder whose train/ is the user's own dataset (not a sample set)
    point_data(d / "shared" / "train", n=3, names="photo{}.png")
    # a Label Studio export (the refusal comes before it is parsed) and its images
    (d / "export.json").write_text("[]")
    point_data(d / "images", n=2)
    return top, d


def _cases(d: Path) -> list[tuple[str, list[object], int, str]]:
    """(id, arguments, exit code, words in the message) of every refused command."""
    data, val, run, model = d / "data", d / "val", d / "run", d / "model.tflite"
    train = ["train", data, "--task", "point", "--val", val, "--weights", d / "weights.pth"]
    train += ["--epochs", 1, "--input-size", 32, "--alpha", 0.35]
    ev, evr = ["eval", model, data], ["eval", run, data]
    bench = ["bench", model, "--frames", 2, "--warmup", 0, "--no-startup"]
    imp = ["data", "import", "labelstudio", d / "export.json"]
    imp_opts = ["--task", "point", "--images", d / "images"]
    inside = "inside the input folder"
    return [
        # train --out
        ("train-out=DATA_DIR", [*train, "--out", data], 13, inside),
        ("train-out-in-DATA_DIR", [*train, "--out", data / "run"], 13, inside),
        ("train-out=--val", [*train, "--out", val], 13, inside),
        ("train-out-in---val", [*train, "--out", val / "plots"], 13, inside),
        ("train-out=--weights", [*train, "--out", d / "weights.pth"], 13, "--weights"),
        ("train-out-around-inputs", [*train, "--out", d], 13, "contains the input"),
        ("train-out=user-folder", [*train, "--out", d / "notes"], 13, "did not write"),
        ("train-out=a-file", [*train, "--out", d / "clip.avi"], 13, "not a folder"),
        ("train-out=finished-run", [*train, "--out", run], 12, "--overwrite"),
        # eval --json / --plots, with a .tflite and with a run directory
        ("eval-json=MODEL", [*ev, "--json", model], 13, "is the input"),
        ("eval-json=labels.csv", [*ev, "--json", data / "labels.csv"], 13, inside),
        ("eval-json-in-DATA_DIR", [*ev, "--json", data / "m.json"], 13, inside),
        ("eval-json=user-file", [*ev, "--json", d / "mine.json"], 13, "not a file"),
        ("eval-plots=DATA_DIR", [*ev, "--plots", data], 13, inside),
        ("eval-plots-in-DATA_DIR", [*ev, "--plots", data / "plots"], 13, inside),
        ("eval-plots=user-folder", [*ev, "--plots", d / "notes"], 13, "did not write"),
        ("eval-json-in-plots", [*ev, "--json", d / "p" / "m.json", "--plots", d / "p"], 13, "same"),
        ("eval-run-json=spec", [*evr, "--json", run / "spec.json"], 13, "is the input"),
        ("eval-run-json=config", [*evr, "--json", run / "config.json"], 13, "is the input"),
        ("eval-run-json=keras", [*evr, "--json", run / "model.keras"], 13, "is the input"),
        ("eval-run-plots=RUN", [*evr, "--plots", run], 13, "contains the input"),
        ("eval-run-json-in-run-val", [*evr, "--json", val / "e.json"], 13, inside),
        # bench --json
        ("bench-json=MODEL", [*bench, "--json", model], 13, "is the input"),
        (
            "bench-json=--source",
            [*bench, "--source", d / "clip.avi", "--json", d / "clip.avi"],
            13,
            "--source",
        ),
        (
            "bench-json=--spec",
            [*bench, "--spec", run / "spec.json", "--json", run / "spec.json"],
            13,
            "--spec",
        ),
        ("bench-json=user-file", [*bench, "--json", d / "mine.json"], 13, "not a file"),
        # convert's RUN_DIR/export
        ("convert-export-linked-into-data", ["convert", d / "linked_run"], 13, "DATA_DIR"),
        ("convert-export=user-folder", ["convert", d / "foreign_run"], 13, "did not write"),
        # samples make OUT_DIR
        ("samples-into-a-dataset", ["samples", "make", data, "--task", "point"], 13, "dataset"),
        (
            "samples-over-user-train",
            ["samples", "make", d / "shared", "--task", "point"],
            13,
            "did not write",
        ),
        # demo --out
        ("demo-out=DATA_DIR", ["demo", "--out", data, "--quick"], 13, "did not write"),
        ("demo-out=user-folder", ["demo", "--out", d / "notes", "--quick"], 13, "did not write"),
        # data import DATA_DIR
        ("import-into=SRC", [*imp, d / "export.json", *imp_opts], 13, "is the input"),
        ("import-into=--images", [*imp, d / "images", *imp_opts], 13, inside),
        ("import-in---images", [*imp, d / "images" / "new", *imp_opts], 13, inside),
        ("import-around-inputs", [*imp, d, *imp_opts], 13, "contains the input"),
        ("import-into-user-folder", [*imp, d / "notes", *imp_opts], 13, "not empty"),
    ]


# HOOK (edgereg run): run's output checks belong to another branch. Once
# edgereg/commands/run.py calls check_outputs these rows run with the others; until then
# they are skipped with that reason (add run's other outputs here: --csv, --video).
def _run_cases(d: Path) -> list[tuple[str, list[object], int, str]]:
    run = ["run", d / "model.tflite", "--source", d / "clip.avi", "--no-status"]
    return [
        ("run-json=MODEL", [*run, "--json", d / "model.tflite"], 13, "is the input"),
        ("run-json=--source", [*run, "--json", d / "clip.avi"], 13, "is the input"),
        ("run-csv=MODEL", [*run, "--csv", d / "model.tflite"], 13, "is the input"),
        ("run-video=--source", [*run, "--video", d / "clip.avi"], 13, "is the input"),
    ]


RUN_CHECKS_OUTPUTS = "check_outputs" in (REPO / "edgereg" / "commands" / "run.py").read_text()
IDS = [c[0] for c in _cases(Path("in"))]
RUN_IDS = [c[0] for c in _run_cases(Path("in"))]


def _check_refused(world, case: tuple[str, list[object], int, str]) -> None:
    top, d = world
    name, args, code, words = case
    before = snapshot(d)
    r = edgereg(*args, cwd=top)
    after = snapshot(d)
    assert r.returncode == code, f"{name}: exit {r.returncode}, want {code}\n{r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr and r.stderr.startswith("error: "), r.stderr[-2000:]
    assert words in r.stderr, f"{name}: {words!r} not in {r.stderr[-2000:]}"
    assert after == before, f"{name} changed its inputs: {set(after) ^ set(before)}"


@pytest.mark.parametrize("case", IDS)
def test_every_output_at_every_input_is_refused_and_inputs_stay_byte_identical(world, case):
    _check_refused(world, next(c for c in _cases(world[1]) if c[0] == case))


@pytest.mark.skipif(
    not RUN_CHECKS_OUTPUTS, reason="edgereg run does not call check_outputs yet (its branch)"
)
@pytest.mark.parametrize("case", RUN_IDS)
def test_run_outputs_at_its_inputs(world, case):
    _check_refused(world, next(c for c in _run_cases(world[1]) if c[0] == case))


def test_the_matrix_covers_every_command_that_writes():
    """A new writing command (or a command losing its rows) fails here."""
    from edgereg.cli import COMMANDS

    covered = {i.split("-")[0] for i in IDS + RUN_IDS}
    assert covered == {"train", "eval", "bench", "convert", "samples", "demo", "import", "run"}
    assert set(COMMANDS) - {"data"} <= covered | {"import"} and "data" in COMMANDS


# --------------------------------------------------------------------------- controls
def test_controls_fresh_outputs_work_and_own_outputs_may_be_replaced(world, tmp_path):
    """The same commands succeed with fresh outputs, and may replace what they wrote."""
    top, d = world
    before = snapshot(d)
    out = tmp_path / "out"
    bench = ["bench", d / "model.tflite", "--frames", 2, "--warmup", 0, "--no-startup"]
    for _ in range(2):  # the second time, the file is bench's own: replaced
        r = edgereg(*bench, "--json", out / "b.json", cwd=top)
        assert r.returncode == 0, r.stderr[-2000:]
    assert "full_ms" in json.loads((out / "b.json").read_text())
    ev = ["eval", d / "model.tflite", d / "data"]
    for _ in range(2):
        r = edgereg(*ev, "--json", out / "e.json", "--plots", out / "plots", cwd=top)
        assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "plots" / "examples.png").is_file()
    assert json.loads((out / "e.json").read_text())["n"] == 6
    for _ in range(2):  # sample sets carry their marker: a second make replaces them
        r = edgereg(
            "samples", "make", out / "s", "--task", "point", "--n", 2, "--n-val", 2, cwd=top
        )
        assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((out / "s" / "train").glob("*.jpg"))) == 2
    # bench's file is not eval's: eval will not take it over
    r = edgereg(*ev, "--json", out / "b.json", cwd=top)
    assert r.returncode == 13 and "not a file edgereg eval --json wrote" in r.stderr
    assert snapshot(d) == before
