"""`edgereg run MODEL --source S`: a .tflite model on camera/video/image frames, no TensorFlow.

Everything here comes from ``edge_runtime`` (numpy, OpenCV and a LiteRT interpreter);
nothing imports TensorFlow unless ``--backend tensorflow`` is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edge_runtime.interpreter import BACKENDS
from edge_runtime.smoothing import SMOOTHERS

if TYPE_CHECKING:  # for the annotations only: the command imports these when it runs
    from edge_runtime.mqtt import MqttOptions
    from edge_runtime.predictor import PredictorOptions
    from edge_runtime.preprocess import Roi


@click.command(name="run", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--source",
    "-s",
    required=True,
    metavar="S",
    help="Camera index (0) or device (/dev/video0), video file, image folder or glob "
    "('frames/*.jpg'), rtsp:// or http:// URL, GStreamer pipeline (contains '!'), "
    "or picam:0 for a Pi CSI camera (picamera2).",
)
@click.option(
    "--json",
    "json_out",
    metavar="OUT|-",
    help="JSON lines, one per frame, to a file or '-' for stdout (the default when no "
    "other output is given).",
)
@click.option(
    "--raw",
    is_flag=True,
    help="Add the model's raw (dequantized) output to every JSON result (--json, --mqtt, "
    "--serve): for debugging a model, not for consumers.",
)
@click.option("--csv", "csv_out", metavar="OUT", help="Flat CSV, one row per frame.")
@click.option(
    "--video",
    "video_out",
    metavar="OUT",
    help="Annotated video (.avi/.mkv: MJPG, .mp4/.mov: mp4v); appears under this name "
    "only once complete.",
)
@click.option("--preview", is_flag=True, help="Show a window when a display exists.")
@click.option("--roi", metavar="x,y,w,h", help="Run the model on this part of each frame.")
@click.option("--smooth", type=click.Choice(SMOOTHERS), help="Smooth outputs across frames.")
@click.option(
    "--tta",
    is_flag=True,
    help="Average over the spec's invariances (slower); refused when it declares none.",
)
@click.option("--threads", type=click.IntRange(1, 64), help="Interpreter threads (default: all).")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
)
@click.option("--device", default="cpu", show_default=True, help="cpu | usb[:N] | pci[:N]")
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="spec.json for a model that carries none.",
)
@click.option(
    "--every-frame/--latest",
    default=None,
    help="--every-frame: process every frame, none dropped (default for files/images). "
    "--latest: always take the newest frame, dropping older ones (default for cameras "
    "and streams; a file is then played in real time).",
)
@click.option("--max-frames", type=click.IntRange(1), help="Stop after this many frames.")
@click.option("--width", type=click.IntRange(1), help="Ask the camera for this width.")
@click.option("--height", type=click.IntRange(1), help="Ask the camera for this height.")
@click.option("--fps", type=click.FloatRange(min=0.1), help="Ask the camera for this rate.")
@click.option(
    "--stall-timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds without a frame before a live source is reopened.",
)
@click.option(
    "--reconnect/--no-reconnect",
    default=True,
    show_default=True,
    help="Reopen a lost camera/stream with backoff (else stop with an error).",
)
@click.option("--loop", is_flag=True, help="Restart a video file at its end (soak tests).")
@click.option("--status/--no-status", default=True, help="Live status line on stderr.")
@click.option(
    "--mqtt",
    "mqtt_url",
    metavar="URL",
    help="Publish every result to an MQTT broker: mqtt://HOST[:PORT]/TOPIC or mqtts://... "
    "(TLS). Results go to TOPIC/DEVICE_ID, 'online'/'offline' (retained, last will) to "
    "TOPIC/DEVICE_ID/status. Needs pip install 'edgereg[mqtt]'. Never put a password here: "
    "use --mqtt-auth or EDGEREG_MQTT_USERNAME/EDGEREG_MQTT_PASSWORD.",
)
@click.option(
    "--mqtt-qos",
    type=click.IntRange(0, 2),
    default=1,
    show_default=True,
    help="MQTT quality of service: 1 = at least once (a result may come twice after a lost "
    "connection), 0 = at most once.",
)
@click.option(
    "--device-id",
    metavar="ID",
    help="This device's name in MQTT topics and payloads (default: the host name).",
)
@click.option(
    "--mqtt-auth",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="INI ([mqtt] section) or JSON file with username, password, ca, cert, key "
    "(TLS file paths relative to FILE). Keep it chmod 600.",
)
@click.option(
    "--mqtt-queue",
    type=click.IntRange(1, 10_000_000),
    default=10_000,
    show_default=True,
    metavar="N",
    help="Results kept while the broker is away; past this the oldest are dropped (counted).",
)
@click.option(
    "--mqtt-spool",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Keep the MQTT queue on disk in DIR (one small file per result, written "
    "atomically): results not yet delivered survive a restart of edgereg run.",
)
@click.option(
    "--mqtt-drain",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="S",
    help="At the end, wait up to S seconds for queued results to be delivered.",
)
@click.option(
    "--serve",
    metavar="[HOST:]PORT",
    help="Live view over HTTP: the annotated frames (MJPEG) and the latest result on a "
    "small page, and /latest.json. Bound to 127.0.0.1 unless HOST is given (0.0.0.0 for "
    "every interface: anyone on the network can then watch; there is no password).",
)
def cli(
    model: Path,
    source: str,
    json_out: str | None,
    raw: bool,
    csv_out: str | None,
    video_out: str | None,
    preview: bool,
    roi: str | None,
    smooth: str | None,
    tta: bool,
    threads: int | None,
    backend: str,
    device: str,
    spec_path: Path | None,
    every_frame: bool | None,
    max_frames: int | None,
    width: int | None,
    height: int | None,
    fps: float | None,
    stall_timeout: float,
    reconnect: bool,
    loop: bool,
    status: bool,
    mqtt_url: str | None,
    mqtt_qos: int,
    device_id: str | None,
    mqtt_auth: Path | None,
    mqtt_queue: int,
    mqtt_spool: Path | None,
    mqtt_drain: float,
    serve: str | None,
) -> int:
    """Run MODEL (.tflite) on frames from --source and stream the results.

    \b
    Examples:
      edgereg run model.tflite --source 0                      # USB camera -> JSON lines
      edgereg run model.tflite --source picam:0 --json out.jsonl --preview
      edgereg run model.tflite --source clip.mp4 --csv out.csv --video annotated.avi
      edgereg run model.tflite --source 'frames/*.jpg' --json -
      edgereg run model.tflite --source 0 --mqtt mqtt://broker.local/edgereg --serve 8080

    JSON lines go to stdout (or --json FILE): {"frame", "t", "latency_ms", "file",
    "result"} (schema: docs/result.schema.json); the status line and messages go to stderr. No output may be written over
    an input or another output (exit 13, nothing written). Ctrl-C or SIGTERM stops
    cleanly and finishes the outputs; a second one stops waiting (e.g. for the broker)
    and says what was kept and what was lost.
    """
    from edge_runtime.pipeline import run_pipeline
    from edge_runtime.predictor import Predictor
    from edge_runtime.preprocess import parse_roi
    from edge_runtime.sources import open_source

    roi_t = parse_roi(roi) if roi else None
    if not (json_out or csv_out or video_out or preview or mqtt_url or serve):
        json_out = "-"
    _check_outputs(model, spec_path, mqtt_auth, source, json_out, csv_out, video_out, mqtt_spool)
    opts = _predictor_options(model, threads, backend, device, roi_t, smooth, tta, spec_path)
    predictor = Predictor.create_from_options(opts)
    with predictor:
        src = open_source(
            source,
            every_frame=every_frame,
            width=width,
            height=height,
            fps=fps,
            reconnect=reconnect,
            stall_timeout=stall_timeout,
            loop=loop,
        )
        try:
            mqtt = _mqtt_options(
                mqtt_url, mqtt_qos, device_id, mqtt_auth, mqtt_queue, mqtt_spool, mqtt_drain
            )
            sinks = _build_sinks(predictor, src, json_out, csv_out, video_out, preview, mqtt, serve)
            for sink in sinks:
                sink.raw = raw
        except BaseException:
            src.close()
            raise
        from edge_runtime.log import verbosity

        status = status and verbosity() >= 0  # -q: no status line
        run_pipeline(predictor, src, sinks, max_frames=max_frames, status=status)
    return 0


def _predictor_options(
    model: Path,
    threads: int | None,
    backend: str,
    device: str,
    roi: Roi | None,
    smooth: str | None,
    tta: bool,
    spec_path: Path | None,
) -> PredictorOptions:
    """The Predictor's options from the command line (frames come from OpenCV: BGR)."""
    from edge_runtime.predictor import PredictorOptions

    return PredictorOptions(
        model_path=model,
        num_threads=threads,
        backend=backend,
        device=device,
        color_order="BGR",
        roi=roi,
        smoothing=smooth,
        tta=tta,
        spec=spec_path,
    )


