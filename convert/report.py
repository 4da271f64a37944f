"""``export/report.json`` and ``export/report.md``: what was exported and how well it does."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edge_runtime.atomic import atomic_write_json, atomic_write_text


def write_report(export_dir: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write both files atomically; returns their paths."""
    d = Path(export_dir)
    j = atomic_write_json(d / "report.json", report)
    m = atomic_write_text(d / "report.md", render_markdown(report))
    return j, m


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def render_markdown(report: dict[str, Any]) -> str:
    """A human-readable table of the report."""
    checks = {c["variant"]: c for c in report.get("verification", [])}
    keras = report.get("keras") or {}
    key = keras.get("metric_key")
    files = report.get("files", [])
    lines = _summary_lines(report, keras)
    lines += _variant_table(files, checks, key)
    lines += _footnote_lines(files, checks)
    lines += _notes_lines(report.get("notes") or [])
    lines += _selective_lines(report.get("selective"))
    lines += _edgetpu_lines(report.get("edgetpu"))
    lines += _gate_lines(report.get("gate"))
    return "\n".join(lines)


def _summary_lines(report: dict[str, Any], keras: dict[str, Any]) -> list[str]:
    """Step 1 of render_markdown: the title, the run's task and data, the Keras figure."""
    lines = [f"# Conversion report: {report.get('run', '')}", ""]
    spec = report.get("spec", {})
    lines.append(
        f"Task `{spec.get('task', '?')}`, input {spec.get('input_width', '?')}x"
        f"{spec.get('input_height', '?')}, int8 I/O `{report.get('io', 'float')}`, "
        f"{report.get('calibration_images', 0)} calibration images, "
        f"{report.get('validation_images', 0)} validation images."
    )
    lines.append("")
    key = keras.get("metric_key")
    if key:
        lines.append(f"Keras model: {key} = {_fmt(keras.get('value'))}")
        lines.append("")
    return lines


def _variant_table(
    files: list[dict[str, Any]], checks: dict[str, dict[str, Any]], key: str | None
) -> list[str]:
    """Step 2 of render_markdown: one row per exported file, with its verification."""
    header = (
        "| variant | file | size (KiB) | I/O | "
        + (f"{key} | change vs Keras | rel. drop | " if key else "")
        + "max / mean disagreement | latency 1 thread (ms) | latency all threads (ms) |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for f in files:
        c = checks.get(f["variant"], {})
        dis = c.get("disagreement_user") or {}
        dis_txt = " / ".join(_fmt(v, 3) for k, v in dis.items() if "label" not in k) or "–"
        row = [
            f["variant"],
            f"`{f['file']}`",
            f"{f['size_bytes'] / 1024:.1f}",
            f.get("io", "float"),
        ]
        if key:
            row += [
                _fmt(c.get("value")),
                _fmt(c.get("change")),
                pct_se(c["relative_drop"], c.get("relative_drop_se"), 1)
                if "relative_drop" in c
                else "–",
            ]
        lat = c.get("latency_ms") or {}
        row += [dis_txt, _fmt(lat.get("1_thread"), 3), _fmt(lat.get("all_threads"), 3)]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


def _footnote_lines(files: list[dict[str, Any]], checks: dict[str, dict[str, Any]]) -> list[str]:
    """Step 3 of render_markdown: which files carry standard metadata; what disagreement is."""
    lines: list[str] = []
    standard = [f["file"] for f in files if f.get("standard_metadata")]
    if standard:
        lines.append(
            "Standard TFLite Metadata (model and tensor descriptions, input normalization, "
            "class labels) in " + ", ".join(f"`{n}`" for n in standard) + ": MediaPipe Tasks, "
            "Android Studio's ML model binding and Netron read it (docs/conversion.md)."
        )
        lines.append("")
    if checks:
        lines.append(
            "Disagreement is |TFLite − Keras| on the validation images in user units "
            "(px of the original image, the value's units, or probability)."
        )
        lines.append("")
    return lines


def _notes_lines(notes: list[str]) -> list[str]:
    """Step 4 of render_markdown: the conversion's notes, when any."""
    if not notes:
        return []
    return ["## Notes", *(f"- {n}" for n in notes), ""]


def _edgetpu_lines(et: dict[str, Any] | None) -> list[str]:
    """Step 6 of render_markdown: the Edge TPU analysis and what the compiler said."""
    if not et:
        return []
    lines = ["## Edge TPU"]
    a = et.get("analysis", {})
    lines.append(f"- {et.get('summary', '')}")
    for s in a.get("suggestions", []):
        lines.append(f"- suggestion: {s}")
    comp = et.get("compiler", {})
    lines.append(f"- compiler: {comp.get('message', '')}")
    log = comp.get("log") or {}
    for k in ("on_chip_memory_used", "off_chip_memory_used", "ops_on_tpu", "ops_on_cpu"):
        if k in log:
            lines.append(f"- {k.replace('_', ' ')}: {log[k]}")
    if log.get("operations"):
        lines += ["", "| operator | count | status |", "|---|---|---|"]
        lines += [f"| {r['operator']} | {r['count']} | {r['status']} |" for r in log["operations"]]
    lines.append("")
    return lines


def _gate_lines(gate: dict[str, Any] | None) -> list[str]:
    """Step 7 of render_markdown: the --max-drop gate's verdict, when one was asked for."""
    if not gate:
        return []
    return [f"## Gate\n\n--max-drop {gate['max_drop']}: {gate['result']}", ""]


def pct_se(drop: float, se: float | None, digits: int = 2) -> str:
    """``+8.46 % ± 2.0`` : a relative change and its standard error, in percent."""
    txt = f"{100 * drop:+.{digits}f} %"
    if se is not None and math.isfinite(se):
        txt += f" ± {100 * se:.1f}"
    return txt


def _selective_lines(sel: dict[str, Any] | None) -> list[str]:
    """The int8_mixed search: what was tried, what was kept in float, the worst layers."""
    if not sel:
        return []
    lines = ["## Selective quantization (int8_mixed)", ""]
    lines.append(
        f"Target: int8 within {100 * sel['target']:g} % of float; "
        f"{sel['layers_measured']} quantized layers measured with TFLite's QuantizationDebugger."
    )
    ch = sel.get("chosen")
    if ch:
        ok = "within the target" if sel.get("within_target") else "NOT within the target"
        lines.append(
            f"Kept in float ({ch['order']} order, {len(ch['denylisted'])} layer(s), "
            f"{pct_se(ch['relative_drop'], ch.get('se'))} vs float, {ok}): "
            + ", ".join(f"`{n}`" for n in ch.get("layers", []))
        )
    lines += ["", "| order | float layers | change vs float (± standard error) |", "|---|---|---|"]
    lines += [
        f"| {t['order']} | {t['float_layers']} | {pct_se(t['relative_drop'], t.get('se'))} |"
        for t in sel.get("tried", [])
    ]
    lines += ["", "| worst layers (error per int8 step) | op | rmse / scale |", "|---|---|---|"]
    lines += [
        f"| `{w['layer']}` | {w['op']} | {w['rmse_over_scale']:.3g} |"
        for w in sel.get("worst_layers", [])[:5]
    ]
    return lines + [""]
