"""Peak memory and images/s of `edgereg train` as the training set grows (docs/scaling.md).

    nice -n 10 python -m bench.scaling                      # 2,000 / 10,000 / 40,000 images
    python -m bench.scaling --sizes 2000 --steps 40 --json out.json
    python -m bench.scaling --quick                         # tiny: proves the harness runs

The value sample generator makes ``--base`` distinct images (250x250 JPEGs) once; a set of
N images lists them N/base times under distinct file names (hard links, so 40,000 images
cost the disk 2,000 files). Every image is decoded, resized and augmented per use exactly
as distinct images would be. Each run is one real `edgereg train` subprocess at
``--input-size 224`` for ``--steps`` optimizer steps (``--max-steps``; ``--weights``:
imagenet, the default recipe's first epoch, or none), measured by a wrapper that reads
the child's peak RSS (``ru_maxrss``), and its training images/s (after the first, tracing
step) from history.csv. The data is deleted at the end.

Runs: ``auto`` cache at every size (memory at 2,000, disk above 1 GiB of images); at the
smallest size also ``none`` and ``disk`` (streaming vs in-memory), and 2 logical CPU
devices (``EDGEREG_CPU_DEVICES=2 --devices 2``, 2 x 16 = the same global batch: a check
that the path works, not a speed claim).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RSS_WRAPPER = (
    "import resource, subprocess, sys; "
    "rc = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)"
)


def log(msg: str) -> None:
    print(f"[scaling {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_base(root: Path, n: int, n_val: int) -> Path:
    """The distinct sample images (kept when ``root`` already holds them: ``--work``)."""
    from train.samples import make_samples

    if (root / "train" / "labels.csv").exists() and (root / "val" / "labels.csv").exists():
        log(f"using the sample images in {root}")
        return root
    log(f"making {n} + {n_val} value sample images in {root}")
    return make_samples(root, "value", n=n, n_val=n_val, seed=0, progress=True)


def replicate(base: Path, n: int, out: Path) -> Path:
    """A dataset of ``n`` rows over the base set's images (hard links, distinct names)."""
    with open(base / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    out.mkdir(parents=True, exist_ok=True)
    new = []
    for k in range(n):
        name, *labels = rows[k % len(rows)]
        dst = out / f"img_{k:06d}{Path(name).suffix}"
        if not dst.exists():
            os.link(base / name, dst)
        new.append([dst.name, *labels])
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(new)
    return out


def train_run(
    data: Path,
    val: Path,
    out: Path,
    steps: int,
    size: int,
    extra: list[str],
    env: dict,
    weights: list[str],
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "edgereg", "train", str(data), "--val", str(val)]
    cmd += ["--task", "value", "--input-size", str(size), *weights]
    cmd += ["--epochs", "1", "--max-steps", str(steps), "--out", str(out), *extra]
    log("$ " + " ".join(["edgereg", *cmd[3:]]))
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, *cmd],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench.scaling: edgereg train failed\n{proc.stderr[-3000:]}")
    with open(out / "history.csv") as f:
        row = list(csv.DictReader(f))[-1]
    return {
        "peak_rss_mb": int(proc.stdout.strip().splitlines()[-1]) / 1024,
        "images_per_s": float(row["train_images_per_s"]),
        "wall_s": round(time.monotonic() - t0, 1),
        "cache": _cache_line(proc.stderr),
    }


def _cache_line(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("images: train"):
            return line.split("cache ", 1)[1].split(" ", 1)[0]
    return "?"


def plan(sizes: list[int]) -> list[tuple[str, int, list[str], dict]]:
    """The runs: ``auto`` at every size (1 device), then the smallest size with the cache
    forced to ``none`` and ``disk`` (against ``auto`` = memory there), then on 2 logical
    CPU devices with the same global batch (2 x 16)."""
    small = min(sizes)
    runs = [(f"{n:,} images", n, [], {}) for n in sizes]
    for mode in ("none", "disk"):
        runs.append((f"{small:,} images, --cache {mode}", small, ["--cache", mode], {}))
    two = ["--devices", "2", "--batch-size", "16"]
    env = {"EDGEREG_CPU_DEVICES": "2"}
    runs.append((f"{small:,} images, 2 logical CPU devices x 16", small, two, env))
    return runs


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"`nice -n 10 python -m bench.scaling --sizes {','.join(map(str, args.sizes))} "
        f"--steps {args.steps} --weights {args.weights}` (value task, {args.input_size} px):",
        "",
        "| run | cache | peak RSS (MB) | train images/s |",
        "| --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['run']} | {r['cache']} | {r['peak_rss_mb']:,.0f} | {r['images_per_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2000,10000,40000")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--base", type=int, default=2000, help="distinct images generated")
    ap.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet: the default recipe's first epoch (head warm-up, as in the issue's "
        "measurement); none: from scratch, every layer and BatchNorm training (the most "
        "memory a run needs)",
    )
    ap.add_argument("--only", help="run only these runs (their labels, ;-separated)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CI)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)
    args.sizes = [int(s) for s in str(args.sizes).split(",")]
    if args.quick:
        args.sizes, args.steps, args.input_size, args.base = [24, 48], 3, 32, 24
        args.weights = "none"
    work = args.work or Path(tempfile.mkdtemp(prefix="edgereg-scaling-"))
    results = []
    try:
        base = make_base(work / "base", args.base, 100 if not args.quick else 8)
        extra = ["--alpha", "0.35"] if args.quick else []
        for label, n, opts, env in plan(args.sizes):
            if args.only and label not in args.only.split(";"):
                continue
            data = replicate(base / "train", n, work / f"d{n}")
            out = work / "runs" / f"r{len(results)}"
            shutil.rmtree(out, ignore_errors=True)  # a run left by an interrupted bench
            weights = ["--weights", args.weights]
            r = train_run(
                data, base / "val", out, args.steps, args.input_size, opts + extra, env, weights
            )
            results.append({"run": label, **r})
            log(f"{label}: {r}")
            shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(render(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
