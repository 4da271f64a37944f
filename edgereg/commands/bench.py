"""`edgereg bench MODEL`: latency, fps, memory and start-up time of a .tflite on this machine."""

from __future__ import annotations

import click

from edge_runtime.interpreter import BACKENDS

from ._json import STDOUT, emit_json, human, json_option


@click.command(name="bench")
@click.argument("model", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--frames",
    default=200,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Frames to time (after --warmup).",
)
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Default: all cores.")
@click.option(
    "--source",
    default="synthetic",
    show_default=True,
    help="Anything `edgereg run --source` takes, to time your own camera: a camera index "
    "(0) or /dev/videoN, a video file (decoded every frame, looped), an image folder or "
    "glob (read again from the start), an rtsp:// or http:// URL, a GStreamer pipeline, "
    "picam:0. Or 'synthetic' (in-memory 640x480 BGR frames) or synthetic:WxH (e.g. "
    "synthetic:320x240: the size `run --width/--height` asks a camera for).",
)
@click.option("--width", type=click.IntRange(1), help="Ask the camera for this width.")
@click.option("--height", type=click.IntRange(1), help="Ask the camera for this height.")
@click.option("--fps", type=click.FloatRange(min=0.1), help="Ask the camera for this rate.")
@json_option("every measurement")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
)
@click.option("--device", default="cpu", show_default=True, help="cpu | usb[:N] | pci[:N].")
@click.option(
    "--spec", "spec_path", type=click.Path(dir_okay=False), help="spec.json for a bare .tflite."
)
@click.option(
    "--warmup",
    default=10,
    show_default=True,
    type=click.IntRange(0, 10_000),
    help="Untimed frames first.",
)
@click.option("--no-startup", is_flag=True, help="Skip the fresh-process import/load timing.")
@click.option(
    "--tta",
    is_flag=True,
    help="Time test-time augmentation (one invoke per transform the spec declares); "
    "refused when it declares none, as by run and eval.",
)
def cli(
    model: str,
    frames: int,
    threads: int | None,
    source: str,
    width: int | None,
    height: int | None,
    fps: float | None,
    json_out: str | None,
    backend: str,
    device: str,
    spec_path: str | None,
    warmup: int,
    no_startup: bool,
    tta: bool,
) -> None:
    """Measure MODEL: bare invoke() vs full per-frame latency (p50/p95/p99), fps, peak RSS,
    import + model load time and model size. No TensorFlow is imported (unless
    --backend tensorflow). With a camera or stream, a frame's time includes waiting for
    its next frame: what your camera and model give together."""
    from edge_runtime.bench import format_table, run_bench

    _check_outputs(model, source, spec_path, json_out)
    result = run_bench(
        model,
        frames=frames,
        num_threads=threads,
        source=source,
        backend=backend,
        warmup=warmup,
        startup=not no_startup,
        camera_size=(width, height, fps),
        device=device,
        spec=spec_path,
        tta=tta,
    )
    human(json_out)(format_table(result))
    emit_json(json_out, result)


#: Keys every ``edgereg bench --json`` file holds (how an earlier one is recognised).
JSON_KEYS = ("bare_invoke_ms", "full_ms")


def _check_outputs(model: str, source: str, spec_path: str | None, json_out: str | None) -> None:
    """--json may not be an input (the model, --spec, a --source video) and may only
    replace bench's own earlier file ('-' is standard output)."""
    from edge_runtime.bench import parse_synthetic
    from edge_runtime.outputs import check_outputs
    from edge_runtime.ownership import claim_file, json_with_keys
    from edge_runtime.sources import source_paths

    out_file = None if json_out in (None, STDOUT) else json_out
    files, folders = ([], []) if parse_synthetic(source) else source_paths(source)
    check_outputs(
        [("MODEL", model), ("--spec", spec_path)] + [("--source", f) for f in files],
        [("--json", out_file)],
        input_folders=[("--source", d) for d in folders],
    )
    if out_file:
        claim_file("--json", out_file, json_with_keys(*JSON_KEYS), "edgereg bench --json")
