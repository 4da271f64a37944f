"""`edgereg train` (not built yet)."""

from __future__ import annotations

import click


@click.command(name="train")
def cli() -> None:
    """Not built yet."""
    raise click.ClickException("edgereg train is not built yet")
