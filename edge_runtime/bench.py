"""Measure a model on this machine: bare invoke vs full per-frame latency, fps, memory, load time.

- ``bare_invoke_ms``: ``interpreter.invoke()`` alone on a fixed input (the floor).
- ``predict_ms``: :meth:`Predictor.predict` (preprocess -> invoke -> decode result).
- ``full_ms``: get the next frame from the source (decode a video frame, or take the next
  in-memory synthetic camera frame) + ``predict``: what one frame costs end to end.
- ``import_s`` / ``load_s``: ``import edge_runtime`` and creating the Predictor, measured in a
  fresh Python process (what a device pays at start-up; interpreter start-up itself excluded).
- ``peak_rss_mb``: the process's peak resident memory (Linux ``VmHWM``).
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SourceError
from .predictor import Predictor, PredictorOptions
from .spec import ModelSpec

SYNTHETIC = "synthetic"


def percentiles(ms: list[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99/mean/min/max of a list of milliseconds."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return {k: float("nan") for k in ("p50", "p95", "p99", "mean", "min", "max")}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "p50": round(float(p50), 4),
        "p95": round(float(p95), 4),
        "p99": round(float(p99), 4),
        "mean": round(float(a.mean()), 4),
        "min": round(float(a.min()), 4),
        "max": round(float(a.max()), 4),
    }


def synthetic_frames(width: int = 640, height: int = 480, n: int = 8) -> list[np.ndarray]:
    """A ring of BGR camera-sized frames with a moving blob (made once, reused)."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], 2)
    frames = []
    for i in range(n):
        f = base.astype(np.uint8)
        cx = int((0.2 + 0.6 * i / max(n - 1, 1)) * width)
        cy = height // 2
        f[cy - 20 : cy + 20, cx - 20 : cx + 20] = (40, 40, 230)
        frames.append(f)
    return frames


def parse_synthetic(source: str) -> tuple[int, int] | None:
    """``synthetic`` -> (640, 480); ``synthetic:320x240`` -> (320, 240); else None."""
    if source == SYNTHETIC:
        return 640, 480
    m = re.fullmatch(SYNTHETIC + r":(\d{1,5})x(\d{1,5})", source)
    if not m:
        if source.startswith(SYNTHETIC + ":"):
            raise SourceError(
                f"--source {source!r}: write synthetic:WIDTHxHEIGHT, e.g. synthetic:320x240"
            )
        return None
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise SourceError(f"--source {source!r}: width and height must be 16-8192 pixels")
    return w, h


def _frame_reader(
    source: str,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
) -> tuple[Iterator[np.ndarray], Any]:
    """(an endless iterator of BGR frames, a closer) from ``synthetic[:WxH]`` or anything
    ``edgereg run --source`` takes: a video file is decoded frame by frame and looped, an
    image folder or glob is read (and decoded) again from the start when it ends, a camera
    or stream gives its newest frame (so a model faster than the camera waits for it)."""
    size = parse_synthetic(source)
    if size is not None:
        frames = synthetic_frames(*size)

        def gen() -> Iterator[np.ndarray]:
            i = 0
            while True:
                yield frames[i % len(frames)]
                i += 1

        return gen(), None
    from .sources import open_source, parse_source

    kind, _ = parse_source(source)

    def open_() -> Any:
        return open_source(source, loop=True, width=width, height=height, fps=fps)

    holder = [open_()]

    def read() -> Iterator[np.ndarray]:
        while True:
            fr = holder[0].read()
            if fr is None and kind == "images":  # start the folder again
                holder[0].close()
                holder[0] = open_()
                fr = holder[0].read()
            if fr is None:
                raise SourceError(f"{source}: the source gave no more frames")
            yield fr.image

    class _Closer:
        def close(self) -> None:
            holder[0].close()

    return read(), _Closer()


def measure_startup(
    model_path: str | Path,
    num_threads: int | None = None,
    backend: str = "auto",
    spec: str | Path | None = None,
) -> dict[str, Any]:
    """``import edge_runtime`` + Predictor creation, timed inside a fresh Python process."""
    code = (
        "import sys, time, json\n"
        "t0 = time.perf_counter()\n"
        "import edge_runtime\n"
        "from edge_runtime.predictor import Predictor\n"
        "t1 = time.perf_counter()\n"
        "p = Predictor.create_from_model_path(sys.argv[1], num_threads=json.loads(sys.argv[2]), "
        "backend=sys.argv[3], spec=sys.argv[4] or None)\n"
        "t2 = time.perf_counter()\n"
        "print(json.dumps({'import_s': t1 - t0, 'load_s': t2 - t1}))\n"
    )
    args = [str(model_path), json.dumps(num_threads), backend, str(spec or "")]
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    wall = time.perf_counter() - t
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1][:300]
        return {"import_s": None, "load_s": None, "import_and_load_s": None, "startup_error": tail}
    d = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "import_s": round(d["import_s"], 4),
        "load_s": round(d["load_s"], 4),
        "import_and_load_s": round(d["import_s"] + d["load_s"], 4),
        "process_s": round(wall, 4),
    }


