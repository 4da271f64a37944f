"""`edgereg demo` (not built yet)."""

from __future__ import annotations

import click


@click.command(name="demo")
def cli() -> None:
    """Not built yet."""
    raise click.ClickException("edgereg demo is not built yet")
