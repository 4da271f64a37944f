"""The README's Python example runs as written (extracted from the README, so it cannot rot)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
from models import make_tflite
from test_run import colour_frame, write_video

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text())
    assert len(blocks) == 1 and "run_pipeline" in blocks[0]
    assert "Predictor.create_from_options" in blocks[0]
    model = make_tflite(tmp_path, "value")
    model.rename(tmp_path / "model.tflite")
    write_video(tmp_path / "clip.avi", [colour_frame(i) for i in range(5)])
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})  # noqa: S102 (our own README)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["result"]["task"] == "value"
    assert out.getvalue().startswith("5 frames, ")
    assert "value {'task': 'value', 'value':" in out.getvalue()


def test_readme_installs_from_this_repository():
    text = README.read_text()
    assert "pip wheel ." in text and "Dockerfile.arm" in text
    assert "pip install edgereg\n" not in text and "pip install edgereg`" not in text
