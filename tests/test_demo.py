"""`edgereg demo --quick`: the whole pipeline, as real subprocesses, on tiny sample data,
with its messages going to a FILE (as in a log): no third-party noise, no progress floods."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[1]
NOISE = (
    "absl::InitializeLog",
    "oneDNN custom operations",
    "This TensorFlow binary is optimized",
    "cpu_feature_guard",
    "XNNPACK delegate",
    "I0000 ",
    "W0000 ",
)


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "EDGEREG_VERB"))}
    env["PYTHONPATH"] = str(REPO)
    with (tmp_path / "demo.log").open("w") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "edgereg", "demo", "--quick", "--out", str(out)],
            stdout=subprocess.PIPE, stderr=log, text=True, timeout=1200, cwd=tmp_path, env=env,
        )  # fmt: skip
    err = (tmp_path / "demo.log").read_text()
    assert proc.returncode == 0, proc.stdout[-3000:] + err[-3000:]
    # the log: our messages only, one line per thing said
    assert not [ln for ln in err.splitlines() if any(n in ln for n in NOISE)], err
    assert "\r" not in err  # no progress-bar redraws in a file
    assert len(err.splitlines()) < 150, err
    # the table: Keras, two verified .tflite files, and two device runs on the video
    table = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ")]
    assert len(table) == 1 + 5, proc.stdout
    assert "via `edgereg run` on the video" in proc.stdout
    for variant in ("fp32", "int8"):
        lines = (out / f"run_{variant}.jsonl").read_text().splitlines()
        assert len(lines) == 12  # one per held-out frame
        recs = [json.loads(ln) for ln in lines]
        assert [r["frame"] for r in recs] == list(range(12))
        assert all(0.0 <= c <= 1.0 for r in recs for c in r["result"]["points"][0])
    cap = cv2.VideoCapture(str(out / "annotated.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12
    html = (out / "report.html").read_text()
    tags: list[tuple[str, dict]] = []
    parser = HTMLParser()
    parser.handle_starttag = lambda t, a: tags.append((t, dict(a)))  # type: ignore[method-assign]
    parser.feed(html)
    names = [t for t, _ in tags]
    assert names.count("table") >= 4 and "data:image/png;base64" in html
    assert ("a", {"href": "annotated.avi"}) in tags  # a link to the video
    assert any(t == "figure" and a.get("class") == "still" for t, a in tags)
    assert 'class="device"' in html and "run_int8.jsonl" in html
    assert (out / "run" / "export" / "model_int8.tflite").stat().st_size > 0
