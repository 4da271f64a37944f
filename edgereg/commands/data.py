"""`edgereg data check DATA_DIR --task T`: validate a dataset before any training."""

from __future__ import annotations

import click


@click.group(name="data")
def cli() -> None:
    """Dataset tools (see docs/dataset-format.md)."""


@cli.command(name="check")
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--task",
    required=True,
    type=click.Choice(["point", "keypoints", "value", "class"]),
    help="What the labels are.",
)
@click.option("--y-up", is_flag=True, help="Labels have their origin bottom-left (y up).")
@click.option(
    "--coords",
    type=click.Choice(["normalized", "pixels"]),
    default="normalized",
    show_default=True,
    help="Label units: normalized [0, 1] or pixels of each image.",
)
@click.option("--target", default=None, help="value task: the CSV column to learn (default value).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON too.")
@click.pass_context
def check(
    ctx: click.Context,
    data_dir: str,
    task: str,
    y_up: bool,
    coords: str,
    target: str | None,
    as_json: bool,
) -> None:
    """Check every image and label in DATA_DIR and print one report.

    Exit code 0 when the dataset is clean, 1 when problems are listed.
    """
    import json

    from train.dataset import check_dataset

    report = check_dataset(data_dir, task, y_up=y_up, coords=coords, target=target)
    click.echo(report.format())
    if as_json:
        click.echo(json.dumps(report.stats, indent=2, sort_keys=True))
    ctx.exit(0 if report.ok else 1)
