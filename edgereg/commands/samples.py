"""`edgereg samples make DIR --task T`: realistic synthetic datasets (docs/samples.md)."""

from __future__ import annotations

import click

from ._tasks import given_sample_options, sample_options, sample_task_choice, sample_task_help


def _counts(split: int) -> str:
    from train import tasks

    return ", ".join(f"{t.name} {s.counts[split]}" for t in tasks.tasks() if (s := t.samples()))


@click.group(name="samples")
def cli() -> None:
    """Synthetic sample datasets, one per user story (see docs/samples.md)."""


@cli.command(name="make")
@click.argument("out_dir", type=click.Path(path_type=str))
@click.option("--task", required=True, type=sample_task_choice(), help=sample_task_help())
@click.option(
    "--n",
    type=click.IntRange(1, 1_000_000),
    default=None,
    help="Training images (default: the task's, " + _counts(0) + ").",
)
@click.option(
    "--n-val",
    type=click.IntRange(0, 1_000_000),
    default=None,
    help="Validation images (default: the task's, " + _counts(1) + ").",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Same seed, same bytes.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes that render in parallel (default: up to 4 cores; output is the same).",
)
@sample_options()
def make(
    out_dir: str,
    task: str,
    n: int | None,
    n_val: int | None,
    seed: int,
    workers: int | None,
    **task_kw: object,
) -> None:
    """Write OUT_DIR/train/ and OUT_DIR/val/, each a dataset with labels.csv + JPEGs.

    Existing OUT_DIR/train and OUT_DIR/val folders are replaced only when they are
    edgereg sample sets; any other folder of that name is refused (exit 13), and so is an
    OUT_DIR that is a dataset itself. The options marked
    [--task ...] belong to that task's generator (see docs/samples.md).
    """
    import time
    from pathlib import Path

    from train.samples import make_samples

    t0 = time.perf_counter()
    options = given_sample_options(task_kw)
    out = make_samples(
        out_dir,
        task,
        n=n,
        n_val=n_val,
        seed=seed,
        progress=True,
        workers=workers,
        options=options,
    )
    dt = time.perf_counter() - t0
    for split in ("train", "val"):
        d = Path(out) / split
        if (d / "labels.csv").exists():
            rows = sum(1 for _ in open(d / "labels.csv", encoding="utf-8")) - 1
            click.echo(f"{d}: {rows} images + labels.csv")
    click.echo(
        f"made in {dt:.1f} s; check with: edgereg data check {Path(out) / 'train'} --task {task}"
    )
