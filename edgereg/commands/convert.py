"""`edgereg convert` (not built yet)."""

from __future__ import annotations

import click


@click.command(name="convert")
def cli() -> None:
    """Not built yet."""
    raise click.ClickException("edgereg convert is not built yet")
