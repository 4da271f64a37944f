"""Frame sources: cameras, video files, image folders, network streams, GStreamer, picamera2.

``open_source("0")`` (or ``/dev/video0``, ``clip.mp4``, ``frames/``, ``"frames/*.png"``,
``rtsp://...``, ``"v4l2src ! videoconvert ! appsink"``, ``picam:0``) returns a
:class:`FrameSource`: iterate it for :class:`Frame` objects (BGR uint8 images, as OpenCV
gives them), use it as a context manager, ``close()`` it to stop its threads.

Two ways of reading:

- **every frame** (the default for files and image folders): frames are read in the
  consumer's thread, in order, none dropped. Index ``i`` is the i-th frame of the file.
- **newest frame** (the default for cameras and streams): a grabber thread reads frames as
  fast as the device delivers them and keeps only the newest one, so a slow model always
  gets the freshest frame instead of one that waited in a buffer (OpenCV buffers ~4
  frames by default; we also ask for ``CAP_PROP_BUFFERSIZE=1``). Frames replaced before
  the consumer took them are counted in ``stats.dropped``; ``Frame.index`` counts every
  frame captured, so gaps in the indices are the dropped frames.

A live source that errors, disappears or stalls (no frame for ``stall_timeout`` seconds)
is reopened with exponential backoff (capped at ``backoff_max``) while the process stays
up; each attempt is logged on stderr. A file that ends ends the iteration cleanly.
A source that cannot be opened at all raises :class:`SourceError` naming it.

picamera2 (Raspberry Pi CSI cameras; ``cv2.VideoCapture`` cannot open them under
libcamera) is imported only when asked for. Its ``"RGB888"`` format is **BGR in memory**
(libcamera names formats by their little-endian word layout), which is exactly what
OpenCV and this module use, so frames are passed through without a colour conversion.
"""

from __future__ import annotations

import glob as globmod
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from .errors import EdgeregError, ImageError, SourceError
from .images import IMAGE_SUFFIXES, read_image
from .log import get_logger

__all__ = [
    "Frame",
    "FrameSource",
    "SourceStats",
    "VideoFileSource",
    "ImageFilesSource",
    "LiveSource",
    "open_source",
    "parse_source",
    "source_paths",
]

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_PICAM_RE = re.compile(r"^(?:picamera2|picam)(?::(\d+))?$")
_DEV_VIDEO_RE = re.compile(r"^/dev/video(\d+)$")


@dataclass
class Frame:
    """One frame: ``image`` is HxWx3 uint8 **BGR**.

    ``timestamp_ms``: media time for files (position in the video), wall-clock Unix time
    in ms at capture for live sources, ``None`` for still images. ``captured`` is
    ``time.monotonic()`` when the frame was read (for latency). ``name`` is the file name
    for image-folder sources.
    """

    image: np.ndarray
    index: int
    timestamp_ms: float | None
    captured: float = field(default_factory=time.monotonic)
    name: str | None = None


@dataclass
class SourceStats:
    """Counters a source keeps while it runs (read them any time)."""

    frames: int = 0  #: frames handed to the consumer
    captured: int = 0  #: frames read from the device/file
    dropped: int = 0  #: frames replaced by a newer one before the consumer took them
    skipped: int = 0  #: unreadable images skipped in an image folder (each logged)
    reconnects: int = 0  #: successful reopenings after a loss or stall
    failed_opens: int = 0  #: reopen attempts that failed
    stalls: int = 0  #: times no frame arrived for ``stall_timeout`` seconds


class Capture(Protocol):
    """What we need of a ``cv2.VideoCapture``-like object."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's name)
    def release(self) -> None: ...


_LOG = get_logger("source")


def _log(msg: str) -> None:
    _LOG.warning(f"[source] {msg}")


class FrameSource:
    """Base class: an iterator of :class:`Frame` and a context manager."""

    name: str = ""
    kind: str = ""
    live: bool = False
    #: frames per second the source says it delivers (0 if unknown)
    fps: float = 0.0

    def __init__(self) -> None:
        self.stats = SourceStats()

    def read(self) -> Frame | None:
        """The next frame, or ``None`` when the source has ended."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        """Release the device/file and stop threads."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# --------------------------------------------------------------------------- files
