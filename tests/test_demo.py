"""`edgereg demo --quick`: the whole pipeline, as real subprocesses, on tiny sample data."""

from __future__ import annotations

import json

import cv2
import pytest


@pytest.mark.slow
def test_demo_quick_end_to_end(run_cli, tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--quick", "--out", out, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
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
    assert "<table>" in html and "data:image/png;base64" in html
    assert (out / "run" / "export" / "model_int8.tflite").stat().st_size > 0
