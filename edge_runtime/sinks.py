"""Result sinks: JSON lines, CSV, an annotated video file and a preview window.

Every output of the frame loop (:func:`edge_runtime.pipeline.run_pipeline`) is a
:class:`Sink`: ``write(frame, result, latency_ms, image)`` per frame, then ``close()``
(finish: the output is complete) or ``abort()`` (discard what is unfinished; an earlier
file of the same name is kept), and ``report()`` says what was kept and what was lost.
A sink whose ``needs_image`` is True gets the annotated frame (drawn once per frame for
all sinks by :func:`edge_runtime.draw.annotate`); the others get ``None``. The MQTT sink
(:mod:`edge_runtime.mqtt`) and the live view (:mod:`edge_runtime.liveview`) implement
the same interface.

JSON lines (one object per frame, keys always present, in this order; the schema is
``docs/result.schema.json``, made by :mod:`edge_runtime.schema`)::

    {"frame": 12, "t": 400.0, "latency_ms": 7.31, "file": null, "result": {...}}

- ``frame``: the source's frame index (0, 1, 2, ... for files and image folders; for live
  sources it counts every captured frame, so gaps are frames dropped for freshness).
- ``t``: the frame's timestamp in ms: media time for a video file, Unix time at capture
  for a live source, ``null`` for still images.
- ``latency_ms``: from the moment the frame was read to the result being ready
  (includes any time waiting in the newest-frame slot, decode, preprocess, invoke).
- ``file``: the image path for image folders/globs, else ``null``.
- ``result``: ``Result.to_dict()`` of :mod:`edge_runtime.postprocess` (with ``raw``, the
  model's raw output, only when the sink was made with ``raw=True``: ``run --raw``).

JSON and CSV are streams: each line is written with one ``write`` call and flushed, so
a killed run leaves only whole lines (at most the line being formed is lost), and a
reader can follow the file while it grows. The annotated video is written under a
hidden temporary name in the same folder (``.NAME.XXXX.part.avi``) and renamed to the
final name only when it has been closed properly: a killed run never leaves a truncated
video under the final name (a stale ``.part`` file may remain and can be deleted).
Before the rename the finished file's container bookkeeping is checked against its size
(:mod:`edge_runtime.videocheck`: a few header reads, the same cost for 10 frames or
100,000), which catches a video cut short by a full disk.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import threading
from pathlib import Path
from typing import IO, Any

import numpy as np

from .atomic import replace_into, temp_beside
from .errors import OutputError
from .log import get_logger
from .postprocess import MS_DECIMALS
from .tasks.base import fmt_number
from .videocheck import incomplete_reason

__all__ = [
    "Sink",
    "JsonlSink",
    "CsvSink",
    "VideoSink",
    "PreviewSink",
    "csv_columns",
    "csv_row",
    "has_display",
    "record",
]


_LOG = get_logger("run")


def _clean(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, np.generic):
        return _clean(o.item())
    if isinstance(o, float) and not math.isfinite(o):
        return None  # JSON has no NaN/inf
    if isinstance(o, Path):
        return str(o)
    return o


def record(frame: Any, result: Any, latency_ms: float, raw: bool = False) -> dict[str, Any]:
    """The JSON-lines object for one frame (see the module docstring): the same object
    is the MQTT payload (plus ``device``) and the live view's ``/latest.json``."""
    t = frame.timestamp_ms
    return {
        "frame": int(frame.index),
        "t": None if t is None else round(float(t), 3),
        "latency_ms": round(float(latency_ms), MS_DECIMALS),
        "file": getattr(frame, "name", None),
        "result": _clean(result.to_dict(raw=raw)),
    }


class Sink:
    """One output of the frame loop (see the module docstring).

    Subclasses implement :meth:`write` and :meth:`close`; :meth:`abort` defaults to
    :meth:`close` (right for streams, whose lines are whole and kept). ``state`` is
    ``"open"``, then ``"complete"`` (closed), ``"abandoned"`` (aborted) or ``"failed"``.
    """

    #: short name for messages, e.g. ``"json"``, ``"video"``, ``"mqtt"``
    label: str = "sink"
    #: whether JSON records carry the model's raw output (``run --raw``)
    raw: bool = False
    #: a reason string when the sink asks the frame loop to stop (the preview's ``q``)
    stop_request: str | None = None
    state: str = "open"

    @property
    def needs_image(self) -> bool:
        """Whether :meth:`write` wants the annotated frame (it may change while running)."""
        return False

    def write(
        self, frame: Any, result: Any, latency_ms: float, image: np.ndarray | None = None
    ) -> None:
        """One frame's result (``image``: the annotated frame when :attr:`needs_image`)."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish: the output is complete (a temp file takes its final name)."""
        self.state = "complete"

    def abort(self) -> None:
        """Discard what is unfinished; an earlier file under the final name is kept."""
        self.close()

    def interrupt(self) -> None:
        """Stop waiting (a second Ctrl-C while stopping): :meth:`close` must return at once,
        abandoning what it cannot finish immediately. Called from a signal handler: it may
        only set flags."""

    def report(self) -> str | None:
        """One line for stderr at the end: what was kept and what was lost (None: nothing)."""
        return None