class VideoFileSource(FrameSource):
    """A video file read frame by frame in the caller's thread: no frame is dropped.

    ``loop=True`` restarts at the first frame when the file ends (for soak tests);
    indices keep counting up and timestamps keep increasing.
    """

    kind = "file"
    live = False

    def __init__(self, path: str | Path, *, loop: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.name = str(path)
        self.loop = loop
        self._cap = _open_video_file(self.path)
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._index = 0
        self._offset_ms = 0.0
        self._last_ms = 0.0

    def read(self) -> Frame | None:
        if self._cap is None:
            return None
        ok, img = self._cap.read()
        if not ok or img is None:
            if not self.loop or self._index == 0:
                self.close()
                return None
            self._cap.release()
            self._cap = _open_video_file(self.path)
            self._offset_ms = self._last_ms + (1000.0 / self.fps if self.fps > 0 else 1.0)
            ok, img = self._cap.read()
            if not ok or img is None:
                self.close()
                return None
        media_ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
        self._last_ms = self._offset_ms + media_ms
        frame = Frame(_as_bgr(img), self._index, self._last_ms)
        self._index += 1
        self.stats.captured += 1
        self.stats.frames += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _open_video_file(path: Path) -> cv2.VideoCapture:
    if not path.exists():
        raise SourceError(f"{path}: video file not found")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{path}: cannot read (permission denied)")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise SourceError(
            f"{path}: OpenCV cannot open this as a video (corrupt, empty or an unsupported "
            "codec); images need a folder or a glob such as 'frames/*.jpg'"
        )
    return cap


class ImageFilesSource(FrameSource):
    """Still images from a folder (sorted by name) or a glob, each converted to BGR.

    An unreadable image is skipped with a message on stderr and counted in
    ``stats.skipped``; the run goes on. ``Frame.name`` is the file name.
    """

    kind = "images"
    live = False

    def __init__(self, files: list[Path], name: str) -> None:
        super().__init__()
        if not files:
            raise SourceError(
                f"{name}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} files)"
            )
        self.name = name
        self.files = files
        self._i = 0
        self._index = 0

    def read(self) -> Frame | None:
        while self._i < len(self.files):
            path = self.files[self._i]
            self._i += 1
            try:
                rgb = read_image(path)
            except ImageError as e:
                self.stats.skipped += 1
                _log(f"skipping {e}")
                continue
            frame = Frame(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), self._index, None, name=str(path))
            self._index += 1
            self.stats.captured += 1
            self.stats.frames += 1
            return frame
        return None


def _image_files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _image_files_glob(pattern: str) -> list[Path]:
    return sorted(
        Path(p)
        for p in globmod.glob(pattern, recursive=True)
        if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES
    )


