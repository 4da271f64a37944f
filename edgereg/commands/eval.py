"""`edgereg eval` (not built yet)."""

from __future__ import annotations

import click


@click.command(name="eval")
def cli() -> None:
    """Not built yet."""
    raise click.ClickException("edgereg eval is not built yet")