class _LineOut:
    """Whole lines to a file (truncated at open) or to stdout (``-``), one write each."""

    def __init__(self, path: str | Path) -> None:
        self.name = str(path)
        self._stdout: IO[bytes] | None = None
        self._fd: int | None = None
        self._whole = 0  # bytes of complete lines in the file
        if self.name == "-":
            self._stdout = sys.stdout.buffer
            return
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as e:
            raise OutputError(f"{p}: cannot write ({e.strerror or e})") from None

    @property
    def where(self) -> str:
        return "standard output" if self._stdout is not None else self.name

    def write_line(self, line: str) -> None:
        data = (line + "\n").encode("utf-8")
        try:
            if self._stdout is not None:
                self._stdout.write(data)
                self._stdout.flush()
                return
            assert self._fd is not None
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self._whole += len(data)
        except BrokenPipeError:
            raise
        except OSError as e:
            # A full disk can cut the line part-way: drop the part, keep only whole lines.
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._whole)
            raise OutputError(
                f"{self.name}: cannot write ({e.strerror or e}); the lines written so far are "
                "kept whole"
            ) from None

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None


class _LinesSink(Sink):
    """A stream of whole lines (JSON lines, CSV): what was written is kept, even on abort."""

    unit = "lines"

    def __init__(self, path: str | Path) -> None:
        self._out = _LineOut(path)
        self.lines = 0

    def close(self) -> None:
        self._out.close()
        self.state = "complete"

    def abort(self) -> None:
        self._out.close()
        self.state = "abandoned"

    def report(self) -> str:
        how = "complete" if self.state == "complete" else "every line written is whole and kept"
        return f"{self.label} {self._out.where}: {self.lines} {self.unit} ({how})"


class JsonlSink(_LinesSink):
    """One JSON object per frame, one line each, flushed as it is written."""

    label = "json"

    def __init__(self, path: str | Path, raw: bool = False) -> None:
        super().__init__(path)
        self.raw = raw

    def write(
        self, frame: Any, result: Any, latency_ms: float, image: np.ndarray | None = None
    ) -> None:
        rec = record(frame, result, latency_ms, self.raw)
        self._out.write_line(json.dumps(rec, separators=(",", ":"), allow_nan=False))
        self.lines += 1


def csv_columns(spec: Any) -> list[str]:
    """Flat CSV columns for a model spec's task.

    Always ``frame, t, latency_ms, invoke_ms, file``, then the task's own columns
    (``edge_runtime/tasks``): point ``x, y, x_px, y_px``; keypoints ``kp0_x, kp0_y,
    kp0_x_px, kp0_y_px, kp1_x, ...``; value ``value``; class ``label, p_<class name>...``;
    angle ``angle`` (and ``reading`` on a gauge). x, y are normalized [0, 1] of the frame
    (origin top-left); ``_px`` are pixels of the frame.
    """
    return ["frame", "t", "latency_ms", "invoke_ms", "file", *spec.task_kind.csv_columns(spec)]


def csv_row(spec: Any, frame: Any, result: Any, latency_ms: float) -> list[str]:
    """The CSV row for one frame, matching :func:`csv_columns`."""
    return [
        str(int(frame.index)),
        fmt_number(frame.timestamp_ms, 3),
        fmt_number(latency_ms, 3),
        fmt_number(getattr(result, "invoke_ms", None), 3),
        frame.name or "",
        *spec.task_kind.csv_values(spec, result),
    ]