# --------------------------------------------------------------------------- live
class LiveSource(FrameSource):
    """A camera or stream read by a grabber thread, reopened with backoff when it fails.

    ``opener()`` returns an opened ``cv2.VideoCapture``-like object (or one whose
    ``isOpened()`` is False, or raises, when the device is not there). The first open
    happens in the constructor: if it fails, :class:`SourceError` is raised.

    ``keep_latest=True``: only the newest frame is kept (older ones count as dropped).
    ``keep_latest=False``: frames queue up (at most ``queue_size``; the grabber waits),
    none dropped, so results lag when the model is slower than the camera.

    A supervisor thread watches the grabber: a read that fails (camera unplugged, stream
    ended) or no frame for ``stall_timeout`` seconds (a read that hangs) makes it abandon
    that capture and reopen with delays ``backoff_initial * 2**k`` capped at ``backoff_max``.
    A hung read cannot be interrupted in OpenCV; its thread is left to finish on its own
    and its capture is released when it does. With ``reconnect=False`` a loss ends the
    source with :class:`SourceError` from ``read()``. With ``end_on_eof=True`` (a file
    played in real time) a failed read is the end of the source.
    ``pace_fps`` > 0 makes the grabber deliver at most that many frames per second
    (real-time playback of a file).
    """

    kind = "live"
    live = True

    def __init__(
        self,
        name: str,
        opener: Callable[[], Capture],
        *,
        keep_latest: bool = True,
        reconnect: bool = True,
        stall_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        queue_size: int = 32,
        end_on_eof: bool = False,
        pace_fps: float = 0.0,
        kind: str = "live",
        fps: float = 0.0,
    ) -> None:
        super().__init__()
        self.name = name
        self.kind = kind
        self.fps = fps
        self._opener = opener
        self.keep_latest = keep_latest
        self.reconnect = reconnect
        self.stall_timeout = float(stall_timeout)
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.end_on_eof = end_on_eof
        self.pace_fps = float(pace_fps)
        self._queue: deque[Frame] = deque(maxlen=1 if keep_latest else None)
        self._queue_size = 1 if keep_latest else max(1, int(queue_size))
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._gen = 0
        self._heartbeat = time.monotonic()
        self._lost: str | None = None  # why the current capture was given up
        self._ended = False
        self._error: EdgeregError | None = None
        self._index = 0
        self._grabbers: list[threading.Thread] = []

        cap = self._try_open()
        if cap is None:
            raise SourceError(self._open_error or f"{name}: cannot open")
        if not self.fps:
            try:
                self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 (a capture stand-in may not have get())
                self.fps = 0.0
        self._start_grabber(cap)
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"edgereg-supervisor[{name}]", daemon=True
        )
        self._supervisor.start()

    # ------------------------------------------------------------------ consumer
    def read(self) -> Frame | None:
        with self._cond:
            while not self._queue:
                if self._error is not None:
                    raise self._error
                if self._ended or self._stop.is_set():
                    return None
                self._cond.wait(0.5)
            frame = self._queue.popleft()
            self.stats.frames += 1
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._gen += 1
            self._cond.notify_all()
        if getattr(self, "_supervisor", None) is not None:
            self._supervisor.join(timeout=5)
        for t in self._grabbers:
            # A grabber stuck in a hung read cannot be interrupted; it is a daemon thread.
            t.join(timeout=2)
        self._grabbers = [t for t in self._grabbers if t.is_alive()]

    # ------------------------------------------------------------------ opening
    _open_error: str | None = None

    def _try_open(self) -> Capture | None:
        try:
            cap = self._opener()
        except EdgeregError as e:
            self._open_error = str(e)
            return None
        except Exception as e:  # noqa: BLE001 (drivers raise anything)
            self._open_error = f"{self.name}: cannot open ({type(e).__name__}: {e})"
            return None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            self._open_error = f"{self.name}: cannot open (device missing, busy or wrong address)"
            return None
        return cap

    def _start_grabber(self, cap: Capture) -> None:
        with self._cond:
            self._gen += 1
            gen = self._gen
            self._lost = None
            self._heartbeat = time.monotonic()
        t = threading.Thread(
            target=self._grab, args=(cap, gen), name=f"edgereg-grabber[{self.name}]", daemon=True
        )
        self._grabbers = [g for g in self._grabbers if g.is_alive()] + [t]
        t.start()

    # ------------------------------------------------------------------ threads
    def _grab(self, cap: Capture, gen: int) -> None:
        period = 1.0 / self.pace_fps if self.pace_fps > 0 else 0.0
        next_t = time.monotonic()
        try:
            while not self._stop.is_set() and gen == self._gen:
                if period:
                    delay = next_t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    next_t = max(next_t + period, time.monotonic() - period)
                try:
                    ok, img = cap.read()
                except Exception as e:  # noqa: BLE001 (drivers raise anything)
                    ok, img = False, None
                    reason = f"read raised {type(e).__name__}: {e}"
                else:
                    reason = "read failed (device gone or stream ended)"
                now = time.monotonic()
                with self._cond:
                    if gen != self._gen:
                        return
                    if not ok or img is None:
                        if self.end_on_eof:
                            self._ended = True
                        else:
                            self._lost = reason
                        self._cond.notify_all()
                        return
                    self._heartbeat = now
                    ts = time.time() * 1000.0
                    if self.end_on_eof:
                        try:
                            ts = float(cap.get(cv2.CAP_PROP_POS_MSEC))  # type: ignore[attr-defined]
                        except Exception:  # noqa: BLE001
                            pass
                    frame = Frame(_as_bgr(img), self._index, ts, captured=now)
                    self._index += 1
                    self.stats.captured += 1
                    if self.keep_latest:
                        if self._queue:
                            self.stats.dropped += 1
                        self._queue.append(frame)
                    else:
                        while len(self._queue) >= self._queue_size and gen == self._gen:
                            if self._stop.is_set():
                                return
                            self._cond.wait(0.2)
                            self._heartbeat = time.monotonic()  # waiting on us is no stall
                        self._queue.append(frame)
                    self._cond.notify_all()
        finally:
            try:
                cap.release()
            except Exception:  # noqa: BLE001
                pass

    def _supervise(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait(0.1)
                if self._stop.is_set() or self._ended:
                    return
                reason = self._lost
                if reason is None and time.monotonic() - self._heartbeat > self.stall_timeout:
                    self.stats.stalls += 1
                    reason = f"stalled: no frame for {self.stall_timeout:g} s"
                if reason is None:
                    continue
                self._gen += 1  # abandon the current grabber (it exits when its read returns)
                self._lost = None
            _log(f"{self.name}: {reason}")
            if not self.reconnect:
                with self._cond:
                    self._error = SourceError(f"{self.name}: {reason} (reconnect is off)")
                    self._cond.notify_all()
                return
            self._reopen()

    def _reopen(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            delay = min(self.backoff_initial * (2**attempt), self.backoff_max)
            attempt += 1
            _log(f"{self.name}: reconnect attempt {attempt} in {delay:.2f} s")
            if self._stop.wait(delay):
                return
            cap = self._try_open()
            if cap is not None and self._stop.is_set():  # closed while we were opening
                cap.release()
                return
            if cap is not None:
                self.stats.reconnects += 1
                _log(f"{self.name}: reconnected after {attempt} attempt(s)")
                self._start_grabber(cap)
                return
            self.stats.failed_opens += 1
            _log(f"{self.name}: attempt {attempt} failed: {self._open_error}")


def _as_bgr(img: np.ndarray) -> np.ndarray:
    """Gray or BGRA captures -> HxWx3 uint8 BGR (most cameras already give that)."""
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.dtype != np.uint8:
        raise SourceError(f"frames of type {img.dtype} are not supported (need 8-bit)")
    return img


# --------------------------------------------------------------------------- openers
def _set_props(cap: Any, width: int | None, height: int | None, fps: float | None) -> None:
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    if width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    if height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    if fps:
        cap.set(cv2.CAP_PROP_FPS, fps)


def _camera_opener(
    device: int | str, width: int | None, height: int | None, fps: float | None
) -> Callable[[], Any]:
    def open_() -> Any:
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if cap.isOpened():
            _set_props(cap, width, height, fps)
        return cap

    return open_


def _stream_opener(url: str, timeout_ms: int) -> Callable[[], Any]:
    def open_() -> Any:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            timeout_ms,
        ]
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        if cap.isOpened():
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    return open_


def _gstreamer_opener(pipeline: str) -> Callable[[], Any]:
    info = cv2.getBuildInformation()
    m = re.search(r"GStreamer:\s*(\S+)", info)
    if not m or m.group(1).upper() != "YES":
        raise SourceError(
            f"{pipeline!r}: this OpenCV was built without GStreamer (opencv-python wheels "
            "are); install the distribution's python3-opencv, or use a camera index, "
            "device path or URL instead"
        )

    def open_() -> Any:
        return cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)

    return open_


