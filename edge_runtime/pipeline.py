"""The frame loop: frames from a source, through the predictor, to every sink.

``edgereg run`` is option parsing around :func:`run_pipeline`; a program can call it too::

    from edge_runtime.pipeline import run_pipeline
    from edge_runtime.predictor import Predictor
    from edge_runtime.sinks import JsonlSink, VideoSink
    from edge_runtime.sources import open_source

    with Predictor.create_from_model_path("model.tflite", color_order="BGR") as p:
        source = open_source("clip.mp4")
        sinks = [JsonlSink("out.jsonl"), VideoSink("annotated.avi", fps=source.fps)]
        summary = run_pipeline(p, source, sinks)
    print(summary.frames, summary.why)

Per frame: ``predictor.predict`` -> the annotated frame, drawn once when some sink's
``needs_image`` is True -> ``sink.write`` for every sink -> the status line. At the end
the source is closed and every sink is finished (``close``) or, after an error,
abandoned (``abort``); each sink's ``report()`` is printed. The predictor stays open (it
is the caller's).

Signals (SIGINT = Ctrl-C, SIGTERM = ``docker stop``), when ``handle_signals`` is True and
this is the main thread: the first one lets the frame being processed finish (so its
JSON line and its video frame are both written), then stops and finishes every output; a
second one (any mix of the two), or one that arrives while the outputs are being
finished, makes every sink stop waiting: the MQTT queue is no longer drained (what is
left is kept in the spool or counted as lost), the video is still finished (its close
costs the same whatever its length), nothing is left half-written and stderr says what
was kept and what was lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .draw import annotate
from .errors import EdgeregError
from .log import get_logger
from .sinks import Sink

__all__ = ["RunSummary", "StatusLine", "run_pipeline"]

Log = Callable[[str], None]


_LOG = get_logger("run")


def _stderr(line: str) -> None:
    """The default ``log`` of :func:`run_pipeline`: the ``edgereg.run`` logger (INFO)."""
    _LOG.info(line)


class StatusLine:
    """A live status line on stderr (never stdout, which may carry JSON lines).

    On a terminal it is redrawn in place twice a second; otherwise (a log file, a pipe)
    one line is printed every ``log_every`` seconds. Memory stays bounded on long runs:
    percentiles are over the last 1000 frames.
    """

    def __init__(self, enabled: bool = True, log_every: float = 5.0) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.every = 0.5 if self.tty else log_every
        self.start = time.monotonic()
        self.last_print = self.start
        self.recent: deque[float] = deque(maxlen=1000)
        self.times: deque[float] = deque(maxlen=60)
        self.frames = 0
        self.lat_sum = 0.0
        self.lat_max = 0.0

    def update(self, latency_ms: float, source: Any) -> None:
        now = time.monotonic()
        self.frames += 1
        self.recent.append(latency_ms)
        self.times.append(now)
        self.lat_sum += latency_ms
        self.lat_max = max(self.lat_max, latency_ms)
        if self.enabled and now - self.last_print >= self.every:
            self.last_print = now
            line = self.line(source)
            if self.tty:
                sys.stderr.write("\r" + line.ljust(100)[:100])
            else:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def fps(self) -> float:
        if len(self.times) < 2:
            return 0.0
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0

    def p(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.recent), q)) if self.recent else 0.0

    def line(self, source: Any) -> str:
        st = source.stats
        return (
            f"[run] {self.frames} frames  {self.fps():.1f} fps  latency p50 "
            f"{self.p(50):.1f} ms p95 {self.p(95):.1f} ms  "
            f"dropped {st.dropped}  reconnects {st.reconnects}"
        )

    def clear(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


@dataclass
class RunSummary:
    """What a run did: frames, time, why it ended, latency, source counters, and each
    sink's report (what was kept and what was lost)."""

    frames: int
    elapsed_s: float
    why: str
    latency_mean_ms: float
    latency_p95_ms: float
    latency_max_ms: float
    source_stats: Any = None
    reports: list[str] = field(default_factory=list)
    #: True when a second signal made the sinks stop waiting
    hurried: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        parts = [
            f"[run] {self.why}: {self.frames} frames in {self.elapsed_s:.1f} s ({self.fps:.1f} fps)",
            f"latency mean {self.latency_mean_ms:.1f} ms p95 {self.latency_p95_ms:.1f} ms "
            f"max {self.latency_max_ms:.1f} ms",
        ]
        st = self.source_stats
        if st is not None:
            parts.append(
                f"dropped {st.dropped}, skipped {st.skipped}, reconnects {st.reconnects}, "
                f"stalls {st.stalls}"
            )
        return "; ".join(parts)


class _Stop(Exception):
    """A signal asked the run to stop (raised only between frames)."""


class _Signals:
    """SIGINT/SIGTERM during a run (see the module docstring)."""

    def __init__(self, sinks: Sequence[Sink], log: Log) -> None:
        self.sinks, self.log = sinks, log
        self.count = 0
        self.busy = False  # a frame is being processed: let it finish
        self.closing = False  # the outputs are being finished
        self.hurried = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if self.closing or self.count >= 2:
            if not self.hurried:
                self.hurried = True
                for s in self.sinks:
                    s.interrupt()
                when = "while finishing the outputs" if self.count == 1 else "a second time"
                self.log(
                    f"[run] {name} {when}: not waiting any more; what cannot be finished at "
                    "once is abandoned"
                )
        else:
            self.log(
                f"[run] {name}: stopping after this frame and finishing the outputs "
                "(Ctrl-C again to stop waiting)"
            )
        if not self.closing and not self.busy:
            raise _Stop()

    @contextlib.contextmanager
    def installed(self, enabled: bool) -> Iterator[None]:
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


