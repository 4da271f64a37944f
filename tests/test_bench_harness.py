"""`python -m bench --quick`: the benchmark harness runs end to end on tiny data (CI mode)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_quick_harness_runs(tmp_path):
    out = tmp_path / "bench"
    doc_before = (
        (REPO / "docs" / "benchmarks.md").read_bytes()
        if (REPO / "docs" / "benchmarks.md").exists()
        else None
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--tasks", "point", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    (task,) = res["tasks"]
    assert task["task"] == "point"
    assert {v["variant"] for v in task["conversion"]["variants"]} == {"fp32", "int8"}
    assert task["runtime"]["int8"]["bare_invoke_ms"]["p50"] > 0
    hr = task["handrolled"]["metrics"]
    assert hr["n"] == 12 and hr["mean_error_px"] > 0
    section = (out / "benchmarks_section.md").read_text()
    for title in ("Accuracy per task", "Quantization", "Device runtime", "untouched test split"):
        assert title in section
    # the test split: another seed, never seen by training; Keras and int8 scored on it
    test = task["test"]
    assert test["keras"]["n"] == 12 and test["int8"]["n"] == 12
    assert test["keras"]["mean_error_px"] > 0
    assert test["se"]["int8"] > 0  # int8's change on test comes with its standard error
    val_names = {p.name for p in (out / "data" / "point" / "val").glob("*.jpg")}
    test_dir = out / "data" / "point-test" / "val"
    assert not val_names & {p.name for p in test_dir.glob("*.jpg")} or (
        (out / "data" / "point" / "val" / "labels.csv").read_text()
        != (test_dir / "labels.csv").read_text()
    )
    row = next(ln for ln in section.splitlines() if ln.startswith("| point | mean_error_px |"))
    assert f"{test['keras']['mean_error_px']:.4g}" in row
    assert f"± {100 * test['se']['int8']:.1f}" in row
    # quick mode never rewrites the published numbers
    after = (
        (REPO / "docs" / "benchmarks.md").read_bytes()
        if (REPO / "docs" / "benchmarks.md").exists()
        else None
    )
    assert after == doc_before