class _Picamera2Capture:
    """A picamera2 camera seen through the ``cv2.VideoCapture`` methods we use."""

    def __init__(
        self,
        picamera2_cls: Any,
        camera_num: int,
        width: int | None,
        height: int | None,
        fps: float | None,
    ) -> None:
        self._cam = picamera2_cls(camera_num)
        main: dict[str, Any] = {"format": "RGB888"}  # BGR in memory, like OpenCV
        if width and height:
            main["size"] = (int(width), int(height))
        controls = {"FrameRate": float(fps)} if fps else None
        config = self._cam.create_video_configuration(main=main, controls=controls)
        self._cam.configure(config)
        self._cam.start()
        self._open = True

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self._open

    def read(self) -> tuple[bool, np.ndarray | None]:
        arr = self._cam.capture_array("main")
        if arr is None:
            return False, None
        arr = np.asarray(arr)
        if arr.ndim == 3 and arr.shape[2] == 4:  # XRGB8888 is B, G, R, X in memory
            arr = arr[:, :, :3]
        return True, np.ascontiguousarray(arr)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        if self._open:
            self._open = False
            try:
                self._cam.stop()
            finally:
                self._cam.close()


def _picamera2_opener(
    camera_num: int,
    width: int | None,
    height: int | None,
    fps: float | None,
    picamera2_cls: Any = None,
) -> Callable[[], Any]:
    if picamera2_cls is None:
        try:
            from picamera2 import Picamera2  # noqa: PLC0415 (only on a Pi)
        except ImportError:
            raise SourceError(
                "picamera2 is not installed: on Raspberry Pi OS run "
                "'sudo apt install python3-picamera2' (and create the venv with "
                "--system-site-packages)"
            ) from None
        picamera2_cls = Picamera2

    def open_() -> Any:
        return _Picamera2Capture(picamera2_cls, camera_num, width, height, fps)

    return open_


