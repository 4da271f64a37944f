"""The demo's report.html: tables (not <pre> text), a still of the annotated video and a
link to it, the device's lines, and nothing wider than the page in a real headless Chromium."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from chromium import Chromium, find_chromium

from edgereg.demo_report import write_html


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def fake_demo(root: Path) -> tuple[Path, Path, Path]:
    """A demo output folder with every part write_html reads (contents made here)."""
    run = root / "run"
    (run / "plots").mkdir(parents=True)
    (run / "export").mkdir()
    ok, png = cv2.imencode(".png", np.full((60, 80, 3), 200, np.uint8))
    (run / "plots" / "examples.png").write_bytes(png.tobytes())
    (run / "summary.txt").write_text(
        "edgereg train: point on data\nimages: 24 train, 12 validation\n\nmetric  model\n"
    )
    (run / "metrics.json").write_text(
        json.dumps({"mean_error_px": 5.2, "baseline_mean_error_px": 40.1})
    )
    wide = " | ".join(f"a rather long column heading number {i}" for i in range(12))
    (run / "export" / "report.md").write_text(
        f"# Conversion report: run\n\nText with `code`.\n\n| {wide} |\n|{'---|' * 12}\n"
        f"| {' | '.join(['`model_int8_edgetpu.tflite`'] * 12)} |\n\n## Notes\n- one note\n"
    )
    video = root / "annotated.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for i in range(3):
        w.write(np.full((48, 64, 3), 60 * i, np.uint8))
    w.release()
    jsonl = root / "run_int8.jsonl"
    rec = {"frame": 0, "t": 0.0, "latency_ms": 1.2, "file": None,
           "result": {"task": "point", "points": [[0.5, 0.25]], "points_px": [[32.0, 12.0]],
                      "frame_width": 64, "frame_height": 48, "invoke_ms": 0.5, "total_ms": 0.9}}  # fmt: skip
    jsonl.write_text("".join(json.dumps({**rec, "frame": i}) + "\n" for i in range(5)))
    return run, video, jsonl


def test_report_structure_and_width(tmp_path):
    run, video, jsonl = fake_demo(tmp_path)
    table = "| model | err |\n|---|---|\n| Keras | 5.2 |\n| int8 | 5.3 |"
    out = write_html(tmp_path / "report.html", "point", run, table, [], video, jsonl)
    text = out.read_text()
    p = Tags()
    p.feed(text)
    tags = [t for t, _ in p.tags]
    assert "pre" not in tags or text.count("<pre") == 1  # only the raw device lines
    assert tags.count("table") >= 4  # results, device lines, training metrics, conversion
    assert any(t == "a" and a.get("href") == "annotated.avi" for t, a in p.tags)
    imgs = [a for t, a in p.tags if t == "img"]
    assert any("video" in a.get("alt", "") for a in imgs)  # the still
    assert len(imgs) == 2
    assert text.count("&quot;frame_width&quot;") == 4  # 4 lines in <details>
    assert "&quot;points&quot;: [[0.5, 0.25]]" in text

    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium not installed (scripts/ci-system-deps.sh installs it)")
    browser = Chromium(binary, tmp_path / "profile")
    try:
        browser.open(out.as_uri())
        browser.wait_for("document.readyState === 'complete'")
        page_w = browser.evaluate("document.documentElement.scrollWidth")
        view_w = browser.evaluate("window.innerWidth")
        still_w = browser.evaluate("document.querySelector('figure.still img').clientWidth")
        browser.screenshot(tmp_path / "report.png")
    finally:
        browser.close()
    assert page_w <= view_w  # the wide conversion table scrolls inside its box
    assert still_w >= 300  # the 64-px still is shown large enough to see
