"""`--json OUT|-` means the same in every command; `-q`/`-v` reach every subcommand;
`convert --edgetpu` implies integer input/output."""

from __future__ import annotations

import json

import cv2
import numpy as np


def tiny_point_dataset(root):
    root.mkdir()
    rows = ["image,x,y"]
    for i in range(4):
        img = np.full((40, 48, 3), 40 * i, np.uint8)
        cv2.imwrite(str(root / f"{i}.png"), img)
        rows.append(f"{i}.png,0.5,0.25")
    rows.append("3.png,1.5,0.25")  # row 6: x outside [0, 1]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_data_check_json_to_stdout_is_only_json(run_cli, tmp_path):
    data = tiny_point_dataset(tmp_path / "d")
    r = run_cli("data", "check", data, "--task", "point", "--json", "-")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)  # the whole of stdout is one JSON document
    assert doc["ok"] is False and doc["rows"] == 5 and doc["task"] == "point"
    assert any(p["row"] == 6 and p["field"] for p in doc["problems"]), doc["problems"]
    assert "stats" in doc and "warnings" in doc
    # a file: the JSON there, the human report on stdout as without --json
    r = run_cli("data", "check", data, "--task", "point", "--json", tmp_path / "c.json")
    assert r.returncode == 1
    assert "problem(s)" in r.stdout
    assert json.loads((tmp_path / "c.json").read_text()) == doc


def test_quiet_and_verbose_reach_subcommands(run_cli, tmp_path):
    data = tiny_point_dataset(tmp_path / "d")
    (data / "labels.csv").write_text("image,x,y\n0.png,0.5,0.25\n1.png,0.5,0.5\n")
    for args in (["-q", "data", "check"], ["data", "check", "-q"]):
        r = run_cli(*args, data, "--task", "point")
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
    r = run_cli("data", "check", data, "--task", "point", "-v")
    assert r.returncode == 0, r.stderr


def test_edgetpu_implies_integer_io(run_cli, tmp_path):
    from edgereg.commands.convert import edgetpu_io

    assert edgetpu_io(None, False) == "float"
    assert edgetpu_io(None, True) == "uint8"
    assert edgetpu_io("int8", True) == "int8"
    r = run_cli("convert", tmp_path / "run", "--edgetpu", "--io", "float")
    assert r.returncode == 2
    assert "--edgetpu needs integer input/output" in r.stderr
    r = run_cli("convert", "--help")
    assert "implies integer input/output" in " ".join(r.stdout.split())
