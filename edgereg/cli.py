"""The ``edgereg`` command line.

Subcommands live in ``edgereg/commands/<name>.py`` and are imported only when they run
(or when their own ``--help`` is asked for), so ``edgereg --help``, ``edgereg run`` and
``edgereg bench`` never import TensorFlow: those modules import ``train``/``convert``
inside their functions, never at module level.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

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


def _set_verbosity(level: int) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            from edge_runtime.log import configure

            configure(level)

    return callback


def verbosity_options() -> list[click.Option]:
    """``-q``/``-v``: given to the group and to every subcommand, so both
    ``edgereg -q train ...`` and ``edgereg train ... -q`` work; the level reaches the
    subprocesses ``edgereg demo`` runs through the environment (``EDGEREG_VERBOSITY``)."""
    return [
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_set_verbosity(-1),
            help="Warnings and errors only: no progress, no step messages.",
        ),
        click.Option(
            ["-v", "--verbose"],
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_set_verbosity(1),
            help="Details too, and what TensorFlow/LiteRT print natively.",
        ),
    ]


def _add_verbosity(cmd: click.Command) -> click.Command:
    names = {n for p in cmd.params for n in getattr(p, "opts", [])}
    if "--verbose" not in names and "-q" not in names and "-v" not in names:
        cmd.params.extend(verbosity_options())
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _add_verbosity(sub)
    return cmd


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        return _add_verbosity(module.cli)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    params=verbosity_options(),
)
@click.version_option(__version__, prog_name="edgereg")
def cli() -> None:
    """edgereg: from a folder of labelled camera images to a number on a Raspberry Pi.

    \b
    Workstation:  samples -> data check -> train -> eval -> convert
    Device:       run, bench   (no TensorFlow needed)
    First time:   edgereg demo

    Messages go to stderr (-q: warnings only; -v: details and native libraries' lines),
    results to stdout or the files you name.
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one clear line and exit with their own code.

    A bad option exits 2 whoever finds it: click's usage errors (ClickException.exit_code)
    and edgereg's OptionError alike; data errors 3; the rest per edge_runtime/errors.py
    (docs/reliability.md lists them all).
    """
    from edge_runtime.errors import EdgeregError
    from edge_runtime.log import configure

    configure()  # the inherited level (EDGEREG_VERBOSITY); -q/-v change it while parsing
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
