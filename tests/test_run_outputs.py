"""The run side of "never destroy what the user gave", the frame-loop API and signals.

Real tiny model, real videos written by OpenCV, real `edgereg run` subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from models import make_tflite, spec_for
from subproc import ENV, edgereg
from test_run import H, W, decode_all, dot_frame, json_lines, write_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("outputs")
    model = make_tflite(d, "point", arch="centroid")
    video = write_video(d / "dots.avi", [dot_frame(i) for i in range(12)])
    return d, model, video


def tree(root: Path) -> dict[str, str]:
    """Every file under root with its content hash: proof that nothing changed."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- clashes
CLASHES = {
    # name: (source, extra args, option named in the message)
    "json over the input video": ("in.avi", ["--json", "in.avi"], "--json"),
    "csv over the model": ("in.avi", ["--csv", "model.tflite"], "--csv"),
    "json over the input image": ("imgs/im0.png", ["--json", "imgs/im0.png"], "--json"),
    "json and csv on one file": ("in.avi", ["--json", "out.txt", "--csv", "out.txt"], "--csv"),
    "json and csv both on stdout": ("in.avi", ["--json", "-", "--csv", "-"], "standard output"),
    "video into the image folder": ("imgs", ["--video", "imgs/ann.avi"], "--video"),
    "csv beside a glob's images": ("imgs/*.png", ["--csv", "imgs/out.csv"], "--csv"),
    "json over the spec file": ("in.avi", ["--spec", "spec.json", "--json", "spec.json"], "--json"),
    "spool folder holding the input": (
        "imgs/*.png",
        ["--mqtt", "mqtt://127.0.0.1:1/t", "--mqtt-spool", "."],
        "--mqtt-spool",
    ),
}


@pytest.mark.parametrize("case", list(CLASHES))
def test_outputs_over_inputs_or_each_other_are_refused_and_nothing_is_written(
    assets, tmp_path, case
):
    d, model, video = assets
    shutil.copy(video, tmp_path / "in.avi")
    shutil.copy(model, tmp_path / "model.tflite")
    (tmp_path / "spec.json").write_text(spec_for(model).to_json())
    (tmp_path / "imgs").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "imgs" / f"im{i}.png"), dot_frame(i))
    before = tree(tmp_path)
    source, args, named = CLASHES[case]
    r = edgereg("run", "model.tflite", "--source", source, *args, cwd=tmp_path)
    assert r.returncode == 13, r.stderr
    assert r.stderr.startswith("error: ") and named in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
    assert tree(tmp_path) == before  # not one byte written, nothing created


def test_tta_without_test_time_transforms_is_refused(assets, tmp_path):
    d, model, video = assets
    r = edgereg("run", model, "--source", video, "--tta", "--json", tmp_path / "o.jsonl",
                cwd=tmp_path)  # fmt: skip
    assert r.returncode == 2
    assert "--tta would do nothing" in r.stderr and "--invariant" in r.stderr
    assert not (tmp_path / "o.jsonl").exists()
    # the same model with a spec that declares an invariance: --tta runs (and averages)
    spec = json.loads(spec_for(model).to_json())
    spec["invariances"] = ["hflip"]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    r = edgereg("run", model, "--spec", tmp_path / "spec.json", "--source", video, "--tta",
                cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(json_lines(r.stdout)) == 12


@pytest.mark.slow
def test_tta_refusal_is_the_same_in_run_eval_and_bench(assets, tmp_path):
    d, model, video = assets
    said = {}
    for cmd, args in (
        ("run", ["--source", video]),
        ("eval", [tmp_path / "no_data_needed"]),
        ("bench", ["--frames", "1", "--no-startup"]),
    ):
        r = edgereg(cmd, model, *args, "--tta", cwd=tmp_path, timeout=300)
        assert r.returncode == 2, (cmd, r.stderr)
        assert "Traceback" not in r.stderr and r.stdout == ""
        said[cmd] = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert said["run"] == said["eval"] == said["bench"]
    assert len(said["run"]) == 1 and "--tta would do nothing" in said["run"][0]


# --------------------------------------------------------------------------- signals
def _silent_broker():
    from broker import SilentServer

    return SilentServer()


@pytest.mark.parametrize(
    "first, spool", [(signal.SIGTERM, True), (signal.SIGINT, False)], ids=["term-int", "int-int"]
)
def test_a_second_signal_while_stopping_abandons_cleanly_and_says_what_was_lost(
    assets, tmp_path, first, spool
):
    """SIGTERM or Ctrl-C starts a clean stop, which waits (up to 60 s) for a broker that
    never answers; Ctrl-C then stops the waiting: every output is finished or abandoned,
    stderr says what was kept and what was lost, and no hidden temp file is left."""
    pytest.importorskip("paho.mqtt.client")
    d, model, video = assets
    server = _silent_broker()
    args = ["--mqtt", f"mqtt://127.0.0.1:{server.port}/t", "--mqtt-drain", 60]
    if spool:
        args += ["--mqtt-spool", tmp_path / "spool", "--mqtt-queue", 50]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgereg", "run", str(model), "--source", str(video), "--loop"]
        + ["--json", "o.jsonl", "--video", "ann.avi", "--no-status", *map(str, args)],
        cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    err = ""
    try:
        _wait_for_lines(tmp_path / "o.jsonl", 50)
        proc.send_signal(first)
        err = _read_until(proc, "queued results")  # the drain has started: it would wait
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=30)  # far less than the 60 s drain
        err += rest
    finally:
        server.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGINT a second time: not waiting any more" in err
    n = len(json_lines((tmp_path / "o.jsonl").read_text()))
    assert f"json o.jsonl: {n} lines (complete)" in err
    assert f"video ann.avi: {n} frames (complete)" in err
    assert len(decode_all(tmp_path / "ann.avi")) == n
    if spool:
        assert "50 not delivered: kept in" in err
        assert len(list((tmp_path / "spool").glob("*.json"))) == 50
    else:
        assert "not delivered: lost (no --mqtt-spool)" in err
    assert [p.name for p in tmp_path.rglob(".*") if p.name != ".edgereg-mqtt-spool"] == []


