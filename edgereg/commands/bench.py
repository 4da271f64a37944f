"""`edgereg bench` (not built yet)."""

from __future__ import annotations

import click


@click.command(name="bench")
def cli() -> None:
    """Not built yet."""
    raise click.ClickException("edgereg bench is not built yet")
