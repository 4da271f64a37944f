"""``python -m bench``: regenerate every benchmark figure, side by side, in one run.

For each task it makes the sample dataset, trains edgereg's default recipe, converts
every variant (verified through the device runtime), trains the user question's own
network on the same data for the same wall clock, and measures the device runtime
(bare invoke vs full per-frame latency, import + load time, peak RSS, sizes). Then it
measures the training input pipeline against the model's own train step.

    python -m bench               # full mode: the published numbers (about 1-2 h on 2 cores)
    python -m bench --quick       # tiny sizes: proves the harness runs (CI)
    python -m bench --tasks point,value
    python -m bench --tasks keypoints-outside   # a task's variant (its BenchVariant)

A variant (``TrainTask.bench_variants``) makes the task's sample data with some of its
sample options, trains on it, and also trains on the same data WITHOUT the rows the
variant is about (what a user had to do when such rows were refused); both models are
scored on the whole validation split and on each group of rows.

Full mode rewrites the generated part of docs/benchmarks.md (between the markers), with
the machine it ran on and the command; quick mode writes only into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from convert.report import pct_se
from edge_runtime.atomic import atomic_write_text
from train import tasks as train_tasks

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
#: Task variants have their own generated section: running one alone leaves the rest.
VBEGIN, VEND = "<!-- bench:variants:begin -->", "<!-- bench:variants:end -->"
#: Every task kind with a sample generator (train/tasks), in the registry's order.
TASKS = tuple(t.name for t in train_tasks.tasks() if t.samples() is not None)
#: Benchmark variants of the tasks: name -> (task, BenchVariant).
VARIANTS = {v.name: (t.name, v) for t in train_tasks.tasks() for v in t.bench_variants()}
QUICK_SAMPLES = ["--n", "24", "--n-val", "12"]
#: The untouched test split: the same generator with another seed, never seen by training,
#: selection or calibration; its ``val`` part is the test set.
TEST_SEED = 7
#: The test split has at least this many images (more when the task's val is larger):
#: on 60 images one outlier moves int8's change by several percent (a standard error of
#: 5.4 % on the point set), too coarse to judge a 5 % target.
TEST_MIN_IMAGES = 300
QUICK_TEST = ["--n", "2", "--n-val", "12"]
QUICK_TRAIN = ["--epochs", "2", "--input-size", "64", "--weights", "none", "--alpha", "0.35"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def edgereg(*args: object, capture: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgereg", *map(str, args)]
    log("$ edgereg " + " ".join(map(str, args)))
    proc = subprocess.run(cmd, text=True, capture_output=capture)
    if proc.returncode != 0:
        tail = (proc.stderr or "")[-2000:] if capture else ""
        raise SystemExit(f"bench: `edgereg {args[0]}` failed (exit {proc.returncode})\n{tail}")
    return proc


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # Versions from package metadata: importing TensorFlow here would inflate every child
    # process's peak RSS (Linux children inherit ru_maxrss across fork).
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("numpy", "tensorflow-cpu", "keras", "ai-edge-litert", "opencv-python-headless"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "os": platform.platform(),
        "versions": versions,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def train_runs(task: str, jobs: list[tuple[Path, Path, Path]], quick: bool, extra: tuple = ()):
    """Train every (train_dir, val_dir, run) side by side, each in its own process (or reuse
    a finished run of an earlier, interrupted bench); the seconds of each."""
    started: list[tuple[Path, subprocess.Popen, float]] = []
    for train_dir, val_dir, run in jobs:
        if (run / "model.keras").exists() and (run / "bench_train_seconds.txt").exists():
            continue  # a rerun after a later step failed
        args = [
            "train", train_dir, "--task", task, "--val", val_dir, "--out", run,
            *train_tasks.get(task).demo_train_args, *extra, *(QUICK_TRAIN if quick else []),
        ]  # fmt: skip
        log("$ edgereg " + " ".join(map(str, args)))
        cmd = [sys.executable, "-m", "edgereg", *map(str, args)]
        started.append((run, subprocess.Popen(cmd), time.monotonic()))
    for run, proc, t0 in started:
        if proc.wait() != 0:
            raise SystemExit(f"bench: `edgereg train` into {run} failed (exit {proc.returncode})")
        (run / "bench_train_seconds.txt").write_text(f"{time.monotonic() - t0:.1f}\n")
    return [float((run / "bench_train_seconds.txt").read_text()) for _, _, run in jobs]


def bench_task(name: str, out: Path, quick: bool, handrolled: bool) -> dict[str, Any]:
    task, variant = VARIANTS.get(name, (name, None))
    data, run = out / "data" / name, out / "runs" / name
    res: dict[str, Any] = {"task": name}
    t = time.monotonic()
    extra = variant.sample_args if variant is not None else ()
    edgereg("samples", "make", data, "--task", task, *extra, *(QUICK_SAMPLES if quick else []))
    res["samples_s"] = time.monotonic() - t
    if variant is not None:
        res["variant"] = bench_variant(task, variant, data, run, out, quick)
        res["train_s"] = res["variant"]["train_s"]
        return res  # the same network as the task's own benchmark: no runtime figures
    (res["train_s"],) = train_runs(task, [(data / "train", data / "val", run)], quick)
    variants = "fp32,int8" if quick else "fp32,fp16,dynamic,int8,int16x8,int8_mixed"
    edgereg("convert", run, "--variants", variants, *(["--calib", "16"] if quick else []))
    res["test"] = test_split(task, out, run, quick)
    report = json.loads((run / "export" / "report.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    res["metrics"] = metrics
    res["conversion"] = {
        "keras": report.get("keras"),
        "variants": report.get("verification"),
        "files": report.get("files"),
    }
    res["runtime"] = {}
    for variant in ("fp32", "int8"):
        model = run / "export" / f"model_{variant}.tflite"
        j = out / f"runtime_{task}_{variant}.json"
        edgereg("bench", model, "--frames", 50 if quick else 500, "--json", j, capture=True)
        res["runtime"][variant] = json.loads(j.read_text())
    if handrolled and train_tasks.get(task).handrolled:
        res["handrolled"] = run_handrolled(task, data, run, seconds=res["train_s"], quick=quick)
    return res


def bench_variant(task: str, variant: Any, data: Path, run: Path, out: Path, quick: bool) -> dict:
    """Train on all rows and, side by side, on the rows without the variant's; score both
    runs on every group of val rows. (Side by side: the two share the machine, so their
    train times are not comparable with the tasks' own.)"""
    from train.dataset import load_dataset

    name = variant.name
    train_ds, val_ds = load_dataset(data / "train", task), load_dataset(data / "val", task)
    groups = variant.groups(train_ds.targets())
    drop = np.any(np.stack(list(groups.values())), axis=0)
    kept = data / "train_without"
    subset_dataset(
        data / "train", kept, [s for s, d in zip(train_ds.samples, drop, strict=True) if not d]
    )
    res: dict[str, Any] = {
        "description": variant.description,
        "train_rows": len(train_ds),
        "dropped_rows": {g: int(m.sum()) for g, m in groups.items()},
        "dropped_total": int(drop.sum()),
        "train_args": " ".join(variant.train_args),
    }
    runs = {"all rows": run, "without them": out / "runs" / f"{name}-without"}
    jobs = [(data / "train", data / "val", run), (kept, data / "val", runs["without them"])]
    res["train_s"], res["without_train_s"] = train_runs(task, jobs, quick, variant.train_args)
    val_groups = {"every val row": np.ones(len(val_ds), bool), **variant.groups(val_ds.targets())}
    res["scores"] = {}
    for g, mask in val_groups.items():
        sub = data / f"val_{_slug(g)}"
        subset_dataset(
            data / "val", sub, [s for s, m in zip(val_ds.samples, mask, strict=True) if m]
        )
        res["scores"][g] = {"rows": int(mask.sum())}
        for label, r in runs.items():
            if not mask.any():
                continue
            j = out / f"eval_{name}_{_slug(label)}_{_slug(g)}.json"
            edgereg("eval", r, sub, "--json", j, capture=True)
            res["scores"][g][label] = json.loads(j.read_text())
    return res


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def subset_dataset(src: Path, dst: Path, samples: list[Any]) -> Path:
    """A dataset folder ``dst`` with only ``samples`` of ``src`` (labels.csv rows kept
    verbatim, images hard-linked or copied)."""
    import shutil

    lines = (src / "labels.csv").read_text(encoding="utf-8").splitlines()
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    rows = [lines[0]]
    for s in samples:
        rows.append(lines[s.row - 1])
        rel = s.path.relative_to(src.resolve())
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(s.path, dst / rel)
        except OSError:
            shutil.copyfile(s.path, dst / rel)
    atomic_write_text(dst / "labels.csv", "\n".join(rows) + "\n")
    return dst


def test_split(task: str, out: Path, run: Path, quick: bool) -> dict[str, Any]:
    """The Keras model and the int8 files on the untouched test split (``edgereg eval``)."""
    test = out / "data" / f"{task}-test"
    args = QUICK_TEST if quick else ["--n", "2", "--n-val", str(test_images(task))]
    edgereg("samples", "make", test, "--task", task, "--seed", TEST_SEED, *args)
    res: dict[str, Any] = {"seed": TEST_SEED}
    models = {
        "keras": run,
        **{v: run / "export" / f"model_{v}.tflite" for v in ("int8", "int8_mixed")},
    }
    for name, model in models.items():
        if not Path(model).exists():
            continue
        j = out / f"test_{task}_{name}.json"
        edgereg("eval", model, test / "val", "--json", j, capture=True)
        res[name] = json.loads(j.read_text())
    res["se"] = test_change_se(run, test / "val", [v for v in res if v.startswith("int8")])
    return res


def test_change_se(run: Path, test: Path, variants: list[str]) -> dict[str, float]:
    """Each variant's int8 change on the test split: its standard error (paired bootstrap)."""
    from convert import export, quantize, verify
    from train.dataset import load_dataset

    spec = export.load_run_spec(run)
    static = export.static_batch_model(export.load_run_model(run), spec)
    train_ds, _ = quantize.load_splits(run)
    s = verify.ValidationSet.from_datasets(load_dataset(test, spec.task), train_ds)
    ref = verify.keras_raw(static, spec, s.images)
    out = {}
    for v in variants:
        raw = verify.device_raw(run / "export" / f"model_{v}.tflite", s.images)
        out[v] = verify.relative_drop_se(spec, s, ref, raw)
    return out


def test_images(task: str) -> int:
    """The test split's size: the task's own validation count, at least TEST_MIN_IMAGES."""
    t = train_tasks.get(task)
    a = list(t.demo_sample_args)
    n_val = int(a[a.index("--n-val") + 1]) if "--n-val" in a else t.samples().counts[1]
    return max(n_val, TEST_MIN_IMAGES)


def run_handrolled(task: str, data: Path, run: Path, seconds: float, quick: bool) -> dict:
    from bench.handrolled import train_handrolled
    from edge_runtime.spec import ModelSpec
    from train.dataset import load_dataset
    from train.metrics import compute_metrics

    spec = ModelSpec.from_json((run / "spec.json").read_text())
    tr = load_dataset(data / "train", task)
    va = load_dataset(data / "val", task)
    budget = min(seconds, 15 * 60)
    log(f"hand-rolled {task} recipe from the user question, {budget:.0f} s of training")
    hr = train_handrolled(
        spec,
        train_tasks.get(task).handrolled,
        [s.path for s in tr.samples],
        tr.targets(),
        [s.path for s in va.samples],
        seconds=budget,
        max_epochs=2 if quick else 1000,
    )
    sizes = [(s.width, s.height) for s in va.samples]
    m = compute_metrics(spec, va.targets(), hr.y_pred, sizes, tr.targets())
    return {"epochs": hr.epochs, "seconds": hr.seconds, "params": hr.params, "metrics": m}


def train_pipeline(out: Path, quick: bool) -> dict[str, Any] | None:
    script = REPO / "bench" / "train_pipeline.py"
    if not script.exists():
        return None
    j = out / "train_pipeline.json"
    args = [sys.executable, "-m", "bench.train_pipeline", "--json", str(j)]
    if quick:
        args.append("--quick")
    log("$ " + " ".join(args[1:]))
    proc = subprocess.run(args, cwd=REPO, text=True)
    if proc.returncode != 0 or not j.exists():
        return {"error": f"bench.train_pipeline exited {proc.returncode}"}
    return json.loads(j.read_text())


# ----------------------------------------------------------------------------- report
def _g(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def render(results: dict[str, Any]) -> str:
    """The doc's generated section: provenance, then the accuracy, test-split, quantization,
    device-runtime and training-pipeline tables."""
    from train.metrics import primary_metric  # noqa: F401  (documents where keys come from)

    plain = [r for r in results["tasks"] if "variant" not in r]
    out = [BEGIN, *_provenance_lines(plain)]
    out += _accuracy_table(plain)
    out += _test_table(results)
    out += _quantization_table(plain)
    out += _runtime_table(plain)
    out += _train_pipeline_lines(results.get("train_pipeline"))
    out.append(END)
    return "\n".join(out)


def _provenance_lines(plain: list[dict[str, Any]]) -> list[str]:
    """Step 1 of render: which bench run (command, date, machine) produced which tasks."""
    runs: dict[str, list[str]] = {}  # one line per bench run that produced some tasks
    for r in plain:
        run = r["run"]  # set by main(), or by load_results() for older results
        m = run["machine"]
        line = (
            f"`{run['command']}` on {m['date']}: {m['cpu']}, {m['cores']} cores, {m['arch']}; "
            + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        )
        runs.setdefault(line, []).append(r["task"])
    out = [f"- {', '.join(tasks)}: generated by {line}." for line, tasks in runs.items()]
    out += [
        "",
        "All figures of one task come from one run, measured side by side; timings are on a "
        "shared machine, so compare the ratios.",
    ]
    return out


def _accuracy_table(plain: list[dict[str, Any]]) -> list[str]:
    """Step 2 of render: edgereg beside the trivial baseline and the hand-rolled recipe."""
    out = [
        "",
        "### Accuracy per task (held-out validation images, task units)",
        "",
        "edgereg's default recipe (Keras model) beside the trivial baseline (training mean or "
        "majority class) and the user question's own network trained from scratch on the same "
        "data for the same wall clock (`bench/handrolled.py`).",
        "",
        "| task | metric | edgereg | trivial baseline | hand-rolled recipe | edgereg train time "
        "| bar |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in plain:
        met = r["metrics"]
        hr = r.get("handrolled", {}).get("metrics", {})
        train_time = f"{r['train_s'] / 60:.1f} min"
        kind = train_tasks.get(r["task"])
        for i, k in enumerate(kind.bench_metrics):
            first = (r["task"], train_time, kind.bench_bar)
            task, t_time, bar = first if i == 0 else ("", "", "")
            out.append(
                f"| {task} | {k} | {_g(met.get(k), 4)} | {_g(met.get('baseline_' + k), 4)} | "
                f"{_g(hr.get(k), 4)} | {t_time} | {bar} |"
            )
    return out


def _quantization_table(plain: list[dict[str, Any]]) -> list[str]:
    """Step 4 of render: each converted variant against the Keras model."""
    out = [
        "",
        "### Quantization: each variant against the Keras model (validation split, device runtime)",
        "",
        "| task | variant | metric | value | Keras | relative change | max / mean disagreement "
        "| size (KiB) | latency 1 thread (ms) | latency all threads (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in plain:
        sizes = {f["variant"]: f["size_bytes"] for f in r["conversion"]["files"] or []}
        keras = r["conversion"]["keras"] or {}
        for v in r["conversion"]["variants"] or []:
            dis = v.get("disagreement_user") or {}
            dis_txt = " / ".join(_g(x) for k, x in dis.items() if "label" not in k) or "–"
            lat = v.get("latency_ms") or {}
            rel = v.get("relative_drop")
            out.append(
                f"| {r['task']} | {v['variant']} | {v.get('metric_key', keras.get('metric_key'))} "
                f"| {_g(v.get('value'), 4)} | {_g(keras.get('value'), 4)} | "
                f"{'–' if rel is None else pct_se(rel, v.get('relative_drop_se'))} | {dis_txt} | "
                f"{sizes.get(v['variant'], 0) / 1024:.0f} | {_g(lat.get('1_thread'))} | "
                f"{_g(lat.get('all_threads'))} |"
            )
    return out


def _runtime_table(plain: list[dict[str, Any]]) -> list[str]:
    """Step 5 of render: ``edgereg bench`` per task and model (bare invoke vs full frame)."""
    out = [
        "",
        "### Device runtime (`edgereg bench`, synthetic 640×480 camera frames)",
        "",
        "| task | model | bare invoke p50 (ms) | full per-frame p50 (ms) | full ÷ bare | p95 / p99 (ms) "
        "| fps | import + load (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in plain:
        for variant, b in r["runtime"].items():
            bare = (b.get("bare_invoke_ms") or {}).get("p50")
            full = b.get("full_ms") or {}
            ratio = full.get("p50") / bare if bare and full.get("p50") else None
            il = (b.get("import_s") or 0) + (b.get("load_s") or 0) if "import_s" in b else None
            out.append(
                f"| {r['task']} | {variant} | {_g(bare)} | {_g(full.get('p50'))} | "
                f"{_g(ratio)} | {_g(full.get('p95'))} / {_g(full.get('p99'))} | "
                f"{_g(b.get('fps'))} | {_g(il)} | {_g(b.get('peak_rss_mb'))} |"
            )
    return out


def _train_pipeline_lines(tp: dict[str, Any] | None) -> list[str]:
    """Step 6 of render: the training input pipeline measurement, as recorded (when run)."""
    if not tp:
        return []
    return [
        "",
        "### Training input pipeline vs the model's own train step",
        "",
        "```",
        json.dumps(tp, indent=2, sort_keys=True),
        "```",
    ]


def render_variants(results: dict[str, Any]) -> str:
    """One table per task variant: the run on all rows vs the run without the variant's
    rows, on the whole validation split and on each group of its rows."""
    out: list[str] = [VBEGIN]
    for r in results["tasks"]:
        if "variant" not in r:
            continue
        run = r["run"]
        out.append(f"- generated by `{run['command']}` on {run['machine']['date']}.")
        v, name = r["variant"], r["task"]
        kind = train_tasks.get(VARIANTS[name][0]) if name in VARIANTS else None
        keys = kind.bench_metrics if kind else ()
        dropped = ", ".join(f"{n} {g}" for g, n in v["dropped_rows"].items())
        out += [
            "",
            f"### Variant `{name}`: {v['description']}",
            "",
            f"Two runs of the task's recipe ({v.get('train_args') or 'its defaults'}), side by "
            f"side: on all {v['train_rows']} training rows ({r['train_s'] / 60:.1f} min), and "
            f"on the same rows without the {v['dropped_total']} that have {dropped} "
            f"({v['without_train_s'] / 60:.1f} min), what a user had to do while such rows "
            "were refused. Both scored on the same validation rows "
            "(given points only; a missing one is masked).",
            "",
            "| validation rows | n | metric | all rows | without them | trivial baseline |",
            "|---|---|---|---|---|---|",
        ]
        for g, sc in v["scores"].items():
            for i, k in enumerate(keys):
                a, b = sc.get("all rows", {}), sc.get("without them", {})
                lead = (g, str(sc["rows"])) if i == 0 else ("", "")
                out.append(
                    f"| {lead[0]} | {lead[1]} | {k} | {_g(a.get(k), 4)} | {_g(b.get(k), 4)} | "
                    f"{_g(a.get('baseline_' + k), 4)} |"
                )
    out.append(VEND)
    return "\n".join(out)


def _test_table(results: dict[str, Any]) -> list[str]:
    """Validation beside the untouched test split, and int8's change on test."""
    rows = [r for r in results["tasks"] if r.get("test")]
    if not rows:
        return []
    out = [
        "",
        "### Validation vs an untouched test split (another seed of the generator)",
        "",
        "The validation figure chose the kept epoch; the test split was never seen by "
        f"training, selection or calibration (`edgereg samples make --seed {TEST_SEED}`, its "
        "val part). int8 change = the int8 file against the Keras model, both on test.",
        "",
        "| task | metric | validation (Keras) | test images | test (Keras) | test vs validation "
        "| int8 test | int8 change on test | int8_mixed test |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        key, higher = train_tasks.get(r["task"]).primary_metric
        t = r["test"]
        val = r["metrics"].get(key)
        kt = (t.get("keras") or {}).get(key)
        i8 = (t.get("int8") or {}).get(key)
        mx = (t.get("int8_mixed") or {}).get(key)
        gap = _rel(val, kt, higher)
        drop = _rel(kt, i8, higher, (t.get("se") or {}).get("int8"))
        out.append(
            f"| {r['task']} | {key} | {_g(val, 4)} | {(t.get('keras') or {}).get('n', '–')} | "
            f"{_g(kt, 4)} | {gap} | {_g(i8, 4)} | "
            f"{drop} | {_g(mx, 4)} |"
        )
    return out


def _rel(ref: Any, v: Any, higher: bool, se: float | None = None) -> str:
    """How much worse ``v`` is than ``ref``, in % (positive = worse), ± ``se`` if known."""
    if not isinstance(ref, (int, float)) or not isinstance(v, (int, float)):
        return "–"
    worse = (ref - v) if higher else (v - ref)
    return pct_se(worse / max(abs(ref), 1e-9), se, 1)


def load_results(path: Path) -> dict[str, Any]:
    """Earlier full-mode results in ``--out``: a run of some tasks keeps the others' rows.

    Each task's entry records the run (command, date, machine) that produced it, and the
    doc section names every run it draws on.
    """
    if not path.exists():
        return {"tasks": []}
    old = json.loads(path.read_text())
    for r in old.get("tasks", []):  # results from before per-task run records
        r.setdefault("run", {"machine": old["machine"], "command": old["command"]})
    return old


def write_doc(section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the generated section between ``begin`` and ``end`` (added when missing)."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if begin not in text:
        text += "\n" + begin + "\n" + end + "\n"
    new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    atomic_write_text(DOC, new)


def publish(results: dict[str, Any]) -> None:
    """Rewrite the doc's sections that these results have rows for."""
    if any("variant" not in r for r in results["tasks"]):
        write_doc(render(results))
    if any("variant" in r for r in results["tasks"]):
        write_doc(render_variants(results), VBEGIN, VEND)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: proves the harness runs")
    ap.add_argument(
        "--tasks",
        default=",".join(TASKS),
        help="comma-separated tasks, or task variants: " + ", ".join(VARIANTS),
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench_out", help="working folder")
    ap.add_argument("--no-handrolled", action="store_true", help="skip the user recipes")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    ap.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing: rewrite the doc section from --out's results.json",
    )
    a = ap.parse_args(argv)
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    order = [*TASKS, *VARIANTS]
    for t in tasks:
        if t not in order:
            ap.error(f"--tasks: {t!r} is not one of {', '.join(order)}")
    a.out.mkdir(parents=True, exist_ok=True)
    command = "python -m bench" + (" --quick" if a.quick else "")
    if a.tasks != ",".join(TASKS):
        command += f" --tasks {a.tasks}"
    if a.no_handrolled:  # the figures say which comparison they lack
        command += " --no-handrolled"
    this_run = {"machine": machine(), "command": command}
    results = load_results(a.out / "results.json") if not a.quick else {"tasks": []}
    results.update(this_run)
    if a.render_only:
        if not results["tasks"]:
            ap.error(f"--render-only: no full-mode results in {a.out / 'results.json'}")
        tasks = []
    for t in tasks:
        res = bench_task(t, a.out, a.quick, not a.no_handrolled)
        res["run"] = this_run
        results["tasks"] = [r for r in results["tasks"] if r["task"] != t] + [res]
        results["tasks"].sort(key=lambda r: order.index(r["task"]))
        atomic_write_text(a.out / "results.json", json.dumps(results, indent=2, default=str))
        if not a.quick and not a.no_doc:  # publish each task as it completes
            publish(results)
    if not a.render_only and any(t in TASKS for t in tasks):
        results["train_pipeline"] = train_pipeline(a.out, a.quick)
        atomic_write_text(a.out / "results.json", json.dumps(results, indent=2, default=str))
    section = render(results) + "\n\n" + render_variants(results)
    (a.out / "benchmarks_section.md").write_text(section + "\n")
    print(section)
    if not a.quick and not a.no_doc:
        publish(results)
        log(f"updated {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
