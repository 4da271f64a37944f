"""Frame sources on real files with real OpenCV; capture stand-ins only for hardware faults."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.errors import SourceError
from edge_runtime.sources import LiveSource, open_source, parse_source


def logged(caplog) -> str:
    """What edgereg's loggers said since the last call (library code logs, not prints)."""
    text = "\n".join(r.getMessage() for r in caplog.records)
    caplog.clear()
    return text


def make_video(path: Path, n: int, fps: float = 30.0, size: tuple[int, int] = (64, 48)) -> Path:
    """A real MJPG .avi whose frame i has mean brightness ~ 4*i (known per frame)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((h, w, 3), (4 * i) % 256, np.uint8))
    writer.release()
    return path


def brightness_index(img: np.ndarray) -> int:
    return int(round(float(img.mean()) / 4))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("vid") / "clip.avi", 40)


def test_video_file_every_frame_in_order(video):
    with open_source(str(video)) as src:
        frames = list(src)
    assert [f.index for f in frames] == list(range(40))
    assert [brightness_index(f.image) for f in frames] == list(range(40))
    assert all(f.image.dtype == np.uint8 and f.image.shape == (48, 64, 3) for f in frames)
    ts = [f.timestamp_ms for f in frames]
    assert ts[0] == pytest.approx(0.0) and ts[1] == pytest.approx(1000 / 30, abs=1)
    assert src.stats.dropped == 0 and src.stats.frames == 40


def test_video_file_loop_keeps_counting(video):
    with open_source(str(video), loop=True) as src:
        frames = [src.read() for _ in range(100)]
    assert [f.index for f in frames] == list(range(100))
    assert [brightness_index(f.image) for f in frames] == [i % 40 for i in range(100)]
    ts = [f.timestamp_ms for f in frames]
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False))


def test_latest_mode_slow_consumer_gets_fresh_frames(video):
    """A file played in real time with newest-frame semantics: a slow consumer skips
    frames (counted as dropped) and each frame it gets is the newest one available."""
    got = []
    with open_source(str(video), every_frame=False) as src:
        assert src.live
        for f in src:
            # the frame's content is the frame its index says (no stale buffer)
            assert brightness_index(f.image) == f.index
            got.append(f.index)
            time.sleep(0.1)  # a model at ~10 fps on a 30 fps source
        stats = src.stats
    assert stats.dropped > 0
    assert stats.dropped + stats.frames == stats.captured == 40
    assert got == sorted(got) and len(got) < 40
    assert max(b - a for a, b in zip(got, got[1:], strict=False)) > 1


def test_image_folder_and_glob(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        img = np.zeros((20, 30, 3), np.uint8)
        img[:, :, 2] = 50 * i  # red in BGR
        cv2.imwrite(str(folder / f"f{i:02d}.png"), img)
    (folder / "notes.txt").write_text("not an image")
    (folder / "f99.png").write_bytes(b"broken")  # unreadable: skipped with a message
    with open_source(str(folder)) as src:
        frames = list(src)
    assert [f.index for f in frames] == list(range(5))
    assert [int(f.image[0, 0, 2]) for f in frames] == [0, 50, 100, 150, 200]  # BGR order
    assert all(int(f.image[0, 0, 0]) == 0 for f in frames)
    assert frames[2].name.endswith("f02.png") and frames[0].timestamp_ms is None
    assert src.stats.skipped == 1
    with open_source(str(folder / "f0[13].png")) as src:
        assert [Path(f.name).name for f in src] == ["f01.png", "f03.png"]


@pytest.mark.parametrize(
    "spec, kind",
    [
        ("0", "camera"),
        ("/dev/video2", "camera"),
        ("rtsp://user:pw@cam.local/stream", "stream"),
        ("http://127.0.0.1:8080/video.mjpg", "stream"),
        ("v4l2src device=/dev/video0 ! videoconvert ! appsink", "gstreamer"),
        ("picam:1", "picamera2"),
        ("picamera2", "picamera2"),
    ],
)
def test_parse_source_kinds(spec, kind):
    assert parse_source(spec)[0] == kind


@pytest.mark.parametrize(
    "spec, words",
    [
        ("does/not/exist.mp4", "no such file"),
        ("57", "camera 57"),
        ("ftp://x/y", "unsupported URL scheme"),
        ("nothing-*.png", "no image files match"),
    ],
)
def test_sources_that_can_never_open_raise_source_error(spec, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match=words):
        open_source(spec)


def test_not_a_video_file(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="clip.mp4"):
        open_source(str(bad))


def test_gstreamer_without_support_is_a_clear_error():
    if "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(SourceError, match="without GStreamer"):
        open_source("videotestsrc ! appsink")


class FlakyCaptureStandIn:
    """Stand-in for a USB camera that gets unplugged: a REAL cv2.VideoCapture on a real
    video file that reports a failed read after ``fail_after`` frames (what V4L2 does when
    the device disappears)."""

    def __init__(self, path: Path, fail_after: int | None) -> None:
        self.cap = cv2.VideoCapture(str(path))
        self.fail_after = fail_after
        self.n = 0

    def isOpened(self) -> bool:  # noqa: N802
        return self.cap.isOpened()

    def read(self):
        if self.fail_after is not None and self.n >= self.fail_after:
            return False, None
        self.n += 1
        time.sleep(0.002)
        return self.cap.read()

    def get(self, prop):
        return self.cap.get(prop)

    def release(self) -> None:
        self.cap.release()


class _NotOpened:
    def isOpened(self) -> bool:  # noqa: N802
        return False

    def release(self) -> None:
        pass


def test_camera_lost_mid_stream_is_reopened_with_backoff(video, caplog):
    """Open 1 fails after 5 frames, the device is then missing for 2 attempts, then it
    comes back: the source reconnects with growing delays and frames keep coming."""
    plan = ["flaky", "missing", "missing", "good"]
    opened = []

    def opener():
        what = plan.pop(0) if plan else "good"
        opened.append(what)
        if what == "missing":
            return _NotOpened()
        return FlakyCaptureStandIn(video, 5 if what == "flaky" else None)

    src = LiveSource("cam-standin", opener, keep_latest=False, backoff_initial=0.05)
    try:
        frames = [src.read() for _ in range(15)]
    finally:
        src.close()
    assert all(f is not None for f in frames)
    assert [f.index for f in frames] == list(range(15))  # no frame lost, order kept
    # first 5 from the first opening, then from the start of the file again
    assert [brightness_index(f.image) for f in frames] == list(range(5)) + list(range(10))
    assert opened == ["flaky", "missing", "missing", "good"]
    assert src.stats.reconnects == 1 and src.stats.failed_opens == 2
    err = logged(caplog)
    assert "read failed" in err
    assert "reconnect attempt 1 in 0.05 s" in err
    assert "reconnect attempt 2 in 0.10 s" in err
    assert "reconnect attempt 3 in 0.20 s" in err
    assert "reconnected after 3 attempt(s)" in err


def test_backoff_is_capped(video, caplog):
    calls = []

    def opener():
        calls.append(1)
        if len(calls) == 1:
            return FlakyCaptureStandIn(video, 0)
        if len(calls) < 7:
            return _NotOpened()
        return FlakyCaptureStandIn(video, None)

    src = LiveSource("cam", opener, backoff_initial=0.01, backoff_max=0.04)
    try:
        assert src.read() is not None
    finally:
        src.close()
    err = logged(caplog)
    delays = [float(x.split(" in ")[1].split()[0]) for x in err.splitlines() if " in " in x]
    assert delays == [0.01, 0.02, 0.04, 0.04, 0.04, 0.04]


class StallingCaptureStandIn:
    """Stand-in for a network stream that hangs: after ``stall_after`` frames, read()
    blocks (as an RTSP read does when the camera stops sending) until released."""

    def __init__(self, path: Path, stall_after: int | None) -> None:
        self.inner = FlakyCaptureStandIn(path, None)
        self.stall_after = stall_after
        self.unblock = threading.Event()
        self.n = 0

    def isOpened(self) -> bool:  # noqa: N802
        return True

    def read(self):
        if self.stall_after is not None and self.n >= self.stall_after:
            self.unblock.wait(5)
            return False, None
        self.n += 1
        return self.inner.read()

    def get(self, prop):
        return self.inner.get(prop)

    def release(self) -> None:
        self.inner.release()


def test_stalled_stream_is_detected_and_reopened(video, caplog):
    caps = []

    def opener():
        cap = StallingCaptureStandIn(video, 3 if not caps else None)
        caps.append(cap)
        return cap

    src = LiveSource(
        "stream-standin", opener, keep_latest=False, stall_timeout=1.0, backoff_initial=0.05
    )
    try:
        frames = [src.read() for _ in range(8)]
    finally:
        caps[0].unblock.set()
        src.close()
    assert [brightness_index(f.image) for f in frames] == [0, 1, 2, 0, 1, 2, 3, 4]
    assert src.stats.stalls == 1 and src.stats.reconnects == 1
    assert "stalled: no frame for 1 s" in logged(caplog)


def test_reconnect_off_turns_a_loss_into_source_error(video):
    src = LiveSource("cam", lambda: FlakyCaptureStandIn(video, 2), reconnect=False)
    try:
        got = []
        with pytest.raises(SourceError, match="reconnect is off"):
            for _ in range(5):
                got.append(src.read())
    finally:
        src.close()
    assert len(got) <= 2


def test_close_joins_grabber_threads(video):
    src = LiveSource("cam", lambda: FlakyCaptureStandIn(video, None))
    assert src.read() is not None
    src.close()
    assert not src._supervisor.is_alive()
    assert src._grabbers == []


class Picamera2StandIn:
    """Stand-in for ``picamera2.Picamera2`` (no Pi camera here): records the calls and
    hands out BGR frames the way picamera2's "RGB888" does."""

    instances: list[Picamera2StandIn] = []

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.calls: list[str] = []
        self.n = 0
        Picamera2StandIn.instances.append(self)

    def create_video_configuration(self, main=None, controls=None):
        self.calls.append("config")
        self.main, self.controls = main, controls
        return {"main": main}

    def configure(self, config):
        self.calls.append("configure")

    def start(self):
        self.calls.append("start")

    def capture_array(self, name="main"):
        self.n += 1
        w, h = self.main["size"]
        arr = np.zeros((h, w, 3), np.uint8)
        arr[:, :, 0] = 200  # byte 0 = blue in "RGB888"
        return arr

    def stop(self):
        self.calls.append("stop")

    def close(self):
        self.calls.append("close")


def test_picamera2_wiring_with_stand_in():
    Picamera2StandIn.instances.clear()
    with open_source("picam:1", width=64, height=48, fps=15, picamera2_cls=Picamera2StandIn) as src:
        f = src.read()
    cam = Picamera2StandIn.instances[0]
    assert cam.camera_num == 1
    assert cam.main == {"format": "RGB888", "size": (64, 48)}
    assert cam.controls == {"FrameRate": 15.0}
    assert f.image.shape == (48, 64, 3)
    assert f.image[0, 0].tolist() == [200, 0, 0]  # passed through as BGR: blue stays blue
    assert cam.calls[:3] == ["config", "configure", "start"] and cam.calls[-2:] == [
        "stop",
        "close",
    ]


def test_picamera2_missing_is_a_clear_error():
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover
        pytest.skip("picamera2 is installed")
    with pytest.raises(SourceError, match="python3-picamera2"):
        open_source("picam:0")
