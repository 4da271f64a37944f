"""Result sinks: JSON lines, CSV, annotated video (atomic), preview (headless-safe)."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from edge_runtime.draw import annotate
from edge_runtime.errors import OutputError
from edge_runtime.postprocess import Result
from edge_runtime.sinks import CsvSink, JsonlSink, PreviewSink, VideoSink, csv_columns
from edge_runtime.sources import Frame
from edge_runtime.spec import ModelSpec

SPECS = {
    "point": ModelSpec(task="point", input_height=32, input_width=32, num_keypoints=1),
    "keypoints": ModelSpec(task="keypoints", input_height=32, input_width=32, num_keypoints=2),
    "value": ModelSpec(task="value", input_height=32, input_width=32, value_range=(80.0, 350.0)),
    "class": ModelSpec(
        task="class", input_height=32, input_width=32, class_names=("empty", "full")
    ),
}


def logged(caplog) -> str:
    """What edgereg's loggers said since the last call (library code logs, not prints)."""
    text = "\n".join(r.getMessage() for r in caplog.records)
    caplog.clear()
    return text


def result_for(task: str) -> Result:
    if task == "point":
        return Result(
            task,
            np.array([0.25, 0.5], np.float32),
            {"points": np.array([[0.25, 0.5]]), "points_px": np.array([[16.0, 24.0]])},
            invoke_ms=1.5,
        )
    if task == "keypoints":
        pts = np.array([[0.1, 0.2], [0.9, 0.8]])
        return Result(
            task, pts.ravel(), {"points": pts, "points_px": pts * [64, 48]}, invoke_ms=1.5
        )
    if task == "value":
        return Result(task, np.array([0.5], np.float32), {"value": 215.0}, invoke_ms=1.5)
    return Result(
        task,
        np.array([0.3, 0.7], np.float32),
        {"label": "full", "probabilities": {"empty": 0.3, "full": 0.7}},
        invoke_ms=1.5,
    )


def frame(i: int, name: str | None = None) -> Frame:
    return Frame(np.zeros((48, 64, 3), np.uint8), i, 33.333 * i, name=name)


@pytest.mark.parametrize("task", list(SPECS))
def test_jsonl_schema(tmp_path, task):
    out = tmp_path / "r.jsonl"
    sink = JsonlSink(out)
    for i in range(3):
        sink.write(frame(i), result_for(task), latency_ms=2.0 + i)
    sink.close()
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    recs = [json.loads(s) for s in lines]
    assert [r["frame"] for r in recs] == [0, 1, 2]
    assert list(recs[0]) == ["frame", "t", "latency_ms", "file", "result"]
    assert recs[1]["t"] == pytest.approx(33.333) and recs[2]["latency_ms"] == 4.0
    assert recs[0]["result"] == json.loads(json.dumps(result_for(task).to_dict()))


def test_jsonl_overwrites_and_flushes_per_line(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text("old\nstuff\n")
    sink = JsonlSink(out)
    sink.write(frame(0), result_for("value"), 1.0)
    # visible to a reader before close: flushed per line
    assert len(out.read_text().splitlines()) == 1
    sink.close()


@pytest.mark.parametrize("task", list(SPECS))
def test_csv_columns_per_task(tmp_path, task):
    spec = SPECS[task]
    out = tmp_path / "r.csv"
    sink = CsvSink(out, spec)
    sink.write(frame(0, name="a,b.png"), result_for(task), 3.25)
    sink.close()
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == csv_columns(spec)
    row = rows[0]
    assert row["frame"] == "0" and row["latency_ms"] == "3.25" and row["file"] == "a,b.png"
    if task == "point":
        assert (row["x"], row["y"], row["x_px"], row["y_px"]) == ("0.25", "0.5", "16.0", "24.0")
    elif task == "keypoints":
        assert row["kp1_x"] == "0.9" and row["kp1_y_px"] == "38.4"
    elif task == "value":
        assert row["value"] == "215.0"
    else:
        assert row["label"] == "full" and row["p_full"] == "0.7" and row["p_empty"] == "0.3"


def test_video_sink_is_renamed_only_when_closed(tmp_path):
    out = tmp_path / "ann.avi"
    out.write_bytes(b"earlier video")
    sink = VideoSink(out, fps=10)
    for i in range(5):
        sink.write_image(np.full((48, 64, 3), 40 * i, np.uint8))
    # while writing: the earlier file is untouched, the new one lives under a hidden name
    assert out.read_bytes() == b"earlier video"
    assert sink.tmp.name.startswith(".ann.") and sink.tmp.exists()
    sink.close()
    assert not sink.tmp.exists()
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 5


def test_video_sink_abort_keeps_earlier_file(tmp_path):
    out = tmp_path / "ann.mp4"
    out.write_bytes(b"earlier video")
    sink = VideoSink(out, fps=10)
    sink.write_image(np.zeros((48, 64, 3), np.uint8))
    sink.abort()
    assert out.read_bytes() == b"earlier video"
    assert [p.name for p in tmp_path.iterdir()] == ["ann.mp4"]


def test_video_sink_refuses_unknown_suffix(tmp_path):
    with pytest.raises(OutputError, match=r"ann\.gif"):
        VideoSink(tmp_path / "ann.gif")


def test_preview_headless_never_fails(monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    p = PreviewSink()
    p.show(np.zeros((8, 8, 3), np.uint8))
    p.close()
    assert not p.enabled and "preview is off" in logged(caplog)


def test_preview_with_display_but_no_gui_support_turns_itself_off(monkeypatch, caplog):
    monkeypatch.setenv("DISPLAY", ":99")  # nothing listens there; headless OpenCV anyway
    p = PreviewSink()
    assert p.enabled
    p.show(np.zeros((8, 8, 3), np.uint8))
    p.close()
    if not p.enabled:
        assert "preview is off" in logged(caplog)


@pytest.mark.parametrize("task", list(SPECS))
def test_annotate_draws_without_touching_the_input(task):
    img = np.full((48, 64, 3), 90, np.uint8)
    out = annotate(img, result_for(task), SPECS[task], roi=(2, 2, 40, 30), status="10 fps")
    assert (img == 90).all()
    assert out.shape == img.shape and (out != 90).any()
    if task == "point":
        assert out[24, 16].tolist() == [0, 0, 255]  # red dot at the point