# --------------------------------------------------------------------------- parsing
def parse_source(spec: str) -> tuple[str, Any]:
    """Classify a ``--source`` string: ``(kind, target)``.

    kinds: ``camera`` (int index or device path), ``picamera2`` (camera number),
    ``stream`` (URL), ``gstreamer`` (pipeline), ``images`` (list of paths), ``file`` (Path).
    Raises :class:`SourceError` if it is none of those.
    """
    s = str(spec).strip()
    if not s:
        raise SourceError("--source is empty: give a camera index, file, folder, glob or URL")
    m = _PICAM_RE.match(s)
    if m:
        return "picamera2", int(m.group(1) or 0)
    if "!" in s:
        return "gstreamer", s
    if s.isdigit():
        return "camera", int(s)
    if _DEV_VIDEO_RE.match(s):
        return "camera", s
    scheme = s.split("://", 1)[0].lower() if "://" in s else ""
    if scheme:
        if scheme in STREAM_SCHEMES:
            return "stream", s
        if scheme != "file":
            raise SourceError(
                f"{s}: unsupported URL scheme {scheme!r} (use {', '.join(STREAM_SCHEMES)})"
            )
        s = s[len("file://") :]
    p = Path(s)
    if p.is_dir():
        files = _image_files_in(p)
        if not files:
            raise SourceError(f"{s}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
        return "images", files
    if any(c in s for c in "*?["):
        files = _image_files_glob(s)
        if not files:
            raise SourceError(f"{s}: no image files match this pattern")
        return "images", files
    if p.is_file():
        if p.suffix.lower() in IMAGE_SUFFIXES:
            return "images", [p]
        return "file", p
    if s.startswith("/dev/"):
        return "camera", s
    raise SourceError(
        f"{s}: no such file, folder or camera (give a camera index like 0, a device like "
        "/dev/video0, a video file, an image folder or glob, a URL, or picam:0)"
    )


def source_paths(spec: str) -> tuple[list[Path], list[Path]]:
    """The files and folders a ``--source`` reads, for the rule that no output may be
    written over an input (:func:`edge_runtime.outputs.check_outputs`).

    A video or image file: ``([file], [])``; a folder: ``([], [folder])``; a glob: the
    matched files and the folders they are in; cameras, streams and pipelines: nothing.
    """
    kind, target = parse_source(spec)
    if kind == "file":
        return [Path(target)], []
    if kind != "images":
        return [], []
    s = str(spec).strip()
    s = s[len("file://") :] if s.startswith("file://") else s
    if Path(s).is_dir():
        return [], [Path(s)]
    files = [Path(f) for f in target]
    if len(files) == 1 and Path(s).is_file():
        return files, []
    return files, sorted({f.parent for f in files})


def open_source(
    spec: str,
    *,
    every_frame: bool | None = None,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    reconnect: bool = True,
    stall_timeout: float = 5.0,
    backoff_initial: float = 0.5,
    backoff_max: float = 10.0,
    loop: bool = False,
    picamera2_cls: Any = None,
) -> FrameSource:
    """Open a frame source from a ``--source`` string (see the module docstring).

    ``every_frame``: ``None`` = the default for the kind (True for files and images,
    False for live sources). For a video file, ``every_frame=False`` plays it in real
    time (at its own fps) with newest-frame semantics, as if it were a camera.
    ``loop``: restart a video file at its end (soak tests). ``picamera2_cls`` replaces
    ``picamera2.Picamera2`` (for a test stand-in).
    """
    kind, target = parse_source(spec)
    if kind == "images":
        return ImageFilesSource(target, str(spec))
    if kind == "file":
        return _file_source(spec, target, every_frame, loop, stall_timeout)
    latest = not every_frame
    common: dict[str, Any] = dict(
        keep_latest=latest,
        reconnect=reconnect,
        stall_timeout=stall_timeout,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        kind=kind,
        fps=float(fps or 0.0),
    )
    return _live_source(spec, kind, target, common, width, height, fps, picamera2_cls)


def _file_source(
    spec: str, target: Any, every_frame: bool | None, loop: bool, stall_timeout: float
) -> FrameSource:
    """open_source for a video file: every frame, or played in real time like a camera."""
    if every_frame is None or every_frame:
        return VideoFileSource(target, loop=loop)
    cap = _open_video_file(target)
    file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
    first = [cap]

    def open_file() -> Any:
        return first.pop() if first else _open_video_file(target)

    return LiveSource(
        str(spec),
        open_file,
        keep_latest=True,
        reconnect=False,
        end_on_eof=True,
        pace_fps=file_fps,
        kind="file",
        fps=file_fps,
        stall_timeout=max(stall_timeout, 10.0),
    )


def _live_source(
    spec: str,
    kind: str,
    target: Any,
    common: dict[str, Any],
    width: int | None,
    height: int | None,
    fps: float | None,
    picamera2_cls: Any,
) -> FrameSource:
    """open_source for a live kind (camera, stream, GStreamer, picamera2), with a clear
    error when it cannot be opened."""
    stall_timeout = common["stall_timeout"]
    if kind == "camera":
        opener = _camera_opener(target, width, height, fps)
        try:
            return LiveSource(str(spec), opener, **common)
        except SourceError:
            raise SourceError(
                f"camera {spec}: cannot open (no such camera, or it is busy; list them with "
                "'v4l2-ctl --list-devices'; the user needs to be in the 'video' group)"
            ) from None
    if kind == "stream":
        # FFmpeg's own timeout is longer than our stall watchdog: the watchdog notices a
        # stall first, and FFmpeg's timeout later frees the abandoned read's thread.
        opener = _stream_opener(target, int(max(2 * stall_timeout, 2.0) * 1000))
        try:
            return LiveSource(_redact(target), opener, **common)
        except SourceError:
            raise SourceError(
                f"{_redact(target)}: cannot open the stream (check the address, that it is "
                "up and reachable, and any credentials)"
            ) from None
    if kind == "gstreamer":
        return LiveSource(target, _gstreamer_opener(target), **common)
    if kind == "picamera2":
        opener = _picamera2_opener(target, width, height, fps, picamera2_cls)
        return LiveSource(f"picamera2:{target}", opener, **common)
    raise SourceError(f"{spec}: unknown source kind {kind}")  # pragma: no cover


def _redact(url: str) -> str:
    """Hide a password in ``scheme://user:pass@host`` before it is logged."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)