def run_bench(
    model_path: str | Path,
    frames: int = 200,
    num_threads: int | None = None,
    source: str = SYNTHETIC,
    backend: str = "auto",
    warmup: int = 10,
    startup: bool = True,
    camera_size: tuple[int | None, int | None, float | None] = (None, None, None),
    **predictor_kw: Any,
) -> dict[str, Any]:
    """Benchmark ``model_path``; returns a JSON-safe dict (see the module docstring).

    ``source``: ``synthetic[:WxH]`` or anything ``edgereg run --source`` takes;
    ``camera_size``: (width, height, fps) asked of a camera."""
    opts = PredictorOptions(
        model_path=model_path, num_threads=num_threads, backend=backend, **predictor_kw
    )
    reader, closer = _frame_reader(source, *camera_size)
    try:
        with Predictor.create_from_options(opts) as p:
            bare, full, pred, read, inv = _time_frames(p, reader, frames, warmup)
            facts = {
                "model": str(model_path),
                "model_size_bytes": p.model_size,
                "task": p.spec.task,
                "input": f"{p.spec.input_height}x{p.spec.input_width}x3 {p.input_dtype}",
                "backend": p.backend.name,
                "backend_version": p.backend.version,
                "threads": num_threads or os.cpu_count(),
            }
    finally:
        if closer is not None:
            closer.close()
    ms = {k: v * 1e3 for k, v in dict(bare=bare, pred=pred, full=full, read=read).items()}
    bare_s, full_s = percentiles(ms["bare"]), percentiles(ms["full"])
    pred_s = percentiles(ms["pred"])
    out: dict[str, Any] = {
        **facts,
        "source": source,
        "frames": frames,
        "bare_invoke_ms": bare_s,
        "predict_ms": pred_s,
        "read_frame_ms": percentiles(ms["read"]),
        "full_ms": full_s,
        # everything in a frame but invoke(), timed inside the same frame: immune to load drift
        "overhead_ms": percentiles(ms["full"] - inv * 1e3),
        "full_over_bare_p50": _ratio(full_s["p50"], bare_s["p50"]),
        "full_over_bare_min": _ratio(full_s["min"], bare_s["min"]),
        "predict_over_bare_p50": _ratio(pred_s["p50"], bare_s["p50"]),
        "fps": round(frames / float(full.sum()), 2) if full.sum() > 0 else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    if startup:
        out.update(_startup(model_path, num_threads, backend, predictor_kw.get("spec")))
    return out


def _time_frames(
    p: Predictor, reader: Iterator[np.ndarray], frames: int, warmup: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """run_bench's timing loop: ``frames`` frames after ``warmup``; returns seconds per
    frame of (bare invoke, full frame, predict, frame read, the predictor's own invoke)."""
    it = p.interpreter
    # Bare invoke and the full frame are measured alternately, so both see the same
    # machine load (a shared, busy CPU would otherwise skew their ratio).
    for _ in range(warmup):
        p.predict(next(reader))
        it.invoke()
    bare, full, pred, read, inv = (np.empty(frames) for _ in range(5))
    for i in range(frames):
        t = time.perf_counter()
        it.invoke()  # on the previous frame's input: the bare floor
        t0 = time.perf_counter()
        frame = next(reader)
        t1 = time.perf_counter()
        res = p.predict(frame)
        t2 = time.perf_counter()
        bare[i], read[i], pred[i], full[i] = t0 - t, t1 - t0, t2 - t1, t2 - t0
        inv[i] = res.invoke_ms / 1e3
    return bare, full, pred, read, inv


def _startup(
    model_path: str | Path, num_threads: int | None, backend: str, spec: Any
) -> dict[str, Any]:
    """run_bench's startup figures: :func:`measure_startup`, a spec object as a spec.json."""
    if isinstance(spec, ModelSpec):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "spec.json"
            path.write_text(spec.to_json())
            return measure_startup(model_path, num_threads, backend, path)
    return measure_startup(model_path, num_threads, backend, spec)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    Linux: ``VmHWM`` from /proc/self/status, which starts afresh at exec. ``ru_maxrss`` is
    carried over from the parent across fork+exec, so a bench started by a large process
    (e.g. one that imported TensorFlow) would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / (1024.0 * 1024.0)


def format_table(r: dict[str, Any]) -> str:
    """A human-readable table of a :func:`run_bench` result."""
    lines = [
        f"model   {r['model']}  ({r['model_size_bytes'] / 1024:.1f} KiB, {r['task']}, {r['input']})",
        f"backend {r['backend']} {r['backend_version']}, {r['threads']} threads, "
        f"{r['machine']}, Python {r['python']}, source {r['source']}, {r['frames']} frames",
        "",
        f"{'latency (ms)':<34}{'p50':>9}{'p95':>9}{'p99':>9}{'mean':>9}",
    ]
    rows = (
        ("bare invoke()", "bare_invoke_ms"),
        ("predict (pre+invoke+decode)", "predict_ms"),
        ("read frame", "read_frame_ms"),
        ("full per frame (read+predict)", "full_ms"),
        ("  of which not invoke()", "overhead_ms"),
    )
    for label, key in rows:
        s = r[key]
        lines.append(
            f"{label:<34}{s['p50']:>9.3f}{s['p95']:>9.3f}{s['p99']:>9.3f}{s['mean']:>9.3f}"
        )
    lines += [
        "",
        f"full / bare invoke (p50)     {r['full_over_bare_p50']}  (min: {r['full_over_bare_min']})",
        f"predict / bare invoke (p50)  {r['predict_over_bare_p50']}",
        f"throughput                   {r['fps']} fps (1 / mean full per frame)",
        f"peak RSS                     {r['peak_rss_mb']} MiB",
    ]
    if r.get("import_and_load_s") is not None:
        lines.append(
            f"import + model load          {r['import_and_load_s']} s "
            f"(import {r['import_s']} s, load {r['load_s']} s; fresh process)"
        )
    elif "startup_error" in r:
        lines.append(f"import + model load          failed: {r['startup_error']}")
    return "\n".join(lines)
