"""One output contract: every task's REAL `edgereg run` output against docs/result.schema.json.

The schema is validated with the `jsonschema` package (Draft 2020-12), extended with the
`x-decimals` annotation the schema uses to say how each number is rounded. The MQTT
payload and the live view's /latest.json must be the same record as the JSON line.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest
from models import make_tflite
from subproc import ENV, edgereg
from test_run import colour_frame, json_lines, write_video

from edge_runtime import tasks
from edge_runtime.schema import line_schema
from edge_runtime.spec import ModelSpec

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "result.schema.json"


def _decimals(validator, n, instance, schema):
    if isinstance(instance, float) and round(instance, n) != instance:
        yield jsonschema.ValidationError(f"{instance!r} has more than {n} decimals")


Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"x-decimals": _decimals})


def errors(schema: dict, instance: dict) -> list[str]:
    """Every error, with those inside a oneOf branch (the task's fields) spelled out."""

    def walk(es):
        for e in es:
            yield f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            yield from walk(e.context or [])

    return list(walk(Validator(schema).iter_errors(instance)))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("schema")
    video = write_video(d / "colours.avi", [colour_frame(i) for i in range(4)])
    built = {t: make_tflite(d, t, size=32) for t in tasks.names()}
    built["value"] = make_tflite(d, "value", variant="int8", io="uint8", size=32)
    return d, built, video


def test_docs_schema_is_the_generated_one_and_a_valid_schema():
    doc = json.loads(DOC.read_text())
    jsonschema.Draft202012Validator.check_schema(doc)
    assert doc == line_schema(), (
        "regenerate: python -m edge_runtime.schema > docs/result.schema.json"
    )
    branches = [b["title"] for b in doc["properties"]["result"]["oneOf"]]
    assert branches == list(tasks.names())  # every registered task kind declares its fields
    assert "docs/result.schema.json" in (REPO / "docs" / "runtime.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["point", "keypoints", "value", "class", "angle"])
def test_real_run_output_matches_the_schema(models, task):
    d, built, video = models
    extra = ["--raw"] if task == "value" else []
    out = edgereg("run", built[task], "--source", video, "--json", "-", *extra, cwd=d)
    assert out.returncode == 0, out.stderr
    recs = json_lines(out.stdout)
    assert len(recs) == 4
    spec = ModelSpec.from_json(built[task].with_suffix(".spec.json").read_text())
    doc = json.loads(DOC.read_text())
    for rec in recs:
        assert errors(doc, rec) == []
        assert errors(line_schema(spec), rec) == []  # exact: names, counts, decimals
        r = rec["result"]
        assert (r["frame_width"], r["frame_height"]) == (64, 48)
        assert ("raw" in r) == (task == "value")  # only with --raw
        assert "timestamp_ms" not in r and rec["t"] is not None  # the time is said once
    # what the schema forbids really is refused
    bad = json.loads(json.dumps(recs[0]))
    bad["result"]["timestamp_ms"] = bad["t"]
    assert errors(doc, bad)
    bad = json.loads(json.dumps(recs[0]))
    bad["result"]["task"] = "point" if task != "point" else "value"
    assert errors(doc, bad)


def test_decimals_are_checked():
    spec = ModelSpec(task="value", input_height=32, input_width=32, value_range=(80.0, 350.0))
    rec = {
        "frame": 0,
        "t": 0.0,
        "latency_ms": 1.25,
        "file": None,
        "result": {
            "task": "value",
            "value": 123.456,
            "frame_width": 64,
            "frame_height": 48,
            "invoke_ms": 1.0,
            "total_ms": 1.5,
        },
    }
    assert any("decimals" in e for e in errors(line_schema(spec), rec))  # 270 -> 0.01
    rec["result"]["value"] = 123.46
    assert errors(line_schema(spec), rec) == []


@pytest.mark.slow
def test_mqtt_payload_and_latest_json_are_the_json_line(models, tmp_path):
    from broker import Mosquitto, Subscriber

    d, built, _ = models
    video = write_video(tmp_path / "long.avi", [colour_frame(i % 4) for i in range(40)], fps=20)
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Subscriber(broker.port, "edgereg/#")
    jsonl = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgereg", "run", built["class"], "--source", video, "--loop",
         "--json", jsonl, "--mqtt", f"mqtt://127.0.0.1:{broker.port}/edgereg/test",
         "--device-id", "cam1", "--serve", "127.0.0.1:0", "--no-status"],
        cwd=d, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = None
        for line in proc.stderr:
            if line.startswith("[serve] live view at "):
                url = line.split(" at ", 1)[1].split()[0]
                break
        assert url, "no live view URL"
        latest = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(url.rstrip("/") + "/latest.json", timeout=10) as r:
                    latest = json.loads(r.read())
                    break
            except urllib.error.HTTPError:  # 503 until the first frame
                time.sleep(0.1)
        assert latest is not None
        assert sub.wait_for(lambda ms: len(ms) >= 5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        sub.close()
        broker.stop()
    lines = {r["frame"]: r for r in json_lines(jsonl.read_text())}
    doc = json.loads(DOC.read_text())
    assert latest == lines[latest["frame"]]
    assert errors(doc, latest) == []
    payloads = [json.loads(m.payload) for m in sub.messages if not m.topic.endswith("/status")]
    assert payloads
    for p in payloads:
        assert errors(doc, p) == []
        assert p.pop("device") == "cam1"
        assert p == lines[p["frame"]]