def _wait_for_lines(path: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.05)
    pytest.fail("edgereg run wrote no results")


def _read_until(proc: subprocess.Popen, text: str, timeout: float = 30) -> str:
    got = ""
    deadline = time.monotonic() + timeout
    while text not in got:
        line = proc.stderr.readline()
        if not line or time.monotonic() > deadline:
            pytest.fail(f"never saw {text!r} on stderr:\n{got[-2000:]}")
        got += line
    return got


# --------------------------------------------------------------------------- the video check
@pytest.mark.parametrize("suffix", [".avi", ".mkv", ".mp4", ".mov", ".m4v"])
def test_video_check_accepts_whole_files_and_catches_any_cut(tmp_path, suffix):
    from edge_runtime.sinks import VideoSink
    from edge_runtime.videocheck import incomplete_reason

    rng = np.random.default_rng(0)
    sink = VideoSink(tmp_path / f"v{suffix}", fps=20)
    for _ in range(40):
        sink.write_image(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    sink.close()
    whole = (tmp_path / f"v{suffix}").read_bytes()
    assert incomplete_reason(tmp_path / f"v{suffix}") is None
    for keep in (len(whole) - 1, len(whole) - 100, len(whole) // 2, 200):
        cut = tmp_path / f"cut{keep}{suffix}"
        cut.write_bytes(whole[:keep])
        assert incomplete_reason(cut) is not None, (suffix, keep)


def test_video_close_never_reads_the_video_back(tmp_path, monkeypatch):
    """The completeness check reads a few header bytes; it never decodes or demuxes the
    video (which cost as much as the video is long)."""
    from edge_runtime.sinks import VideoSink

    sink = VideoSink(tmp_path / "v.avi", fps=20)
    for i in range(30):
        sink.write_image(np.full((48, 64, 3), 8 * i, np.uint8))

    def no_reading(*a, **k):
        raise AssertionError("VideoSink.close opened the video for reading")

    monkeypatch.setattr(cv2, "VideoCapture", no_reading)
    sink.close()
    monkeypatch.undo()
    assert len(decode_all(tmp_path / "v.avi")) == 30


# --------------------------------------------------------------------------- the API
def test_run_pipeline_api_draws_once_and_finishes_every_sink(assets, tmp_path):
    from edge_runtime.pipeline import run_pipeline
    from edge_runtime.predictor import Predictor
    from edge_runtime.sinks import JsonlSink, Sink, VideoSink
    from edge_runtime.sources import open_source

    d, model, video = assets

    class Collect(Sink):  # a user's own sink through the public interface
        label = "collect"
        needs_image = True

        def __init__(self) -> None:
            self.images: list[np.ndarray] = []

        def write(self, frame, result, latency_ms, image=None) -> None:
            self.images.append(image)
            if len(self.images) == 5:
                self.stop_request = "collected enough"

    collect, logged = Collect(), []
    with Predictor.create_from_model_path(model, color_order="BGR") as p:
        src = open_source(str(video))
        sinks = [JsonlSink(tmp_path / "o.jsonl"), VideoSink(tmp_path / "a.avi", src.fps), collect]
        summary = run_pipeline(p, src, sinks, log=logged.append)
    assert summary.frames == 5 and summary.why == "collected enough"
    assert collect.state == "complete" and sinks[1].state == "complete"
    assert len(json_lines((tmp_path / "o.jsonl").read_text())) == 5
    video_frames = decode_all(tmp_path / "a.avi")
    assert len(video_frames) == 5 and video_frames[0].shape == (H, W, 3)
    # one annotated image per frame, shared by the sinks that want it (not the raw frame)
    assert all(img is not None and img.shape == (H, W, 3) for img in collect.images)
    assert not np.array_equal(collect.images[0], dot_frame(0))
    assert any("json" in line and "5 lines (complete)" in line for line in logged)


def test_an_error_in_the_loop_abandons_the_video_and_keeps_the_lines(assets, tmp_path):
    from edge_runtime.errors import OutputError
    from edge_runtime.pipeline import run_pipeline
    from edge_runtime.predictor import Predictor
    from edge_runtime.sinks import JsonlSink, Sink, VideoSink
    from edge_runtime.sources import open_source

    d, model, video = assets
    (tmp_path / "a.avi").write_bytes(b"earlier video")

    class Failing(Sink):
        label = "failing"

        def write(self, frame, result, latency_ms, image=None) -> None:
            if frame.index == 3:
                raise OutputError("failing: disk gone")

    logged: list[str] = []
    with Predictor.create_from_model_path(model, color_order="BGR") as p:
        src = open_source(str(video))
        sinks = [JsonlSink(tmp_path / "o.jsonl"), VideoSink(tmp_path / "a.avi", src.fps), Failing()]
        with pytest.raises(OutputError, match="disk gone"):
            run_pipeline(p, src, sinks, log=logged.append)
    assert (tmp_path / "a.avi").read_bytes() == b"earlier video"
    assert [r["frame"] for r in json_lines((tmp_path / "o.jsonl").read_text())] == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.avi", "o.jsonl"]
    assert any("abandoned after 4 frames" in line for line in logged)
