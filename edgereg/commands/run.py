"""`edgereg run` (not built yet)."""

from __future__ import annotations

import click


@click.command(name="run")
def cli() -> None:
    """Not built yet."""
    raise click.ClickException("edgereg run is not built yet")
