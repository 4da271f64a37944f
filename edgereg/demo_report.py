"""The demo's held-out video, its summary table and its one-page HTML report."""

from __future__ import annotations

import base64
import html
import json
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


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'
        f"<figcaption>{html.escape(path.stem.replace('_', ' '))}</figcaption></figure>"
    )


def write_html(
    out: Path, task: str, run: Path, table_md: str, rows: list[dict[str, Any]], video: Path
) -> Path:
    """A one-page report: the table, the conversion report and the run's plots, inline."""
    md_rows = [r for r in table_md.splitlines() if r.startswith("|") and not r.startswith("|---")]
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in md_rows]
    thead = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
    tbody = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells[1:]
    )
    plots = sorted((run / "plots").glob("*.png")) if (run / "plots").is_dir() else []
    conv = run / "export" / "report.md"
    summary = run / "summary.txt"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgereg demo: {html.escape(task)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #bbb; padding: 4px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 6px; }} img {{ max-width: 520px; }}
pre {{ background: #f4f4f4; padding: 8px; overflow-x: auto; }}
</style></head><body>
<h1>edgereg demo: {html.escape(task)}</h1>
<p>Sample data → fine-tuned MobileNet → TFLite (fp32, int8) → the device runtime on a video
of held-out frames. Metrics are on the held-out images, in the task's units, beside the
trivial baseline (predicting the training mean / majority class).</p>
<table><thead><tr>{thead}</tr></thead><tbody>{tbody}</tbody></table>
<p>Annotated video: <code>{html.escape(video.name)}</code></p>
<h2>Plots</h2>
{"".join(_img(p) for p in plots)}
<h2>Training summary</h2>
<pre>{html.escape(summary.read_text()) if summary.exists() else "(none)"}</pre>
<h2>Conversion report</h2>
<pre>{html.escape(conv.read_text()) if conv.exists() else "(none)"}</pre>
</body></html>
"""
    atomic_write_text(out, page)
    return out
