"""``python -m bench.run_outputs``: what the run-side outputs cost (docs/reliability.md).

- ``video``: the time ``VideoSink.close()`` takes for a video of 10, 10,000 and 100,000
  frames, beside the old completeness check (demux every frame back with OpenCV and
  count them) on the same finished file.
- ``sinks``: the frame loop's cost per result of each sink's ``write()``: JSON lines to
  a file, the MQTT queue in memory and on disk (``--mqtt-spool``; no broker: the sender
  thread only tries to connect), and the live view with nobody watching.

    python -m bench.run_outputs --json run_outputs.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_runtime.postprocess import Result
from edge_runtime.sinks import JsonlSink, VideoSink
from edge_runtime.sources import Frame


def _count_frames(path: Path) -> int:
    """The old check: OpenCV demuxes the whole file back (what close() used to do)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened() and cap.grab():
        n += 1
    cap.release()
    return n


def video_close(counts: list[int], size: tuple[int, int], suffix: str) -> list[dict[str, Any]]:
    rows = []
    rng = np.random.default_rng(0)
    ring = [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in range(8)]
    with tempfile.TemporaryDirectory() as d:
        for n in counts:
            path = Path(d) / f"v{n}{suffix}"
            sink = VideoSink(path, fps=30)
            t = time.perf_counter()
            for i in range(n):
                sink.write_image(ring[i % len(ring)])
            write_s = time.perf_counter() - t
            t = time.perf_counter()
            sink.close()
            close_s = time.perf_counter() - t
            t = time.perf_counter()
            found = _count_frames(path)
            old_s = time.perf_counter() - t
            rows.append(
                {
                    "frames": n,
                    "bytes": path.stat().st_size,
                    "write_s": round(write_s, 2),
                    "close_ms": round(close_s * 1000, 2),
                    "old_check_ms": round(old_s * 1000, 2),
                    "frames_read_back": found,
                }
            )
            path.unlink()
            print(rows[-1], flush=True)
    return rows


def sink_costs(n: int) -> dict[str, float]:
    from edge_runtime.liveview import LiveViewSink
    from edge_runtime.mqtt import MqttOptions, MqttSink

    pts = np.array([[0.41, 0.52]])
    result = Result("point", pts.ravel(), {"points": pts, "points_px": pts * [320, 240]})
    frames = [Frame(np.zeros((240, 320, 3), np.uint8), i, i * 33.3) for i in range(n)]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        makers = {
            "jsonl_file": lambda: JsonlSink(Path(d) / "o.jsonl"),
            "mqtt_memory_queue": lambda: MqttSink(
                MqttOptions(url="mqtt://127.0.0.1:9/t", queue=n + 1, drain_s=0, env={})
            ),
            "mqtt_spool_on_disk": lambda: MqttSink(
                MqttOptions(
                    url="mqtt://127.0.0.1:9/t",
                    queue=n + 1,
                    drain_s=0,
                    spool=Path(d) / "spool",
                    env={},
                )  # fmt: skip
            ),
            "live_view_nobody_watching": lambda: LiveViewSink("127.0.0.1:0"),
        }
        for name, make in makers.items():
            sink = make()
            t = time.perf_counter()
            for f in frames:
                sink.write(f, result, 1.0, None)
            out[name] = round((time.perf_counter() - t) / n * 1e6, 2)  # microseconds
            sink.abort()
            print(name, out[name], "us per result", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="10,10000,100000")
    ap.add_argument("--size", default="160x120", help="video frame size WxH")
    ap.add_argument("--suffix", default=".avi")
    ap.add_argument("--sink-results", type=int, default=5000)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    report = {
        "machine": platform.machine(),
        "video_close": video_close([int(c) for c in a.counts.split(",")], (w, h), a.suffix),
        "video_size": a.size,
        "sink_write_us": sink_costs(a.sink_results),
    }
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
