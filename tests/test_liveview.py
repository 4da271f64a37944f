"""`edgereg run --serve`: the live view, in a REAL headless Chromium and over plain HTTP.

Chromium (Debian's ``chromium``) is driven over the DevTools protocol on its
``--remote-debugging-pipe`` (tests/chromium.py: standard library only, no websocket client
or Node). Without Chromium the browser test is skipped with the reason, except under
``CI=true`` where it fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from broker import need
from chromium import Chromium, find_chromium
from models import make_tflite
from test_run import json_lines

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
W, H = 320, 240


def dot_centre(i: int) -> tuple[int, int]:
    return 30 + (i * 4) % (W - 60), 60 + (i % 60) * 2


def moving_dot(i: int) -> np.ndarray:
    """A grey 320x240 frame with a red dot travelling left to right (and a little down)."""
    img = np.full((H, W, 3), 60, np.uint8)
    cv2.circle(img, dot_centre(i), 12, (0, 0, 255), -1)
    return img


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("live")
    model = make_tflite(d, "point", arch="centroid")
    video = d / "walk.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (W, H))
    for i in range(360):  # 12 s played in real time (--latest), like a camera
        vw.write(moving_dot(i))
    vw.release()
    return d, model, video


class Run:
    """A real `edgereg run ... --serve 127.0.0.1:0` subprocess and the URL it serves."""

    def __init__(self, *args: object, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgereg", "run", *map(str, args), "--serve", "127.0.0.1:0"],
            cwd=cwd,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.err: list[str] = []
        found = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:
                self.err.append(line)
                if line.startswith("[serve] live view at "):
                    self.url = line.split(" at ", 1)[1].split()[0]
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(90):
            self.stop()
            pytest.fail("no live view URL on stderr:\n" + "".join(self.err)[-3000:])

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        time.sleep(0.2)
        return "".join(self.err)


def page_state(browser: Chromium) -> dict:
    return browser.evaluate(
        "({frame: document.getElementById('frame').textContent,"
        " width: document.getElementById('live').naturalWidth,"
        " cells: Object.fromEntries([...document.querySelectorAll('td[data-key]')]"
        "   .map(td => [td.dataset.key, [td.dataset.json, td.textContent]]))})"
    )


def shown(v):
    """What the page shows for a JSON value: numbers to 4 decimals (its fmt())."""
    if isinstance(v, list):
        return [shown(x) for x in v]
    return round(v, 4) if isinstance(v, float) else v


def test_live_view_in_headless_chromium(assets, tmp_path):
    binary = find_chromium()
    if binary is None:
        need("Debian's chromium is not installed (scripts/ci-system-deps.sh installs it)")
    d, model, video = assets
    jsonl = tmp_path / "out.jsonl"
    run = Run(model, "--source", video, "--latest", "--json", jsonl, "--no-status", cwd=tmp_path)
    browser = Chromium(binary, tmp_path / "profile")
    try:
        browser.open(run.url)
        browser.wait_for(
            "document.getElementById('live').naturalWidth > 0 && "
            "/^[0-9]+$/.test(document.getElementById('frame').textContent)"
        )
        shots, states = [], []
        for k in range(2):
            time.sleep(1.0)
            shots.append(browser.screenshot(tmp_path / f"live{k}.png"))
            states.append(page_state(browser))
    finally:
        browser.close()
        err = run.stop()
    assert run.proc.returncode == 0, err
    print(f"screenshots: {tmp_path / 'live0.png'}, {tmp_path / 'live1.png'}")
    # the stream shows the annotated frames, and they change
    assert all(s["width"] == W for s in states)
    assert shots[0] != shots[1]
    assert int(states[1]["frame"]) > int(states[0]["frame"])
    # the numbers on the page are the JSON line of the frame it shows
    lines = {r["frame"]: r for r in json_lines(jsonl.read_text())}
    for s in states:
        rec = lines[int(s["frame"])]
        expected = {"t": rec["t"], "latency_ms": rec["latency_ms"], **rec["result"]}
        assert set(s["cells"]) == set(expected)
        for key, (exact, text) in s["cells"].items():
            assert json.loads(exact) == expected[key], key
            if key == "points_px":  # what a person reads: rounded, the same numbers
                assert json.loads(text) == shown(expected[key])
    assert "1 stream viewers" in err


def test_live_view_over_http_costs_nothing_without_viewers(assets, tmp_path):
    """No viewer: no JPEG is encoded; /latest.json is the JSON line; only three routes."""
    d, model, video = assets
    jsonl = tmp_path / "out.jsonl"
    run = Run(model, "--source", video, "--latest", "--json", jsonl, "--no-status", cwd=tmp_path)
    try:
        assert run.url.startswith("http://127.0.0.1:")  # loopback unless a host is given
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(run.url + "latest.json", timeout=5) as r:
                    latest = json.loads(r.read())
                    assert r.headers["Content-Type"] == "application/json"
                break
            except urllib.error.HTTPError as e:  # 503 until the first frame
                assert e.code == 503 and time.monotonic() < deadline
                time.sleep(0.1)
        with urllib.request.urlopen(run.url, timeout=5) as r:
            page = r.read().decode()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(run.url + "etc/passwd", timeout=5)
        assert e.value.code == 404
    finally:
        err = run.stop()
    assert run.proc.returncode == 0, err
    assert 'src="/stream.mjpg"' in page and "/latest.json" in page
    lines = {r["frame"]: r for r in json_lines(jsonl.read_text())}
    assert lines[latest["frame"]] == latest
    assert "0 stream viewers, 0 frames sent" in err


def test_port_in_use_is_a_clear_error(assets, tmp_path):
    import socket

    d, model, video = assets
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "edgereg", "run", str(model), "--source", str(video)]
            + ["--serve", str(port), "--video", str(tmp_path / "a.avi")],
            capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120,
        )  # fmt: skip
    assert r.returncode == 14 and f"127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_stream_encodes_only_while_watched_and_only_the_newest_frame(assets):
    """In process: the sink asks for the annotated frame only while a viewer is connected;
    a viewer that has not kept up gets the newest frame, never a backlog."""
    from edge_runtime.liveview import LiveViewSink
    from edge_runtime.sources import Frame

    def write(i: int) -> None:
        img = moving_dot(i)
        sink.write(Frame(img, i, None), _result(), 1.0, img)

    def shows(jpeg: bytes, i: int) -> bool:  # the red dot is where frame i has it
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)
        ys, xs = np.nonzero((img[:, :, 2] > 150) & (img[:, :, 1] < 100))
        want = dot_centre(i)
        return img.shape == (H, W, 3) and abs(xs.mean() - want[0]) + abs(ys.mean() - want[1]) < 2

    sink = LiveViewSink("127.0.0.1:0")
    try:
        assert sink.needs_image is False
        resp = urllib.request.urlopen(sink.url + "stream.mjpg", timeout=10)
        deadline = time.monotonic() + 10
        while not sink.needs_image and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink.needs_image is True
        for i in range(50):  # 50 frames written at once, faster than the viewer reads
            write(i)
        parts = [_read_part(resp)]
        while not shows(parts[-1], 49):  # whatever it caught on the way, it ends at 49
            parts.append(_read_part(resp))
        assert len(parts) < 50 and sink.frames_sent == len(parts)  # no backlog was kept
        write(50)
        assert shows(_read_part(resp), 50)  # the next part is the next new frame
        resp.close()
        deadline = time.monotonic() + 10
        while sink.needs_image and time.monotonic() < deadline:
            write(99)  # the server notices the viewer left when a write fails
            time.sleep(0.05)
        assert sink.needs_image is False
    finally:
        sink.close()


def _result():
    from edge_runtime.postprocess import Result

    pts = np.array([[0.5, 0.5]])
    return Result("point", pts.ravel(), {"points": pts, "points_px": pts * [W, H]})


def _read_part(resp) -> bytes:
    """One JPEG from a multipart/x-mixed-replace stream."""
    length = None
    while True:
        line = resp.readline()
        if not line:
            raise EOFError
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
        elif line in (b"\r\n", b"\n") and length is not None:
            return resp.read(length)
