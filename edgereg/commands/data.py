"""`edgereg data check DATA_DIR --task T`: validate a dataset before any training."""

from __future__ import annotations

from typing import Any

import click

from ._json import STDOUT, emit_json, json_option
from ._tasks import given_task_options, task_choice, task_help, task_options


@click.group(name="data")
def cli() -> None:
    """Dataset tools (see docs/dataset-format.md)."""


@cli.command(name="check")
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--task", required=True, type=task_choice(), help=task_help("What the labels are:"))
@task_options(labels_only=True)
@json_option("the statistics, warnings and the full problem list")
@click.pass_context
def check(
    ctx: click.Context, data_dir: str, task: str, json_out: str | None, **options: object
) -> None:
    """Check every image and label in DATA_DIR and print one report.

    Exit code 0 when the dataset is clean (warnings may be listed), 1 when problems are
    listed, 2 for a bad option, 3 when DATA_DIR is not a folder. labels.csv may be
    separated by ',', ';' or tabs (Excel's sep= line too); the report says how it was read.
    """
    from train.dataset import check_dataset

    report = check_dataset(data_dir, task, **given_task_options(options, labels_only=True))
    if json_out != STDOUT:
        click.echo(report.format())
    emit_json(json_out, check_json(report))
    ctx.exit(0 if report.ok else 1)


def check_json(report: Any) -> dict[str, Any]:
    """``data check --json``: statistics, warnings and every problem (not only the first
    ones the text lists), each with its row, file and column."""
    return {
        "data_dir": str(report.data_dir),
        "task": report.task,
        "ok": report.ok,
        "rows": report.rows,
        "stats": report.stats,
        "warnings": list(report.warnings),
        "problems": [
            {
                "row": p.row or None,
                "file": p.file or None,
                "field": p.field or None,
                "message": p.message,
                "droppable": p.droppable,
            }
            for p in report.problems
        ],
    }


# --------------------------------------------------------------------------- import
def _import_help() -> str:
    """The ``data import --help`` text, built from the importer registry."""
    import textwrap

    from train.importers import FORMATS

    lines = [
        "Import a labelling tool's export (SRC) into a new dataset folder DATA_DIR.",
        "",
        "DATA_DIR gets labels.csv in the dataset contract (docs/dataset-format.md) and the",
        "images copied into DATA_DIR/images/ (--link: hard links). DATA_DIR must not exist or",
        "be empty, and must not lie inside SRC or the images folder; it appears whole or not",
        "at all. Keypoint order: --keypoints, or the order the export defines (COCO",
        "categories, CVAT <meta> labels, data.yaml); never the order names appear in.",
        "Missing keypoints become empty cells. Exit code 0 when something was imported, 1",
        "when nothing usable was found (nothing written), 3 for a file of the wrong format.",
        "",
        "\b",
        "FORMAT and SRC:",
    ]
    for f in FORMATS.values():
        lines += textwrap.wrap(
            f"{f.name}: {f.summary}", 96, initial_indent="  ", subsequent_indent="    "
        )
        lines += textwrap.wrap(
            f"SRC: {f.src}. Tasks: {', '.join(f.tasks())}.",
            96,
            initial_indent="    ",
            subsequent_indent="    ",
        )
        lines += textwrap.wrap(
            f"e.g. {f.example}",
            96,
            initial_indent="    ",
            subsequent_indent="      ",
            break_on_hyphens=False,
            break_long_words=False,
        )
    return "\n".join(lines)


def _keypoint_names(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    if value is None:
        return None
    names = tuple(n.strip() for n in value.split(","))
    if not all(names):
        raise click.BadParameter(f"{value!r}: give names separated by commas, e.g. tl,tr,br,bl")
    return names


def _format_names() -> list[str]:
    from train.importers import FORMATS

    return list(FORMATS)


@cli.command(
    name="import",
    help=_import_help(),
    short_help=f"Import a labelling tool's export ({', '.join(_format_names())}) as a dataset.",
    context_settings={"max_content_width": 100},
)
@click.argument("fmt", metavar="FORMAT", type=click.Choice(_format_names()))
@click.argument("src", type=click.Path(path_type=str))
@click.argument("data_dir", type=click.Path(path_type=str))
@click.option("--task", required=True, type=task_choice(), help="What the labels become.")
@click.option(
    "--keypoints",
    callback=_keypoint_names,
    metavar="NAMES",
    help="Keypoint names in target order (x1,y1 = the first), e.g. tl,tr,br,bl; "
    "for --task point, the one keypoint to use.",
)
@click.option(
    "--images",
    type=click.Path(file_okay=False, path_type=str),
    help="Folder with the images (searched by path, then by file name).",
)
@click.option("--link", is_flag=True, help="Hard-link the images instead of copying them.")
@click.pass_context
def import_(
    ctx: click.Context,
    fmt: str,
    src: str,
    data_dir: str,
    task: str,
    keypoints: tuple[str, ...] | None,
    images: str | None,
    link: bool,
) -> None:
    from train.importers import run_import

    report = run_import(
        fmt, src, data_dir, task=task, keypoints=keypoints, images=images, link=link
    )
    click.echo(report.format())
    ctx.exit(0 if report.ok else 1)
