"""The demo's held-out video, its summary table and its one-page HTML report."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_runtime.atomic import atomic_path, atomic_write_text
from edge_runtime.images import read_image
from edge_runtime.spec import ModelSpec

VIDEO_FPS = 5.0


def write_heldout_video(val_dir: Path, out: Path, task: str) -> tuple[Path, int]:
    """One frame per held-out image, in dataset order, as an MJPG .avi (atomically)."""
    from train.dataset import load_dataset

    ds = load_dataset(val_dir, task)
    first = read_image(ds.samples[0].path)
    h, w = first.shape[:2]
    with atomic_path(out) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"{out}: OpenCV cannot write MJPG video here")
        try:
            for s in ds.samples:
                rgb = read_image(s.path)
                if rgb.shape[:2] != (h, w):  # stretched, like the model's own resize
                    rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    return out, len(ds.samples)


#: Keys of a JSON result that every task has (docs/result.schema.json); the rest are the
#: task's own fields.
_COMMON_KEYS = {"task", "raw", "frame_width", "frame_height", "invoke_ms", "total_ms"}


def _jsonl_predictions(path: Path, spec: ModelSpec) -> tuple[np.ndarray, list[float]]:
    """What ``edgereg run`` printed, back in the task's dataset form (and the latencies)."""
    from edge_runtime.postprocess import Result

    preds, lat = [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        r = rec["result"]
        lat.append(float(rec.get("latency_ms") or r.get("total_ms") or 0.0))
        fields = {k: v for k, v in r.items() if k not in _COMMON_KEYS}
        size = (r["frame_width"], r["frame_height"])
        res = Result(spec.task, np.asarray(r.get("raw", []), np.float32), fields, frame_size=size)
        preds.append(spec.task_kind.prediction(spec, res))
    return np.asarray(preds, dtype=np.float32), lat


def summarize(
    task: str, data: Path, run: Path, jsonl: dict[str, Path]
) -> tuple[str, list[dict[str, Any]]]:
    """One table: Keras vs each .tflite (verification) vs the video run, beside the baseline."""
    from train.dataset import load_dataset
    from train.metrics import compute_metrics, primary_metric

    spec = ModelSpec.from_json((run / "spec.json").read_text())
    key, higher = primary_metric(spec)
    keras_m = json.loads((run / "metrics.json").read_text())
    report = json.loads((run / "export" / "report.json").read_text())
    val = load_dataset(data / "val", task)
    train_ds = load_dataset(data / "train", task)
    sizes = np.array([(s.width, s.height) for s in val.samples], dtype=np.float32)
    baseline = keras_m.get(f"baseline_{key}")
    rows: list[dict[str, Any]] = [
        {
            "model": "Keras (float, workstation)",
            key: keras_m.get(key),
            "baseline": baseline,
            "size_kib": _size_kib(run / "model.keras"),
            "latency_ms": None,
        }
    ]
    checks = {c["variant"]: c for c in report.get("verification", [])}
    for f in report.get("files", []):
        c = checks.get(f["variant"], {})
        rows.append(
            {
                "model": f"{f['file']} (verify, val split)",
                key: c.get("value"),
                "baseline": baseline,
                "size_kib": f["size_bytes"] / 1024,
                "latency_ms": (c.get("latency_ms") or {}).get("all_threads"),
            }
        )
    for variant, path in jsonl.items():
        pred, lat = _jsonl_predictions(path, spec)
        m = compute_metrics(spec, val.targets(), pred, sizes, train_ds.targets())
        rows.append(
            {
                "model": f"model_{variant}.tflite via `edgereg run` on the video",
                key: m.get(key),
                "baseline": m.get(f"baseline_{key}"),
                "size_kib": _size_kib(run / "export" / f"model_{variant}.tflite"),
                "latency_ms": float(np.median(lat)) if lat else None,
                "frames": len(pred),
            }
        )
    better = "higher is better" if higher else "lower is better"
    head = f"| model | {key} ({better}) | baseline | size (KiB) | per-frame latency (ms) |"
    lines = [head, "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {_fmt(r[key])} | {_fmt(r['baseline'])} | "
            f"{_fmt(r['size_kib'], 1)} | {_fmt(r['latency_ms'], 2)} |"
        )
    return "\n".join(lines), rows


def _size_kib(p: Path) -> float | None:
    return p.stat().st_size / 1024 if p.exists() else None


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if digits <= 2 else f"{v:.{digits}g}"
    return str(v)


def _img(path: Path, caption: str | None = None) -> str:
    return _img_bytes(path.read_bytes(), path.stem, caption or path.stem.replace("_", " "))


def _img_bytes(png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    cls = ' class="still"' if "video" in alt else ""
    return (
        f'<figure{cls}><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _inline(text: str) -> str:
    """Escaped text with `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _table(cells: list[list[str]]) -> str:
    head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in cells[1:]
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _drop_title(md: str) -> str:
    """The Markdown without its first ``# `` title (the page has its own heading)."""
    lines = md.splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines)


def markdown_html(md: str) -> str:
    """The small Markdown the reports use (headings, tables, bullets, paragraphs) as HTML.

    Hand-written rather than a Markdown package: the reports are ours and use four
    constructs, and the demo must not need a dependency the device install lacks."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                if not set(lines[i].replace("|", "").strip()) <= set("-: "):
                    rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            out.append(_table(rows))
            continue
        if line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        if line.startswith("#"):
            level = min(4, len(line) - len(line.lstrip("#")) + 2)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif line:
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def training_html(run: Path) -> str:
    """The training summary: its header lines, the metrics beside the baseline as a table,
    and the not-learnt warning (if any) as a box."""
    summary = run / "summary.txt"
    if not summary.exists():
        return "<p>(no summary.txt)</p>"
    text = summary.read_text()
    head = text.split("\n\n", 1)[0].splitlines()[1:]
    parts = ["<ul>" + "".join(f"<li>{_inline(h)}</li>" for h in head) + "</ul>"]
    metrics = (
        json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    )
    rows = [["metric", "model", "baseline (training mean / majority)"]]
    for k, v in metrics.items():
        if f"baseline_{k}" in metrics and isinstance(v, (int, float)):
            rows.append([k, _fmt(float(v)), _fmt(metrics[f"baseline_{k}"])])
    if len(rows) > 1:
        parts.append(_table(rows))
    box = [ln.strip() for ln in text.splitlines()]
    if any(ln.startswith("WARNING:") for ln in box):
        start = next(j for j, ln in enumerate(box) if ln.startswith("WARNING:"))
        body = [ln for ln in box[start:] if ln and not set(ln) <= {"!"}]
        items = "".join(f"<li>{_inline(ln.lstrip('- '))}</li>" for ln in body[1:])
        parts.append(f'<div class="warn"><p><b>{_inline(body[0])}</b></p><ul>{items}</ul></div>')
    return "\n".join(parts)


def video_still(video: Path, index: int = 0) -> bytes | None:
    """One frame of the annotated video as PNG bytes (None when it cannot be read)."""
    cap = cv2.VideoCapture(str(video))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, img = cap.read()
    finally:
        cap.release()
    if not ok or img is None:
        return None
    ok, png = cv2.imencode(".png", img)
    return png.tobytes() if ok else None


def device_html(jsonl: Path | None, n: int = 4) -> str:
    """What the device printed for the first ``n`` frames: a table (frame, time, latency,
    the task's fields) and the lines themselves."""
    lines = device_lines(jsonl, n)
    if not lines or jsonl is None:
        return ""
    common = {"task", "frame_width", "frame_height", "invoke_ms", "total_ms", "raw"}
    rows = []
    for line in lines:
        rec = json.loads(line)
        r = rec["result"]
        fields = {k: v for k, v in r.items() if k not in common}
        rows.append(
            f"<tr><td>{rec['frame']}</td><td>{_fmt(rec['t'], 1)}</td>"
            f"<td>{_fmt(rec['latency_ms'], 2)}</td>"
            f"<td>{r['frame_width']}×{r['frame_height']}</td>"
            f"<td>{html.escape(json.dumps(fields, separators=(', ', ': ')))}</td></tr>"
        )
    head = (
        "<tr><th>frame</th><th>t (ms)</th><th>latency (ms)</th><th>frame size</th>"
        "<th>result</th></tr>"
    )
    return (
        f"<p>What <code>edgereg run</code> wrote for the first {len(lines)} frames "
        f"(<code>{html.escape(jsonl.name)}</code>, one JSON line per frame; schema: "
        "<code>docs/result.schema.json</code>):</p>"
        f'<div class="scroll"><table class="device"><thead>{head}</thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
        f'<details><summary>the lines as written</summary><pre class="device">'
        f"{html.escape(chr(10).join(lines))}</pre></details>"
    )


def device_lines(jsonl: Path | None, n: int = 3) -> list[str]:
    """The first ``n`` JSON lines `edgereg run` printed."""
    if jsonl is None or not jsonl.exists():
        return []
    with jsonl.open() as f:
        return [line.rstrip("\n") for _, line in zip(range(n), f, strict=False)]


_CSS = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
td, th { border: 1px solid #bbb; padding: 4px 8px; text-align: right; vertical-align: top; }
td:first-child, th:first-child { text-align: left; }
th { background: #f0f0f0; }
figure { display: inline-block; margin: 6px; vertical-align: top; }
img { max-width: 100%; } figure img { max-width: 520px; }
table { font-size: 0.92em; }
td:not(:first-child) { white-space: nowrap; }
td code { white-space: nowrap; }
pre { background: #f4f4f4; padding: 8px; white-space: pre-wrap; overflow-wrap: anywhere; }
code { background: #f4f4f4; padding: 0 2px; }
figure.still img { width: 480px; max-width: 100%; image-rendering: pixelated; }
table.device td:last-child { white-space: normal; font-family: monospace; text-align: left; }
.warn { border: 2px solid #c00; background: #fff4f4; padding: 4px 12px; margin: 1em 0; }
"""


def write_html(
    out: Path,
    task: str,
    run: Path,
    table_md: str,
    rows: list[dict[str, Any]],
    video: Path,
    jsonl: Path | None = None,
) -> Path:
    """A one-page report: the results table, a still of the annotated video and a link to
    it, what the device printed for a few frames, the plots, the training summary and the
    conversion report, as HTML tables (images inline)."""
    md_rows = [r for r in table_md.splitlines() if r.startswith("|") and not r.startswith("|---")]
    results = _table([[c.strip() for c in r.strip().strip("|").split("|")] for r in md_rows])
    plots = sorted((run / "plots").glob("*.png")) if (run / "plots").is_dir() else []
    conv = run / "export" / "report.md"
    still = video_still(video) if video.exists() else None
    link = os.path.relpath(video, out.parent)
    still_html = (
        _img_bytes(still, "annotated video, first frame", "first frame of the annotated video")
        if still
        else "<p>(no still: the video could not be read)</p>"
    )
    device = device_html(jsonl)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgereg demo: {html.escape(task)}</title>
<style>{_CSS}</style></head><body>
<h1>edgereg demo: {html.escape(task)}</h1>
<p>Sample data → fine-tuned MobileNet → TFLite (fp32, int8) → the device runtime on a video
of held-out frames. Metrics are on the held-out images, in the task's units, beside the
trivial baseline (predicting the training mean / majority class).</p>
{results}
<h2>On the device</h2>
{still_html}
<p>Annotated video: <a href="{html.escape(link)}">{html.escape(video.name)}</a></p>
{device}
<h2>Plots</h2>
{"".join(_img(p) for p in plots)}
<h2>Training summary</h2>
{training_html(run)}
<h2>Conversion report</h2>
{markdown_html(_drop_title(conv.read_text())) if conv.exists() else "<p>(none)</p>"}
</body></html>
"""
    atomic_write_text(out, page)
    return out
