"""`edgereg data` (not built yet)."""

from __future__ import annotations

import click


@click.command(name="data")
def cli() -> None:
    """Not built yet."""
    raise click.ClickException("edgereg data is not built yet")
