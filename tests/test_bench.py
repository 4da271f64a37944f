"""`edgereg bench` on a tiny real model, in a real subprocess. No timing is asserted."""

from __future__ import annotations

import json

import cv2
import numpy as np
from models import make_tflite

KEYS = {
    "model",
    "model_size_bytes",
    "backend",
    "threads",
    "frames",
    "source",
    "bare_invoke_ms",
    "predict_ms",
    "full_ms",
    "full_over_bare_p50",
    "full_over_bare_min",
    "overhead_ms",
    "fps",
    "peak_rss_mb",
    "import_s",
    "load_s",
    "import_and_load_s",
}


def test_bench_prints_table_and_writes_json(tmp_path, run_cli):
    model = make_tflite(tmp_path, "point", "int8", "uint8")
    out = tmp_path / "bench.json"
    r = run_cli("bench", model, "--frames", "30", "--threads", "1", "--json", out, timeout=300)
    assert r.returncode == 0, r.stderr
    for label in ("bare invoke()", "full per frame", "p50", "p95", "p99", "peak RSS", "import"):
        assert label in r.stdout
    d = json.loads(out.read_text())
    assert KEYS <= set(d)
    assert d["frames"] == 30 and d["threads"] == 1 and d["backend"] == "litert"
    assert d["model_size_bytes"] == model.stat().st_size
    for k in ("bare_invoke_ms", "predict_ms", "full_ms", "overhead_ms"):
        assert set(d[k]) >= {"p50", "p95", "p99"} and d[k]["p50"] > 0
    assert d["peak_rss_mb"] > 0 and d["import_s"] > 0 and d["load_s"] > 0


def test_bench_on_a_video_source(tmp_path, run_cli):
    model = make_tflite(tmp_path, "value", "fp32", "float")
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        w.write(np.full((48, 64, 3), 40 * i, np.uint8))
    w.release()
    out = tmp_path / "b.json"
    r = run_cli("bench", model, "--frames", "12", "--source", video, "--no-startup", "--json", out)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["source"] == str(video) and d["read_frame_ms"]["p50"] > 0 and "import_s" not in d


def test_bench_bad_model_is_a_clear_error(tmp_path, run_cli):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"nope" * 10)
    r = run_cli("bench", bad)
    assert r.returncode == 5 and "x.tflite" in r.stderr and "Traceback" not in r.stderr


def test_bench_bare_model_with_spec_file(tmp_path, run_cli):
    model = make_tflite(tmp_path, "class", embed=False)
    out = tmp_path / "b.json"
    r = run_cli(
        "bench", model, "--spec", model.with_suffix(".spec.json"), "--frames", "5", "--json", out
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["task"] == "class" and d["import_and_load_s"] > 0 and "startup_error" not in d
    # without the spec: a clear SpecError exit code naming what to pass
    r = run_cli("bench", model, "--frames", "5")
    assert r.returncode == 6 and "--spec spec.json" in r.stderr


def test_peak_rss_is_the_process_own_not_its_parents():
    """ru_maxrss survives fork+exec on Linux; a bench started by a big parent must not report it."""
    import subprocess
    import sys

    code = (
        "import subprocess, sys\n"
        "big = bytearray(400 * 1024 * 1024)\n"
        "big[::4096] = b'x' * len(big[::4096])\n"
        "out = subprocess.run([sys.executable, '-c', "
        "'from edge_runtime.bench import peak_rss_mb; print(peak_rss_mb())'], "
        "capture_output=True, text=True, check=True)\n"
        "print(out.stdout.strip())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) < 200  # the child's own peak, not the parent's ~400 MB


def test_bench_synthetic_frame_size_and_a_bad_one(tmp_path, run_cli):
    from edge_runtime.bench import parse_synthetic

    assert parse_synthetic("synthetic") == (640, 480)
    assert parse_synthetic("synthetic:320x240") == (320, 240)
    assert parse_synthetic("clip.mp4") is None
    model = make_tflite(tmp_path, "point", "fp32", "float")
    out = tmp_path / "b.json"
    r = run_cli(
        "bench", model, "--frames", "5", "--source", "synthetic:80x60", "--no-startup",
        "--json", out,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["source"] == "synthetic:80x60"
    r = run_cli("bench", model, "--frames", "5", "--source", "synthetic:big")
    assert r.returncode == 11 and "synthetic:WIDTHxHEIGHT" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_bench_takes_every_source_run_takes(tmp_path, run_cli):
    """Image folder, glob and a real HTTP stream, like `edgereg run --source`; a missing
    camera is exit 11; --json over an input is refused (exit 13) before anything runs."""
    import functools
    import http.server
    import threading

    model = make_tflite(tmp_path, "point", "fp32", "float")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        cv2.imwrite(str(imgs / f"im{i}.png"), np.full((48, 64, 3), 60 * i, np.uint8))
    clip = tmp_path / "www" / "clip.avi"
    clip.parent.mkdir()
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(60):
        w.write(np.full((48, 64, 3), 4 * i, np.uint8))
    w.release()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=clip.parent)
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/clip.avi"
    try:
        for source in (str(imgs), str(imgs / "im*.png"), url):
            out = tmp_path / "b.json"
            r = run_cli("bench", model, "--frames", "8", "--warmup", "1", "--source", source,
                        "--no-startup", "--json", out)  # fmt: skip
            assert r.returncode == 0, (source, r.stderr[-2000:])
            d = json.loads(out.read_text())
            assert d["source"] == source and d["frames"] == 8 and d["read_frame_ms"]["p50"] > 0
    finally:
        server.shutdown()
        server.server_close()
    r = run_cli("bench", model, "--frames", "2", "--source", "57", "--no-startup")
    assert r.returncode == 11 and "camera 57" in r.stderr and "Traceback" not in r.stderr
    before = clip.read_bytes()
    r = run_cli("bench", model, "--frames", "2", "--source", clip, "--json", clip)
    assert r.returncode == 13 and "--json" in r.stderr and clip.read_bytes() == before