def _mqtt_options(
    url: str | None,
    qos: int,
    device_id: str | None,
    auth: Path | None,
    queue: int,
    spool: Path | None,
    drain: float,
) -> MqttOptions | None:
    """--mqtt and its options as MqttOptions; None without --mqtt."""
    if not url:
        return None
    from edge_runtime.mqtt import MqttOptions

    return MqttOptions(
        url=url,
        qos=qos,
        device_id=device_id,
        auth_file=auth,
        queue=queue,
        spool=spool,
        drain_s=drain,
    )


def _check_outputs(
    model: Path,
    spec_path: Path | None,
    auth: Path | None,
    source: str,
    json_out: str | None,
    csv_out: str | None,
    video_out: str | None,
    spool: Path | None,
) -> None:
    """Refuse (exit 13) any output that is an input or another output, before anything
    is opened for writing."""
    from edge_runtime.outputs import check_outputs
    from edge_runtime.sources import source_paths

    files, folders = source_paths(source)
    check_outputs(
        [("MODEL", model), ("--spec", spec_path), ("--mqtt-auth", auth)]
        + [("--source", f) for f in files],
        [("--json", json_out), ("--csv", csv_out), ("--video", video_out)],
        input_folders=[("--source", d) for d in folders],
        output_folders=[("--mqtt-spool", spool)],
    )