def run_pipeline(
    predictor: Any,
    source: Any,
    sinks: Sequence[Sink],
    *,
    max_frames: int | None = None,
    status: bool | StatusLine = False,
    handle_signals: bool = True,
    log: Log | None = _stderr,
) -> RunSummary:
    """Run ``predictor`` on every frame of ``source`` and write each result to ``sinks``.

    ``max_frames`` stops after that many frames. ``status``: a live status line on stderr
    (True, or your own :class:`StatusLine`). ``handle_signals``: catch SIGINT/SIGTERM
    for a clean stop (main thread only). ``log`` receives the start line, the summary
    and the sinks' reports (stderr by default; None for silence). The source is closed
    and the sinks finished or abandoned before this returns or raises; an error of a
    sink's ``close()`` (e.g. a video cut by a full disk) is raised after every other sink
    has been finished.
    """
    sinks = list(sinks)
    say: Log = log or (lambda line: None)
    meter = status if isinstance(status, StatusLine) else StatusLine(enabled=bool(status))
    signals = _Signals(sinks, say)
    say(_start_line(predictor, source))
    why, error = "source ended", None
    with signals.installed(handle_signals):
        try:
            why = _loop(predictor, source, sinks, meter, signals, max_frames)
        except (_Stop, KeyboardInterrupt):
            why = "stopped"
        except BrokenPipeError:
            why = "stdout closed"
            _silence_stdout()
        except BaseException as e:  # noqa: BLE001 (re-raised below, after the cleanup)
            error = e
        signals.closing = True
        loop_s = time.monotonic() - meter.start
        meter.clear()
        source.close()
        errors = _finish(sinks, error is None, say)
    summary = _summarize(meter, loop_s, source, why, sinks, signals.hurried)
    if error is None:
        say(summary.line())
    for line in summary.reports:
        say(f"[run] {line}")
    if error is not None:
        raise error
    if errors:
        raise errors[0]
    return summary


def _loop(
    predictor: Any,
    source: Any,
    sinks: list[Sink],
    meter: StatusLine,
    signals: _Signals,
    max_frames: int | None,
) -> str:
    """Frames until the source ends, ``max_frames``, a signal or a sink's stop request."""
    spec, roi = predictor.spec, getattr(predictor, "roi", None)
    n = 0
    for frame in source:
        signals.busy = True
        result = predictor.predict(frame.image, frame.timestamp_ms)
        latency_ms = (time.monotonic() - frame.captured) * 1000.0
        image = None
        if any(s.needs_image for s in sinks):  # drawn once, for every sink that wants it
            image = annotate(frame.image, result, spec, roi=roi, status=f"{meter.fps():.1f} fps")
        for s in sinks:
            s.write(frame, result, latency_ms, image)
        meter.update(latency_ms, source)
        n += 1
        signals.busy = False
        if signals.count:
            raise _Stop()
        stop = next((s.stop_request for s in sinks if s.stop_request), None)
        if stop:
            return stop
        if max_frames is not None and n >= max_frames:
            return f"--max-frames {max_frames} reached"
    return "source ended"


def _finish(sinks: list[Sink], ok: bool, say: Log) -> list[EdgeregError]:
    """close() every sink after a good run (abort() after an error); errors are collected
    so one output failing never leaves another unfinished."""
    errors: list[EdgeregError] = []
    for s in sinks:
        try:
            if ok:
                s.close()
            else:
                s.abort()
        except EdgeregError as e:
            errors.append(e)
            with contextlib.suppress(Exception):
                s.abort()
        except Exception as e:  # noqa: BLE001 (a bug in one sink must not cost the others)
            say(f"[run] {s.label}: could not be finished ({type(e).__name__}: {e})")
            with contextlib.suppress(Exception):
                s.abort()
            if ok:
                errors.append(EdgeregError(f"{s.label}: {type(e).__name__}: {e}"))
    return errors


def _summarize(
    meter: StatusLine, loop_s: float, source: Any, why: str, sinks: list[Sink], hurried: bool
) -> RunSummary:
    reports = []
    for s in sinks:
        with contextlib.suppress(Exception):
            line = s.report()
            if line:
                reports.append(line)
    return RunSummary(
        frames=meter.frames,
        elapsed_s=loop_s,
        why=why,
        latency_mean_ms=meter.lat_sum / max(meter.frames, 1),
        latency_p95_ms=meter.p(95),
        latency_max_ms=meter.lat_max,
        source_stats=getattr(source, "stats", None),
        reports=reports,
        hurried=hurried,
    )


def _start_line(predictor: Any, source: Any) -> str:
    b = getattr(predictor, "backend", None)
    backend = f"{getattr(b, 'name', b)} {getattr(b, 'version', '')}".strip()
    model = getattr(getattr(predictor, "model_path", None), "name", "model")
    mode = "newest frame" if getattr(source, "keep_latest", False) else "every frame"
    return (
        f"[run] {model} ({predictor.spec.task}, {backend}) on "
        f"{getattr(source, 'kind', '?')} {getattr(source, 'name', '')}: {mode}"
    )


def _silence_stdout() -> None:
    """After a broken pipe (``| head``), stop Python complaining at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
