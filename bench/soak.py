"""Soak benchmark: the device runtime over many frames, watching for leaks and drift.

    python -m bench.soak --frames 20000                  # every frame of a looping video
    python -m bench.soak --frames 20000 --mode latest    # grabber thread + a reconnect
                                                         # at every loop of the file
    python -m bench.soak --model my.tflite --video clip.mp4 --json soak.json

Per frame: source -> ``Predictor.predict`` -> JSON line (to /dev/null) -> annotated frame.
Reports RSS after warm-up (the first 10 % of frames) vs at the end, open file
descriptors and threads after warm-up vs at the last frame (and after closing), and latency in the first vs the last 10 % of frames. Without ``--model`` a
tiny real model is built first in a separate process (that one needs TensorFlow; this
process never imports it) and a test video is written with OpenCV.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def make_video(path: Path, n: int = 120, size: tuple[int, int] = (320, 240)) -> Path:
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    for i in range(n):
        img = np.full((h, w, 3), 30, np.uint8)
        x = int(w * (0.1 + 0.8 * i / n))
        cv2.circle(img, (x, h // 2), 10, (0, 0, 255), -1)
        writer.write(img)
    writer.release()
    return path


def make_model(out_dir: Path) -> Path:
    """A tiny real int8 point model, built in a child process (TensorFlow stays there)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[2]);"
        "from models import make_tflite;"
        "print(make_tflite(sys.argv[1], 'point', variant='int8', io='uint8', size=96))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(out_dir), str(REPO / "tests")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return Path(out.stdout.strip().splitlines()[-1])


def soak(model: Path, video: Path, frames: int, mode: str, threads: int | None) -> dict:
    from edge_runtime.draw import annotate
    from edge_runtime.predictor import Predictor
    from edge_runtime.sinks import JsonlSink
    from edge_runtime.sources import LiveSource, _open_video_file, open_source

    if mode == "every":
        src = open_source(str(video), every_frame=True, loop=True)
    else:
        # newest-frame grabber; every end of the file is a "lost camera" and a reopen
        src = LiveSource(
            str(video), lambda: _open_video_file(video), backoff_initial=0.001, backoff_max=0.01
        )
    sink = JsonlSink(os.devnull)
    lat = np.zeros(frames, np.float64)
    warm = max(frames // 10, 1)
    fd_warm = th_warm = 0
    rss_warm = None
    rss_samples = []
    t0 = time.monotonic()
    with Predictor.create_from_model_path(model, color_order="BGR", num_threads=threads) as p:
        for i in range(frames):
            frame = src.read()
            if frame is None:
                raise RuntimeError(f"source ended after {i} frames")
            res = p.predict(frame.image, frame.timestamp_ms)
            latency = (time.monotonic() - frame.captured) * 1000.0
            sink.write(frame, res, latency)
            annotate(frame.image, res, p.spec)
            lat[i] = res.total_ms
            if i + 1 == warm:
                rss_warm = rss_mb()
                fd_warm, th_warm = fd_count(), threading.active_count()
            if (i + 1) % max(frames // 10, 1) == 0:
                rss_samples.append(round(rss_mb(), 2))
        fd_last, th_last = fd_count(), threading.active_count()
    elapsed = time.monotonic() - t0
    stats = src.stats
    src.close()
    sink.close()
    rss_end = rss_mb()
    k = max(frames // 10, 1)
    first, last = lat[:k], lat[-k:]
    return {
        "mode": mode,
        "frames": frames,
        "model": model.name,
        "video": video.name,
        "elapsed_s": round(elapsed, 1),
        "fps": round(frames / elapsed, 1),
        "rss_after_warmup_mb": round(rss_warm or float("nan"), 2),
        "rss_end_mb": round(rss_end, 2),
        "rss_growth_after_warmup_mb": round(rss_end - (rss_warm or rss_end), 2),
        "rss_samples_mb": rss_samples,
        "fd_after_warmup": fd_warm,
        "fd_at_last_frame": fd_last,
        "fd_after_close": fd_count(),
        "threads_after_warmup": th_warm,
        "threads_at_last_frame": th_last,
        "threads_after_close": threading.active_count(),
        "latency_first10_ms": {
            "mean": round(float(first.mean()), 3),
            "p50": round(float(np.median(first)), 3),
        },
        "latency_last10_ms": {
            "mean": round(float(last.mean()), 3),
            "p50": round(float(np.median(last)), 3),
        },
        "latency_drift_pct": round(
            100.0 * (np.median(last) - np.median(first)) / max(np.median(first), 1e-9), 1
        ),
        "dropped": stats.dropped,
        "reconnects": stats.reconnects,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--mode", choices=["every", "latest"], default="every")
    ap.add_argument("--model", type=Path, help="a .tflite with a spec (default: build a tiny one)")
    ap.add_argument("--video", type=Path, help="video to loop (default: make one)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        model = args.model or make_model(Path(d))
        video = args.video or make_video(Path(d) / "soak.avi")
        report = soak(model, video, args.frames, args.mode, args.threads)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
    report["imported_tensorflow"] = bool(heavy)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        from edge_runtime.atomic import atomic_write_text

        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