def _build_sinks(
    predictor: Any,
    src: Any,
    json_out: str | None,
    csv_out: str | None,
    video_out: str | None,
    preview: bool,
    mqtt: Any,
    serve: str | None,
) -> list[Any]:
    """Open every output, those that can fail without truncating a file first; if one
    fails, those already open are abandoned (an earlier video is kept)."""
    from edge_runtime.sinks import CsvSink, JsonlSink, PreviewSink, VideoSink

    built: dict[str, Any] = {}
    try:
        if mqtt is not None:
            from edge_runtime.mqtt import MqttSink

            built["mqtt"] = MqttSink(mqtt)
        if serve:
            from edge_runtime.liveview import LiveViewSink

            title = f"edgereg run {predictor.model_path.name}"
            built["serve"] = LiveViewSink(serve, predictor.spec, title=title)
        if video_out:
            built["video"] = VideoSink(video_out, fps=src.fps)
        if csv_out:
            built["csv"] = CsvSink(csv_out, predictor.spec)
        if json_out:
            built["json"] = JsonlSink(json_out)
        if preview:
            built["preview"] = PreviewSink()
    except BaseException:
        for sink in built.values():
            sink.abort()
        raise
    # finished in this order: files first, the network last (its drain may wait)
    order = ("json", "csv", "video", "preview", "serve", "mqtt")
    return [built[k] for k in order if k in built]
