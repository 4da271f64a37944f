"""``edgereg convert RUN_DIR``: quantized TFLite files with the spec inside, verified.

The option lists come from :mod:`convert.export`, which imports TensorFlow only inside
its functions; TensorFlow and the rest of ``convert`` are imported inside the command
body, so ``edgereg convert --help`` stays fast and TensorFlow-free.
"""

from __future__ import annotations

import click

from convert.export import DEFAULT_VARIANTS, EDGETPU_FILENAME, IO_TYPES, VARIANTS
from convert.selective import INT8_TARGET

from ._json import emit_json, json_option

_VARIANTS_HELP = (
    "Comma-separated variants to export ("
    + "; ".join(f"{v.name}: {v.description}" for v in VARIANTS.values())
    + ")."
)
_HELP = f"""Convert a training run to TFLite variants in RUN_DIR/export/ and verify them.

Files: {", ".join(v.filename for v in VARIANTS.values())} (+ {EDGETPU_FILENAME} with
--edgetpu), report.json and report.md. Every file carries the model spec.
"""


@click.command(name="convert", help=_HELP)
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--variants",
    default=",".join(DEFAULT_VARIANTS),
    show_default=True,
    help=_VARIANTS_HELP,
)
@click.option(
    "--io",
    "io_type",
    type=click.Choice(IO_TYPES),
    default=None,
    help="Input/output type of the full-integer (int8) model; uint8 takes camera bytes "
    "as-is. Default: float, or uint8 with --edgetpu (the Edge TPU runs integer tensors "
    "only: float edges would run on the CPU), which refuses float.",
)
@click.option(
    "--calib",
    type=click.IntRange(1, 100_000),
    default=256,
    show_default=True,
    help="Training images used to calibrate int8/int16x8 (deterministic sample).",
)
@click.option(
    "--edgetpu",
    is_flag=True,
    help="Analyse int8 for the Edge TPU and compile it; implies integer input/output "
    "(--io uint8 unless --io int8 is given).",
)
@click.option(
    "--max-drop",
    type=click.FloatRange(0, 1),
    default=None,
    help="Fail (exit 9) when a variant is worse than Keras by more than this fraction "
    "on the task metric, e.g. 0.05 = 5 %. It is also int8's target (default "
    f"{INT8_TARGET:g}): int8 past it is a warning, and int8 past it or within it by less "
    "than one standard error gets int8_mixed built.",
)
@click.option("--no-verify", is_flag=True, help="Skip verification on the validation split.")
@click.option(
    "--latency-runs",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="Invokes per latency measurement (the median is reported).",
)
@click.option(
    "--val-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Verify on at most this many validation images.",
)
@json_option("the conversion report (the same as export/report.json)")
def cli(
    run_dir: str,
    json_out: str | None,
    variants: str,
    io_type: str | None,
    calib: int,
    edgetpu: bool,
    max_drop: float | None,
    no_verify: bool,
    latency_runs: int,
    val_limit: int | None,
) -> None:
    """Convert a training run (the help text is :data:`_HELP`, built from the variants)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edge_runtime.errors import OptionError

    io_type = edgetpu_io(io_type, edgetpu)
    if max_drop is not None and no_verify:
        raise OptionError("--max-drop needs verification: drop --no-verify")
    from convert.export import ConvertOptions, convert_run, parse_variants

    opts = ConvertOptions(
        variants=parse_variants(variants),
        io=io_type,
        calib=calib,
        edgetpu=edgetpu,
        max_drop=max_drop,
        verify=not no_verify,
        latency_runs=latency_runs,
        val_limit=val_limit,
    )
    report = convert_run(run_dir, opts, echo=lambda s: click.echo(s, err=True))
    emit_json(json_out, report)


def edgetpu_io(io_type: str | None, edgetpu: bool) -> str:
    """The ``--io`` to use: float by default; with ``--edgetpu`` an integer type (uint8
    unless int8 was asked for), and float refused: the Edge TPU runs integer tensors only,
    so float input/output would add CPU ops at both ends of every invoke."""
    if not edgetpu:
        return io_type or "float"
    if io_type == "float":
        raise click.UsageError(
            "--edgetpu needs integer input/output: float edges run on the CPU, not the "
            "Edge TPU; use --io uint8 (camera bytes as-is, the default with --edgetpu) or "
            "--io int8"
        )
    return io_type or "uint8"
