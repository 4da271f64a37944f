"""``--json OUT|-``: one meaning in every command.

``-`` writes the JSON document to standard output and nothing else goes there (the
human-readable text moves to stderr, so ``edgereg eval ... --json - | jq`` works); any
other value is a file, written atomically, and the human text stays on stdout.
``edgereg run --json`` is the one stream of the family: one JSON line per frame
(``docs/result.schema.json``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

STDOUT = "-"


def json_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--json OUT|-`` option (parameter ``json_out``), its help naming ``what``."""
    return click.option(
        "--json",
        "json_out",
        metavar="OUT|-",
        default=None,
        help=f"Write {what} as JSON to OUT, or to stdout with '-' (then stdout carries only "
        "the JSON; the table goes to stderr).",
    )


def human(json_out: str | None) -> Callable[..., None]:
    """``click.echo`` for the human-readable text: stderr when the JSON takes stdout."""
    to_err = json_out == STDOUT

    def echo(message: Any = "", **kw: Any) -> None:
        kw.setdefault("err", to_err)
        (click.secho if kw.keys() - {"err", "nl"} else click.echo)(message, **kw)

    return echo


def _plain(o: Any) -> Any:
    """numpy scalars and arrays, paths: as JSON knows them."""
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def emit_json(json_out: str | None, data: Any) -> None:
    """Write ``data`` where ``--json`` said (nothing when it was not given)."""
    if json_out is None:
        return
    if json_out == STDOUT:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=_plain))
        return
    from edge_runtime.atomic import atomic_write_json

    atomic_write_json(json_out, data)
    click.echo(f"wrote {json_out}", err=True)