class CsvSink(_LinesSink):
    """Flat CSV, one row per frame (columns: :func:`csv_columns`), flushed per line."""

    label = "csv"
    unit = "rows"

    def __init__(self, path: str | Path, spec: Any) -> None:
        super().__init__(path)
        self.spec = spec
        self.columns = csv_columns(spec)
        self._out.write_line(self._format(self.columns))

    @staticmethod
    def _format(values: list[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(values)
        return buf.getvalue()

    def write(
        self, frame: Any, result: Any, latency_ms: float, image: np.ndarray | None = None
    ) -> None:
        self._out.write_line(self._format(csv_row(self.spec, frame, result, latency_ms)))
        self.lines += 1


#: container suffix -> FourCC that this OpenCV (FFmpeg) writes without extra codecs.
VIDEO_CODECS = {".avi": "MJPG", ".mkv": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v"}


class VideoSink(Sink):
    """An annotated video, written under a temp name and renamed when closed properly.

    The writer opens at the first frame (its size sets the video size). ``close()``
    finishes the file, checks it is whole and renames it to ``path``; ``abort()`` deletes
    the temp file and leaves any earlier file at ``path`` untouched. While it is written,
    a background thread flushes it to the disk every ``sync_every`` seconds, so the fsync
    at close waits for the last second of video only, whatever the video's length.
    """

    label = "video"
    needs_image = True  # type: ignore[assignment]  (a constant, not a property, here)

    def __init__(self, path: str | Path, fps: float = 0.0, sync_every: float = 1.0) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise OutputError(
                f"{self.path}: unsupported video type {suffix or '(none)'}; "
                f"use one of {', '.join(VIDEO_CODECS)}"
            )
        self.fourcc = VIDEO_CODECS[suffix]
        self.fps = float(fps) if fps and 1 <= fps <= 240 else 10.0
        self.tmp = temp_beside(self.path, tag="part")
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self.frames = 0
        self.why: str | None = None
        self._syncer = _Syncer(self.tmp, sync_every)

    def write(
        self, frame: Any, result: Any, latency_ms: float, image: np.ndarray | None = None
    ) -> None:
        self.write_image(frame.image if image is None else image)

    def write_image(self, image_bgr: np.ndarray) -> None:
        """Append one BGR image (resized to the first image's size if it differs)."""
        import cv2

        h, w = image_bgr.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            self._writer = cv2.VideoWriter(
                str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h)
            )
            if not self._writer.isOpened():
                self.abort()
                raise OutputError(f"{self.path}: OpenCV cannot write {self.fourcc} video here")
            self._syncer.start()
        elif (w, h) != self._size:
            image_bgr = cv2.resize(image_bgr, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(image_bgr))
        self.frames += 1

    def close(self) -> None:
        """Finish the video and move it to its final name (nothing if no frame came)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._syncer.stop()
        if self.state != "open" or not self.tmp.exists():
            return
        if self.frames == 0:
            self.tmp.unlink(missing_ok=True)
            self.state = "complete"
            return
        # OpenCV's writer ignores write errors (a full disk gives a cut file that still
        # plays): the container's own size bookkeeping must match the file before it
        # takes the final name.
        why = incomplete_reason(self.tmp)
        if why is not None:
            self._fail(
                f"{self.path}: the video of {self.frames} frames did not reach the disk whole "
                f"({why}; disk full or write error); the previous file, if any, is kept"
            )
        try:
            replace_into(self.tmp, self.path)
        except OutputError as e:
            self._fail(str(e))
        self.state = "complete"

    def _fail(self, message: str) -> None:
        self.tmp.unlink(missing_ok=True)
        self.state, self.why = "failed", message
        raise OutputError(message)

    def abort(self) -> None:
        """Drop the unfinished video; an earlier file under the final name is kept."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.release()
            self._writer = None
        self._syncer.stop()
        self.tmp.unlink(missing_ok=True)
        if self.state == "open":
            self.state = "abandoned"

    def report(self) -> str:
        if self.state == "complete":
            return f"video {self.path}: {self.frames} frames (complete)"
        if self.state == "failed":
            return f"video {self.path}: NOT written: {self.why}"
        return (
            f"video {self.path}: abandoned after {self.frames} frames: nothing was written "
            "under that name (an earlier file of that name is kept)"
        )


class _Syncer:
    """Flushes a file being written by someone else (OpenCV/FFmpeg) to the disk every
    ``every`` seconds, in its own thread: the writer never waits for the disk."""

    def __init__(self, path: Path, every: float) -> None:
        self.path, self.every = path, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.every > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="edgereg-sync", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        try:
            while not self._stop.wait(self.every):
                with contextlib.suppress(OSError):
                    os.fdatasync(fd)
        finally:
            os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def has_display() -> bool:
    """True when a graphical display is configured (X11 or Wayland)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class PreviewSink(Sink):
    """A preview window when a display exists; otherwise (or without GUI support in
    OpenCV, e.g. opencv-python-headless) it says so once on stderr and does nothing.

    ``quit_requested`` becomes True when the user presses ``q`` or Esc in the window (and
    ``stop_request`` says so to the frame loop).
    """

    label = "preview"
    WINDOW = "edgereg run"

    def __init__(self) -> None:
        self.enabled = has_display()
        self.quit_requested = False
        if not self.enabled:
            _LOG.warning("[preview] no display (DISPLAY/WAYLAND_DISPLAY unset): preview is off")

    @property
    def needs_image(self) -> bool:
        return self.enabled

    def write(
        self, frame: Any, result: Any, latency_ms: float, image: np.ndarray | None = None
    ) -> None:
        self.show(frame.image if image is None else image)

    def show(self, image_bgr: np.ndarray) -> None:
        if not self.enabled:
            return
        import cv2

        try:
            cv2.imshow(self.WINDOW, image_bgr)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as e:
            self.enabled = False
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else "unavailable"
            _LOG.warning(f"[preview] cannot open a window ({msg}): preview is off")
            return
        if key in (ord("q"), 27):
            self.quit_requested = True
            self.stop_request = "stopped from the preview window"

    def close(self) -> None:
        if self.enabled:
            import cv2

            with contextlib.suppress(Exception):
                cv2.destroyWindow(self.WINDOW)
        self.state = "complete"
