"""``edgereg demo``: the whole pipeline on a sample dataset, end to end.

Each step is the real ``edgereg`` command a user would type, run as a subprocess with its
output (progress bars included) shown as it goes: samples -> data check -> train ->
convert (fp32, int8, Edge TPU analysis) -> a video of held-out frames -> ``edgereg run``
on that video -> one table and a one-page HTML report.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._tasks import sample_task_choice, sample_task_help

if TYPE_CHECKING:  # for the annotations only: the command imports train lazily
    from train.tasks.base import TrainTask


@click.command(name="demo")
@click.option(
    "--task",
    type=sample_task_choice(),
    default="point",
    show_default=True,
    help=sample_task_help(),
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo_out"),
    show_default=True,
    help="Folder for the data, the run, the exports, the video and the report: a new or "
    "empty folder, or an earlier demo's.",
)
@click.option(
    "--epochs", type=click.IntRange(1, 100_000), help="Training epochs (default: train's)."
)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option(
    "--quick",
    is_flag=True,
    help="Tiny data and few epochs: proves the pipeline runs (used by the tests), not accuracy.",
)
def cli(task: str, out: Path, epochs: int | None, seed: int, quick: bool) -> None:
    """Run the whole pipeline on a sample dataset for TASK, end to end.

    \b
    1. make the sample dataset (train + held-out val)
    2. check it
    3. train from the offline ImageNet start
    4. convert to fp32 and int8 (+ Edge TPU analysis), verified on the val split
    5. write a video of the held-out frames
    6. run the device runtime over that video, exactly as `edgereg run` does
    7. print one table and write report.html with the plots

    Under 10 minutes on 2 CPU cores for the default task.
    """
    out = out.resolve()
    _claim(out)
    data, run = out / "data", out / "run"
    t0 = time.monotonic()
    steps = 7

    def step(i: int, what: str) -> None:
        click.secho(f"\n[{i}/{steps}] {what}  ({time.monotonic() - t0:.0f} s)", bold=True, err=True)

    from train import tasks

    recipe = tasks.get(task)
    step(1, f"sample dataset for the {task} story -> {data}")
    _make_samples(data, task, seed, recipe, quick)
    step(2, "checking the dataset")
    _edgereg("data", "check", data / "train", "--task", task)
    step(3, "training (pretrained MobileNetV2, two phases)")
    _train(data, run, task, seed, recipe, quick, epochs)
    step(4, "converting to fp32 and int8, with the Edge TPU analysis")
    _convert(run, quick)
    step(5, "writing a video of the held-out frames")
    video = _heldout_video(data, out, task)
    step(6, "running the device runtime over the video (edgereg run)")
    jsonl = _run_on_video(run / "export", video, out)
    step(7, "summary")
    _summary(task, data, run, jsonl, out, t0)


def _make_samples(data: Path, task: str, seed: int, recipe: TrainTask, quick: bool) -> None:
    """Step 1 of the demo: the task's sample dataset (train + held-out val)."""
    sample_args = ["--n", "24", "--n-val", "12"] if quick else list(recipe.demo_sample_args)
    _edgereg("samples", "make", data, "--task", task, "--seed", seed, *sample_args)


def _train(
    data: Path, run: Path, task: str, seed: int, recipe: TrainTask, quick: bool, epochs: int | None
) -> None:
    """Step 3 of the demo: train (or resume), unless the run already holds a trained model."""
    train_args = list(recipe.demo_train_args)
    if quick:
        train_args += [
            "--epochs",
            "2",
            "--input-size",
            "64",
            "--weights",
            "none",
            "--alpha",
            "0.35",
        ]
    elif epochs:
        train_args += ["--epochs", epochs]
    if run.exists() and (run / "model.keras").exists():
        click.echo(
            f"{run} already holds a trained model; reusing it (delete it to retrain)", err=True
        )
    else:
        resume = ["--resume"] if (run / "checkpoint" / "last.npz").is_file() else []
        _edgereg(
            "train", data / "train", "--task", task, "--val", data / "val", "--out", run,
            "--seed", seed, *train_args, *resume,
        )  # fmt: skip


def _convert(run: Path, quick: bool) -> None:
    """Step 4 of the demo: fp32 and int8 exports with the Edge TPU analysis."""
    _edgereg(
        "convert",
        run,
        "--variants",
        "fp32,int8",
        "--edgetpu",
        *(["--calib", "16"] if quick else []),
    )


def _heldout_video(data: Path, out: Path, task: str) -> Path:
    """Step 5 of the demo: a video of the held-out frames; returns its path."""
    from edgereg.demo_report import write_heldout_video

    video, n_frames = write_heldout_video(data / "val", out / "heldout.avi", task)
    click.echo(f"{video}: {n_frames} frames", err=True)
    return video


def _run_on_video(export: Path, video: Path, out: Path) -> dict[str, Path]:
    """Step 6 of the demo: `edgereg run` of each export over the video; their JSON lines."""
    jsonl: dict[str, Path] = {}
    for variant in ("fp32", "int8"):
        model = export / f"model_{variant}.tflite"
        jsonl[variant] = out / f"run_{variant}.jsonl"
        extra = ["--video", out / "annotated.avi"] if variant == "int8" else []
        _edgereg(
            "run", model, "--source", video, "--every-frame", "--json", jsonl[variant],
            "--no-status", *extra,
        )  # fmt: skip
    return jsonl


def _summary(
    task: str, data: Path, run: Path, jsonl: dict[str, Path], out: Path, t0: float
) -> None:
    """Step 7 of the demo: print the table, write report.html, say where everything is."""
    from edgereg.demo_report import summarize, write_html

    table, rows = summarize(task, data, run, jsonl)
    click.echo(table)
    report = write_html(
        out / "report.html", task, run, table, rows, out / "annotated.avi", jsonl["int8"]
    )
    click.secho(
        f"\nDone in {time.monotonic() - t0:.0f} s. Report: {report}\n"
        f"Annotated video: {out / 'annotated.avi'}\nRun: {run}  Exports: {run / 'export'}",
        fg="green",
        err=True,
    )


#: The kind in the demo folder's ownership marker, and what a demo folder holds (one made
#: before markers existed is recognised by these names).
DEMO_KIND = "demo"
DEMO_NAMES = (
    "data",
    "run",
    "heldout.avi",
    "run_fp32.jsonl",
    "run_int8.jsonl",
    "annotated.avi",
    "report.html",
)


def _claim(out: Path) -> None:
    """--out must be new, empty or an earlier demo's folder; then it is marked as one."""
    from edge_runtime.errors import OutputError
    from edge_runtime.ownership import claim_folder, mark, only_names

    claim_folder("--out", out, DEMO_KIND, legacy=only_names(DEMO_NAMES, (".*",)), purpose="a demo")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create ({e.strerror or e})") from None
    mark(out, DEMO_KIND)


def _edgereg(*args: object) -> None:
    cmd = [sys.executable, "-m", "edgereg", *map(str, args)]
    click.secho("$ edgereg " + " ".join(map(str, args)), fg="cyan", err=True)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise click.ClickException(
            f"step `edgereg {args[0]}` failed (exit {proc.returncode}); its message is above"
        )
