"""`edgereg samples` (not built yet)."""

from __future__ import annotations

import click


@click.command(name="samples")
def cli() -> None:
    """Not built yet."""
    raise click.ClickException("edgereg samples is not built yet")
