"""`edgereg run MODEL --source S`: a .tflite model on camera/video/image frames, no TensorFlow.

Everything here comes from ``edge_runtime`` (numpy, OpenCV and a LiteRT interpreter);
nothing imports TensorFlow unless ``--backend tensorflow`` is asked for.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import click

from edge_runtime.interpreter import BACKENDS
from edge_runtime.smoothing import SMOOTHERS


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

    def line(self, source: Any) -> str:
        import numpy as np

        lat = np.asarray(self.recent) if self.recent else np.zeros(1)
        st = source.stats
        return (
            f"[run] {self.frames} frames  {self.fps():.1f} fps  latency p50 "
            f"{np.percentile(lat, 50):.1f} ms p95 {np.percentile(lat, 95):.1f} ms  "
            f"dropped {st.dropped}  reconnects {st.reconnects}"
        )

    def summary(self, source: Any, why: str) -> str:
        import numpy as np

        elapsed = time.monotonic() - self.start
        lat = np.asarray(self.recent) if self.recent else np.zeros(1)
        st = source.stats if source is not None else None
        parts = [
            f"[run] {why}: {self.frames} frames in {elapsed:.1f} s "
            f"({self.frames / elapsed if elapsed > 0 else 0:.1f} fps)",
            f"latency mean {self.lat_sum / max(self.frames, 1):.1f} ms "
            f"p95 {np.percentile(lat, 95):.1f} ms max {self.lat_max:.1f} ms",
        ]
        if st is not None:
            parts.append(
                f"dropped {st.dropped}, skipped {st.skipped}, reconnects {st.reconnects}, "
                f"stalls {st.stalls}"
            )
        return "; ".join(parts)

    def clear(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


class _Stop(Exception):
    """SIGTERM (e.g. ``docker stop``): finish the outputs and stop like Ctrl-C."""


class _Term:
    """SIGTERM handler: while a frame is being processed, let it finish (so its JSON line
    and its video frame are both written), then stop; while waiting for a frame, stop now."""

    def __init__(self) -> None:
        self.busy = False
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True
        if not self.busy:
            raise _Stop()


@click.command(name="run", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--source",
    "-s",
    required=True,
    metavar="S",
    help="Camera index (0) or device (/dev/video0), video file, image folder or glob "
    "('frames/*.jpg'), rtsp:// or http:// URL, GStreamer pipeline (contains '!'), "
    "or picam:0 for a Pi CSI camera (picamera2).",
)
@click.option(
    "--json",
    "json_out",
    metavar="OUT|-",
    help="JSON lines, one per frame, to a file or '-' for stdout (the default when no "
    "other output is given).",
)
@click.option("--csv", "csv_out", metavar="OUT", help="Flat CSV, one row per frame.")
@click.option(
    "--video",
    "video_out",
    metavar="OUT",
    help="Annotated video (.avi/.mkv: MJPG, .mp4/.mov: mp4v); appears under this name "
    "only once complete.",
)
@click.option("--preview", is_flag=True, help="Show a window when a display exists.")
@click.option("--roi", metavar="x,y,w,h", help="Run the model on this part of each frame.")
@click.option("--smooth", type=click.Choice(SMOOTHERS), help="Smooth outputs across frames.")
@click.option("--tta", is_flag=True, help="Average over the spec's invariances (slower).")
@click.option("--threads", type=click.IntRange(1, 64), help="Interpreter threads (default: all).")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
)
@click.option("--device", default="cpu", show_default=True, help="cpu | usb[:N] | pci[:N]")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="spec.json for a model that carries none.",
)
@click.option(
    "--every-frame/--latest",
    default=None,
    help="--every-frame: process every frame, none dropped (default for files/images). "
    "--latest: always take the newest frame, dropping older ones (default for cameras "
    "and streams; a file is then played in real time).",
)
@click.option("--max-frames", type=click.IntRange(1), help="Stop after this many frames.")
@click.option("--width", type=click.IntRange(1), help="Ask the camera for this width.")
@click.option("--height", type=click.IntRange(1), help="Ask the camera for this height.")
@click.option("--fps", type=click.FloatRange(min=0.1), help="Ask the camera for this rate.")
@click.option(
    "--stall-timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds without a frame before a live source is reopened.",
)
@click.option(
    "--reconnect/--no-reconnect",
    default=True,
    show_default=True,
    help="Reopen a lost camera/stream with backoff (else stop with an error).",
)
@click.option("--loop", is_flag=True, help="Restart a video file at its end (soak tests).")
@click.option("--status/--no-status", default=True, help="Live status line on stderr.")
def cli(
    model: Path,
    source: str,
    json_out: str | None,
    csv_out: str | None,
    video_out: str | None,
    preview: bool,
    roi: str | None,
    smooth: str | None,
    tta: bool,
    threads: int | None,
    backend: str,
    device: str,
    spec_path: Path | None,
    every_frame: bool | None,
    max_frames: int | None,
    width: int | None,
    height: int | None,
    fps: float | None,
    stall_timeout: float,
    reconnect: bool,
    loop: bool,
    status: bool,
) -> int:
    """Run MODEL (.tflite) on frames from --source and stream the results.

    \b
    Examples:
      edgereg run model.tflite --source 0                      # USB camera -> JSON lines
      edgereg run model.tflite --source picam:0 --json out.jsonl --preview
      edgereg run model.tflite --source clip.mp4 --csv out.csv --video annotated.avi
      edgereg run model.tflite --source 'frames/*.jpg' --json -

    JSON lines go to stdout (or --json FILE): {"frame", "t", "latency_ms", "file",
    "result"}; the status line and messages go to stderr. Ctrl-C or SIGTERM stops
    cleanly and finishes the outputs.
    """
    from edge_runtime.draw import annotate
    from edge_runtime.predictor import Predictor, PredictorOptions
    from edge_runtime.preprocess import parse_roi
    from edge_runtime.sinks import CsvSink, JsonlSink, PreviewSink, VideoSink
    from edge_runtime.sources import open_source

    roi_t = parse_roi(roi) if roi else None
    if not (json_out or csv_out or video_out or preview):
        json_out = "-"

    predictor = Predictor.create_from_options(
        PredictorOptions(
            model_path=model,
            num_threads=threads,
            backend=backend,
            device=device,
            color_order="BGR",
            roi=roi_t,
            smoothing=smooth,
            tta=tta,
            spec=spec_path,
        )
    )
    src = None
    sinks: list[Any] = []
    video = None
    window = None
    meter = StatusLine(enabled=status)
    why = "source ended"
    ok = False
    term = _Term()
    old_term = signal.signal(signal.SIGTERM, term)
    try:
        src = open_source(
            source,
            every_frame=every_frame,
            width=width,
            height=height,
            fps=fps,
            reconnect=reconnect,
            stall_timeout=stall_timeout,
            loop=loop,
        )
        if json_out:
            sinks.append(JsonlSink(json_out))
        if csv_out:
            sinks.append(CsvSink(csv_out, predictor.spec))
        if video_out:
            video = VideoSink(video_out, fps=src.fps)
        if preview:
            window = PreviewSink()
        print(
            f"[run] {model.name} ({predictor.spec.task}, {_backend_name(predictor)}) on "
            f"{src.kind} {src.name}: "
            f"{'newest frame' if getattr(src, 'keep_latest', False) else 'every frame'}",
            file=sys.stderr,
            flush=True,
        )
        n = 0
        try:
            for frame in src:
                term.busy = True
                result = predictor.predict(frame.image, frame.timestamp_ms)
                latency_ms = (time.monotonic() - frame.captured) * 1000.0
                for sink in sinks:
                    sink.write(frame, result, latency_ms)
                if video is not None or (window is not None and window.enabled):
                    drawn = annotate(
                        frame.image,
                        result,
                        predictor.spec,
                        roi=roi_t,
                        status=f"{meter.fps():.1f} fps",
                    )
                    if video is not None:
                        video.write(drawn)
                    if window is not None:
                        window.show(drawn)
                        if window.quit_requested:
                            why = "stopped from the preview window"
                            break
                meter.update(latency_ms, src)
                term.busy = False
                if term.requested:
                    raise _Stop()
                n += 1
                if max_frames is not None and n >= max_frames:
                    why = f"--max-frames {max_frames} reached"
                    break
        except (KeyboardInterrupt, _Stop):
            why = "stopped"
        except BrokenPipeError:
            why = "stdout closed"
            _silence_stdout()
        ok = True
    finally:
        signal.signal(signal.SIGTERM, old_term)
        meter.clear()
        if src is not None:
            src.close()
        for sink in sinks:
            sink.close()
        if video is not None:
            if ok:
                video.close()  # finished (or stopped cleanly): the complete video appears
            else:
                video.abort()  # an error: earlier file under that name is kept
        if window is not None:
            window.close()
        predictor.close()
        if ok:
            print(meter.summary(src, why), file=sys.stderr, flush=True)
    return 0


def _backend_name(predictor: Any) -> str:
    b = predictor.backend
    name = getattr(b, "name", str(b))
    version = getattr(b, "version", "")
    return f"{name} {version}".strip()


def _silence_stdout() -> None:
    """After a broken pipe (``| head``), stop Python complaining at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
