"""`edgereg data check DATA_DIR --task T`: validate a dataset before any training."""

from __future__ import annotations

import click

from ._tasks import given_task_options, task_choice, task_help, task_options


@click.group(name="data")
def cli() -> None:
    """Dataset tools (see docs/dataset-format.md)."""


@cli.command(name="check")
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--task", required=True, type=task_choice(), help=task_help("What the labels are:"))
@task_options(labels_only=True)
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON too.")
@click.pass_context
def check(ctx: click.Context, data_dir: str, task: str, as_json: bool, **options: object) -> None:
    """Check every image and label in DATA_DIR and print one report.

    Exit code 0 when the dataset is clean, 1 when problems are listed.
    """
    import json

    from train.dataset import check_dataset

    report = check_dataset(data_dir, task, **given_task_options(options, labels_only=True))
    click.echo(report.format())
    if as_json:
        click.echo(json.dumps(report.stats, indent=2, sort_keys=True))
    ctx.exit(0 if report.ok else 1)
