"""`edgereg run` end to end: real tiny models, real videos made with OpenCV, real subprocesses."""

from __future__ import annotations

import csv
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from models import make_tflite

N = 12  # frames per test video
W, H = 64, 48  # frame size (not square, not the model's 32x32: pixel mapping matters)


def dot_frame(i: int) -> np.ndarray:
    """Black frame, a red dot at x = 6 + 4i, y = 12 + 2i; green and blue dots elsewhere."""
    img = np.zeros((H, W, 3), np.uint8)
    cv2.circle(img, (6 + 4 * i, 12 + 2 * i), 3, (0, 0, 255), -1)  # BGR red
    cv2.circle(img, (W - 8, 8 + 2 * i), 3, (0, 255, 0), -1)
    cv2.circle(img, (10 + 3 * i, H - 8), 3, (255, 0, 0), -1)
    return img


def colour_frame(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    img = np.full((H, W, 3), (20 * i) % 256, np.uint8)
    img[::4, ::4] = rng.integers(0, 256, img[::4, ::4].shape, dtype=np.uint8)
    return img


def write_video(path: Path, frames: list[np.ndarray], fps: float = 20.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    models = {
        "point": make_tflite(d, "point", arch="centroid"),
        "keypoints": make_tflite(d, "keypoints", arch="centroid"),
        "value": make_tflite(d, "value", variant="int8", io="uint8"),
        "class": make_tflite(d, "class"),
    }
    videos = {
        "dots": write_video(d / "dots.avi", [dot_frame(i) for i in range(N)]),
        "colours": write_video(d / "colours.avi", [colour_frame(i) for i in range(N)]),
    }
    return d, models, videos


PROBE = """
import sys, runpy
sys.argv = ["edgereg"] + sys.argv[1:]
try:
    runpy.run_module("edgereg", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def edgereg(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """A real `edgereg ...` subprocess that also reports whether it imported TensorFlow."""
    return subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("task", ["point", "keypoints", "value", "class"])
def test_run_video_one_correct_json_line_per_frame(assets, task):
    d, models, videos = assets
    video = videos["dots" if task in ("point", "keypoints") else "colours"]
    out = edgereg("run", models[task], "--source", video, "--json", "-", "--raw", cwd=d)
    assert out.returncode == 0, out.stderr
    assert "HEAVY=\n" in out.stderr + "\n", "edgereg run imported TensorFlow"
    recs = json_lines(out.stdout)  # stdout is JSON only: the status line is on stderr
    assert [r["frame"] for r in recs] == list(range(N))
    assert [r["t"] for r in recs] == pytest.approx([i * 50.0 for i in range(N)], abs=1)
    assert all(r["file"] is None and r["latency_ms"] > 0 for r in recs)
    assert all(r["result"]["task"] == task for r in recs)
    assert f"{N} frames" in out.stderr

    # the same decoded frames through the in-process Predictor give the same results
    from edge_runtime.predictor import Predictor

    with Predictor.create_from_model_path(models[task], color_order="BGR") as p:
        expected = [p.predict(f).to_dict(raw=True) for f in decode_all(video)]
    assert len(expected) == N
    for r, e in zip(recs, expected, strict=True):
        assert r["result"]["raw"] == pytest.approx(e["raw"], abs=1e-6)
        for key in ("points", "points_px", "value", "label", "probabilities"):
            assert (key in r["result"]) == (key in e)
            if key in e and key != "label":
                assert np.allclose(
                    np.asarray(
                        r["result"][key]
                        if key != "probabilities"
                        else list(r["result"][key].values())
                    ),
                    np.asarray(e[key] if key != "probabilities" else list(e[key].values())),
                    atol=1e-5,
                )
        if "label" in e:
            assert r["result"]["label"] == e["label"]

    if task == "point":  # a known answer: the red dot's centre, in frame pixels
        got = np.array([r["result"]["points_px"][0] for r in recs])
        want = np.array([(6 + 4 * i + 0.5, 12 + 2 * i + 0.5) for i in range(N)])
        assert np.abs(got - want).max() < 2.0
    if task == "keypoints":  # red, green, blue dots are keypoints 0, 1, 2
        got = np.array([r["result"]["points_px"] for r in recs])
        assert np.abs(got[:, 1, 0] - (W - 8 + 0.5)).max() < 2.0
        assert np.abs(got[:, 2, 1] - (H - 8 + 0.5)).max() < 2.0
    if task == "value":
        assert all(80.0 <= r["result"]["value"] <= 350.0 for r in recs)
    if task == "class":
        for r in recs:
            probs = r["result"]["probabilities"]
            assert set(probs) == {"empty", "full"} and sum(probs.values()) == pytest.approx(1)
            assert r["result"]["label"] == max(probs, key=probs.get)


def test_run_csv_video_and_max_frames(assets, tmp_path):
    d, models, videos = assets
    out = edgereg(
        "run",
        models["point"],
        "--source",
        videos["dots"],
        "--csv",
        tmp_path / "out.csv",
        "--video",
        tmp_path / "ann.avi",
        "--max-frames",
        7,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""  # an output was given, so no JSON on stdout
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert [int(r["frame"]) for r in rows] == list(range(7))
    assert abs(float(rows[3]["x_px"]) - 18.5) < 2.0
    ann = decode_all(tmp_path / "ann.avi")
    assert len(ann) == 7 and ann[0].shape == (H, W, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.avi", "out.csv"]  # no temp left


def test_run_image_folder_and_glob(assets, tmp_path):
    d, models, _ = assets
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"im{i}.png"), dot_frame(i))
    out = edgereg("run", models["point"], "--source", folder, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    recs = json_lines(out.stdout)
    assert [Path(r["file"]).name for r in recs] == [f"im{i}.png" for i in range(4)]
    assert all(r["t"] is None for r in recs)
    for i, r in enumerate(recs):  # PNG is lossless: the dot is exactly where drawn
        assert abs(r["result"]["points_px"][0][0] - (6 + 4 * i + 0.5)) < 1.5
    out = edgereg("run", models["point"], "--source", "imgs/im[23].png", cwd=tmp_path)
    assert [Path(r["file"]).name for r in json_lines(out.stdout)] == ["im2.png", "im3.png"]


def test_run_bad_source_is_a_clear_error(assets, tmp_path):
    d, models, _ = assets
    out = edgereg("run", models["point"], "--source", "missing.mp4", cwd=tmp_path)
    assert out.returncode == 11
    assert "error: missing.mp4: no such file" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("earlier", [True, False])
def test_sigkill_during_video_output(assets, tmp_path, earlier):
    """kill -9 mid-run: no (partial) video under the final name, an earlier one intact,
    and every JSON line written is whole."""
    d, models, videos = assets
    final = tmp_path / "ann.avi"
    if earlier:
        final.write_bytes(b"the earlier, complete video")
    jsonl = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgereg", "run", str(models["point"]), "--source"]
        + [str(videos["dots"]), "--loop", "--json", str(jsonl), "--video", str(final)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if jsonl.exists() and jsonl.read_bytes().count(b"\n") >= 3 * N:
                break
            time.sleep(0.05)
        else:
            pytest.fail("edgereg run wrote no results")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    if earlier:
        assert final.read_bytes() == b"the earlier, complete video"
    else:
        assert not final.exists()
    parts = [p for p in tmp_path.iterdir() if p.name.startswith(".ann.")]
    assert len(parts) == 1 and parts[0].name.endswith(".part.avi")  # the unfinished one
    data = jsonl.read_bytes()
    assert data.endswith(b"\n")  # lines are written whole, in one write each
    recs = json_lines(data.decode())
    assert len(recs) >= 3 * N
    assert [r["frame"] for r in recs] == list(range(len(recs)))


class _FlakyVideoServer(http.server.ThreadingHTTPServer):
    """A REAL HTTP video stream on localhost whose camera goes away: request 1 sends only
    the first part of the file and drops the connection (the stream dies mid-way), the next
    ``down`` requests are refused with 503 (camera offline), later requests get it all.
    With ``hang=True`` request 1 stops sending but keeps the connection open (a stall)."""

    daemon_threads = True

    def __init__(self, video: bytes, cut: int, down: int, hang: bool = False) -> None:
        self.video, self.cut, self.down, self.requests = video, cut, down, 0
        self.hang, self.release = hang, threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        srv: _FlakyVideoServer = self.server  # type: ignore[assignment]
        srv.requests += 1
        n = srv.requests
        if 1 < n <= 1 + srv.down:
            self.send_error(503, "camera offline")
            return
        body = srv.video[: srv.cut] if n == 1 else srv.video
        self.send_response(200)
        self.send_header("Content-Type", "video/x-msvideo")
        # a hanging camera announced the whole video and then stopped sending
        self.send_header("Content-Length", str(len(srv.video if srv.hang else body)))
        self.end_headers()
        self.wfile.write(body)
        if n == 1 and srv.hang:
            self.wfile.flush()
            srv.release.wait(30)  # the camera stops sending; the connection stays open

    def log_message(self, *args) -> None:
        pass


def test_run_stream_lost_mid_way_reconnects_and_continues(assets, tmp_path):
    d, models, videos = assets
    data = videos["dots"].read_bytes()
    server = _FlakyVideoServer(data, cut=len(data) // 2, down=2)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cam.avi"
    try:
        out = edgereg(
            "run",
            models["point"],
            "--source",
            url,
            "--every-frame",  # queue frames: none dropped, so the sequence is exact
            "--max-frames",
            N + 8,
            cwd=tmp_path,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert out.returncode == 0, out.stderr
    recs = json_lines(out.stdout)
    assert [r["frame"] for r in recs] == list(range(N + 8))
    xs = [round((r["result"]["points_px"][0][0] - 6.5) / 4) for r in recs]
    k = xs.index(0, 1)  # where the reopened stream starts again at frame 0
    assert 1 <= k < N and xs[:k] == list(range(k))
    # then the whole file (the stream ends after it, which is one more loss and reopening)
    assert xs[k:] == [j % N for j in range(N + 8 - k)]
    assert server.requests >= 4
    err = out.stderr
    assert "read failed" in err
    assert "attempt 1 failed" in err and "attempt 2 failed" in err
    assert "reconnected after 3 attempt(s)" in err


def test_run_stalled_stream_is_detected_and_reopened(assets, tmp_path):
    d, models, videos = assets
    data = videos["dots"].read_bytes()
    server = _FlakyVideoServer(data, cut=len(data) // 2, down=0, hang=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cam.avi"
    try:
        out = edgereg(
            "run",
            models["point"],
            "--source",
            url,
            "--every-frame",
            "--stall-timeout",
            2,
            "--max-frames",
            N + 1,
            cwd=tmp_path,
        )
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
    assert out.returncode == 0, out.stderr
    recs = json_lines(out.stdout)
    assert [r["frame"] for r in recs] == list(range(N + 1))
    assert "stalled: no frame for 2 s" in out.stderr  # the watchdog, before FFmpeg's timeout
    assert "reconnected after 1 attempt(s)" in out.stderr
    assert server.requests >= 2


def test_soak_bench_smoke(assets, tmp_path):
    """`python -m bench.soak` runs (a short soak; the 20,000-frame figures are in the docs)."""
    d, models, videos = assets
    out = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--frames", "300"]
        + ["--model", str(models["point"]), "--video", str(videos["dots"])]
        + ["--json", str(tmp_path / "soak.json")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    rep = json.loads((tmp_path / "soak.json").read_text())
    assert rep["frames"] == 300 and rep["imported_tensorflow"] is False
    assert rep["fd_at_last_frame"] == rep["fd_after_warmup"]
    assert rep["threads_after_close"] == 1
    assert rep["rss_growth_after_warmup_mb"] < 5.0


def test_sigterm_finishes_outputs_cleanly(assets, tmp_path):
    """SIGTERM (docker stop) is a clean stop: the video is completed under its final name."""
    d, models, videos = assets
    final = tmp_path / "ann.avi"
    jsonl = tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgereg", "run", str(models["point"]), "--source"]
        + [str(videos["dots"]), "--loop", "--json", str(jsonl), "--video", str(final)]
        + ["--preview"],  # headless: says so and carries on
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if jsonl.exists() and jsonl.read_bytes().count(b"\n") >= 2 * N:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "preview is off" in err and "stopped" in err
    n_lines = len(json_lines(jsonl.read_text()))
    frames = decode_all(final)
    assert n_lines >= 2 * N and len(frames) == n_lines  # one annotated frame per result
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_run_roi_points_are_in_full_frame_pixels(assets, tmp_path):
    d, models, videos = assets
    out = edgereg(
        "run", models["point"], "--source", videos["dots"], "--roi", "2,4,40,40",
        "--max-frames", 6, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    recs = json_lines(out.stdout)
    assert len(recs) == 6
    for i, r in enumerate(recs):  # the dot stays inside the ROI for these frames
        x, y = r["result"]["points_px"][0]
        assert abs(x - (6 + 4 * i + 0.5)) < 2.0 and abs(y - (12 + 2 * i + 0.5)) < 2.0
    bad = edgereg("run", models["point"], "--source", videos["dots"], "--roi", "1,2,3", cwd=d)
    assert bad.returncode == 4 and "roi" in bad.stderr and "Traceback" not in bad.stderr
