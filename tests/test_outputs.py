"""The one output rule (edge_runtime/outputs.py): resolved paths, every input, every output."""

from __future__ import annotations

import os

import pytest

from edge_runtime.errors import ClashError
from edge_runtime.outputs import check_outputs


def test_an_output_that_is_an_input_file_is_refused_even_through_a_symlink(tmp_path):
    src = tmp_path / "in.avi"
    src.write_bytes(b"video")
    link = tmp_path / "same.avi"
    link.symlink_to(src)
    for out in (src, link, tmp_path / "sub" / ".." / "in.avi"):
        with pytest.raises(ClashError, match="--source"):
            check_outputs([("--source", src)], [("--json", out)])
    assert src.read_bytes() == b"video"


def test_relative_paths_are_resolved_against_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "a.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ClashError):
        check_outputs([("--source", str(tmp_path / "a.jpg"))], [("--json", "a.jpg")])


def test_outputs_inside_or_around_input_folders_are_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ClashError, match="inside the input folder"):
        check_outputs(
            [], [], input_folders=[("DATA_DIR", data)], output_folders=[("--out", data / "run")]
        )
    with pytest.raises(ClashError, match="contains the input folder"):
        check_outputs(
            [], [], input_folders=[("DATA_DIR", data)], output_folders=[("--out", tmp_path)]
        )
    check_outputs(
        [], [], input_folders=[("DATA_DIR", data)], output_folders=[("--out", tmp_path / "run")]
    )


def test_outputs_may_not_clash_with_each_other_and_stdout_has_one_user(tmp_path):
    with pytest.raises(ClashError, match="standard output"):
        check_outputs([], [("--json", "-"), ("--csv", "-")])
    with pytest.raises(ClashError, match="same place"):
        check_outputs([], [("--json", tmp_path / "r.txt"), ("--csv", tmp_path / "r.txt")])
    check_outputs([], [("--json", "-"), ("--csv", tmp_path / "r.csv")])
    assert ClashError.exit_code == 13 and os.path.exists(tmp_path)
