"""The ``edgereg`` command line.

Subcommands live in ``edgereg/commands/<name>.py`` and are imported only when they run
(or when their own ``--help`` is asked for), so ``edgereg --help``, ``edgereg run`` and
``edgereg bench`` never import TensorFlow: those modules import ``train``/``convert``
inside their functions, never at module level.
"""

from __future__ import annotations

import importlib
import sys

import click

from edgereg import __version__

#: name -> (module, one-line help shown by ``edgereg --help`` without importing it)
COMMANDS: dict[str, tuple[str, str]] = {
    "samples": (
        "edgereg.commands.samples",
        "Make realistic synthetic datasets, one per user story.",
    ),
    "data": (
        "edgereg.commands.data",
        "Check a dataset folder, or import one from a labelling tool's export.",
    ),
    "train": ("edgereg.commands.train", "Fine-tune a MobileNet regressor/classifier on a dataset."),
    "eval": ("edgereg.commands.eval", "Evaluate a run, .keras or .tflite model on a dataset."),
    "convert": ("edgereg.commands.convert", "Quantize and convert a run to TFLite (and Edge TPU)."),
    "run": ("edgereg.commands.run", "Run a .tflite model on camera/video/image frames (device)."),
    "bench": (
        "edgereg.commands.bench",
        "Measure latency, fps, memory and load time on this machine.",
    ),
    "demo": ("edgereg.commands.demo", "The whole pipeline on a sample dataset, end to end."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        return module.cli

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgereg")
def cli() -> None:
    """edgereg: from a folder of labelled camera images to a number on a Raspberry Pi.

    \b
    Workstation:  samples -> data check -> train -> eval -> convert
    Device:       run, bench   (no TensorFlow needed)
    First time:   edgereg demo
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one clear line and exit with their own code.

    A bad option exits 2 whoever finds it: click's usage errors (ClickException.exit_code)
    and edgereg's OptionError alike; data errors 3; the rest per edge_runtime/errors.py
    (docs/reliability.md lists them all).
    """
    from edge_runtime.errors import EdgeregError

    try:
        rv = cli.main(args=argv, prog_name="edgereg", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except EdgeregError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
