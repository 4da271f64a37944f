"""Keras run -> TFLite variants, each carrying the model spec and the standard metadata.

The path is the one measured fastest with Keras 3: load ``run/model.keras`` (safe mode on),
wrap it with a STATIC batch of 1, ``model.export()`` it ONCE to a SavedModel, then run
``tf.lite.TFLiteConverter.from_saved_model`` once per variant.

Variants live in ONE registry, :data:`VARIANTS`. Adding a variant is one entry: a name,
the file suffix, a function that configures the converter, which interpreter backends
can run the result, and whether the Edge TPU compiler can take it.

Every file gets, in this order: our spec (``edgereg_spec``, :func:`embed_spec`), then the
standard TFLite Metadata other tools read (``TFLITE_METADATA`` and, for class models,
``labels.txt``; :mod:`convert.tflite_metadata`), which keeps every other entry.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.atomic import atomic_write_bytes
from edge_runtime.errors import ModelFileError, OptionError, OutputError, SpecError
from edge_runtime.log import quiet_native
from edge_runtime.metadata import embed_spec
from edge_runtime.outputs import check_outputs
from edge_runtime.ownership import claim_folder, mark, only_names
from edge_runtime.spec import ModelSpec

from .report import pct_se

#: ``--io`` choices: the inference input/output type of the full-integer variant.
IO_TYPES = ("float", "int8", "uint8")


@dataclass
class ConvertContext:
    """What a variant's settings function may need beyond the converter itself."""

    spec: ModelSpec
    io: str = "float"
    #: Returns a fresh iterator of ``[x]`` with x float32 (1, H, W, 3), raw 0..255 RGB.
    representative: Callable[[], Iterator[list[np.ndarray]]] | None = None


@dataclass(frozen=True)
class Variant:
    """One export variant: adding a variant is adding one of these to :data:`VARIANTS`."""

    name: str
    #: The file is ``model_<suffix>.tflite``.
    suffix: str
    #: Configures a ``tf.lite.TFLiteConverter`` for this variant.
    configure: Callable[[Any, ConvertContext], None]
    #: Interpreter backends that can run the file (see edge_runtime's PredictorOptions).
    backends: tuple[str, ...]
    #: Every tensor integer: the input of ``edgetpu_compiler``.
    edgetpu_eligible: bool = False
    needs_calibration: bool = False
    description: str = ""
    #: Whether ``--io`` applies (integer input/output types).
    uses_io: bool = False
    #: Built after verification, from what the verified ``int8`` file lost: the search
    #: of convert/selective.py (``configure`` gives its converter settings). Only when
    #: int8 misses the precision target; the report says so otherwise.
    selective: bool = False

    @property
    def filename(self) -> str:
        return f"model_{self.suffix}.tflite"


# --------------------------------------------------------------------------- variants
def fp32(conv: Any, ctx: ConvertContext) -> None:
    """Plain float32: the reference; runs everywhere."""


def fp16(conv: Any, ctx: ConvertContext) -> None:
    """float16 weights (half the size); computed in float32 on a CPU."""
    import tensorflow as tf

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]


def dynamic(conv: Any, ctx: ConvertContext) -> None:
    """int8 weights, float activations quantized on the fly (no calibration)."""
    import tensorflow as tf

    conv.optimizations = [tf.lite.Optimize.DEFAULT]


def int8(conv: Any, ctx: ConvertContext) -> None:
    """Full integer: int8 weights and activations, calibrated on training images.

    ``TFLITE_BUILTINS_INT8`` only, so an op that cannot be quantized is a conversion
    error that names it instead of a silent float fallback.
    """
    import tensorflow as tf

    if ctx.representative is None:
        raise SpecError("int8: needs a representative dataset (calibration images)")
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = ctx.representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if ctx.io != "float":
        dtype = {"int8": tf.int8, "uint8": tf.uint8}[ctx.io]
        conv.inference_input_type = dtype
        conv.inference_output_type = dtype


def int16x8(conv: Any, ctx: ConvertContext) -> None:
    """16-bit activations, 8-bit weights: far finer outputs than int8; float input/output."""
    import tensorflow as tf

    if ctx.representative is None:
        raise SpecError("int16x8: needs a representative dataset (calibration images)")
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = ctx.representative
    conv.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    ]


def int8_mixed(conv: Any, ctx: ConvertContext) -> None:
    """int8 with the fewest layers kept in float that bring it within the target."""
    from . import selective

    if ctx.representative is None:
        raise SpecError("int8_mixed: needs a representative dataset (calibration images)")
    selective.mixed_settings(conv, ctx)


_ALL = ("litert", "tflite_runtime", "tensorflow")
_NEW = ("litert", "tensorflow")  # tflite-runtime 2.14 lacks newer op versions

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("fp32", "fp32", fp32, _ALL, description="float32 reference"),
        Variant("fp16", "fp16", fp16, _ALL, description="float16 weights"),
        Variant("dynamic", "dynamic", dynamic, _NEW, description="int8 weights, float compute"),
        Variant(
            "int8",
            "int8",
            int8,
            _ALL,
            edgetpu_eligible=True,
            needs_calibration=True,
            uses_io=True,
            description="full integer (int8)",
        ),
        Variant(
            "int16x8",
            "int16x8",
            int16x8,
            _NEW,
            needs_calibration=True,
            description="int16 activations, int8 weights",
        ),
        Variant(
            "int8_mixed",
            "int8_mixed",
            int8_mixed,
            _NEW,
            needs_calibration=True,
            selective=True,
            description="int8, the layers that lose precision kept in float (CPU only)",
        ),
    )
}
DEFAULT_VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int16x8", "int8_mixed")
EDGETPU_FILENAME = "model_int8_edgetpu.tflite"


def parse_variants(text: str | None) -> tuple[str, ...]:
    """``"fp32,int8"`` -> ``("fp32", "int8")``; unknown names are a SpecError listing the known."""
    if not text:
        return DEFAULT_VARIANTS
    out: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        if name not in VARIANTS:
            raise OptionError(
                f"--variants: {name!r} is not a variant; choose from {', '.join(VARIANTS)}"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise OptionError(f"--variants: none given; choose from {', '.join(VARIANTS)}")
    return tuple(out)


# --------------------------------------------------------------------------- loading
def load_run_model(run_dir: str | Path):
    """``run_dir/model.keras`` with safe mode on (custom layers from ``train.models``)."""
    import keras

    with contextlib.suppress(ImportError):
        import train.models  # noqa: F401  (registers the custom layers)
    path = Path(run_dir) / "model.keras"
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file; is {run_dir} a run made by `edgereg train`?")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:  # keras raises many types for a bad file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelFileError(
            f"{path}: cannot be loaded with safe mode on ({msg}); retrain it with `edgereg train`"
        ) from None


def load_run_spec(run_dir: str | Path) -> ModelSpec:
    """``run_dir/spec.json`` as a :class:`ModelSpec`."""
    path = Path(run_dir) / "spec.json"
    if not path.is_file():
        raise SpecError(f"{path}: no such file; is {run_dir} a run made by `edgereg train`?")
    try:
        return ModelSpec.from_json(path.read_bytes())
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None


def static_batch_model(model: Any, spec: ModelSpec):
    """The model rebuilt on an Input with a static batch of 1 and the spec's input size."""
    import keras

    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    want = (spec.input_height, spec.input_width, 3)
    if shape is not None and tuple(d for d in shape[1:]) not in (want, (None, None, 3)):
        raise SpecError(
            f"input: the Keras model takes {shape[1:]}, the spec says {want}; "
            "re-export the run (spec.json and model.keras disagree)"
        )
    if shape is not None and shape[0] == 1 and tuple(shape[1:]) == want:
        wrapped = model
    else:
        inp = keras.Input(want, batch_size=1, name="image")
        wrapped = keras.Model(inp, model(inp), name="edgereg_static")
    out = wrapped.outputs[0].shape
    if len(wrapped.outputs) != 1 or out[-1] != spec.output_size:
        raise SpecError(
            f"output: the spec expects one output of {spec.output_size} values, the Keras "
            f"model gives {[tuple(o.shape) for o in wrapped.outputs]}"
        )
    return wrapped


def export_saved_model(model: Any, out_dir: str | Path) -> Path:
    """``model.export(out_dir)`` once, quietly, with a STATIC (1, H, W, 3) input signature.

    Keras 3 exports a dynamic batch by default even for a batch-1 Input; the Edge TPU
    rejects dynamic shapes, so the signature is given explicitly.
    """
    import tensorflow as tf

    out = Path(out_dir)
    shape = (1, *tuple(int(d) for d in model.inputs[0].shape[1:]))
    sig = [tf.TensorSpec(shape, tf.float32, name="image")]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model.export(str(out), verbose=False, input_signature=sig)
    except (OSError, tf.errors.OpError) as e:
        # TensorFlow reports a full disk as OutOfRangeError/ResourceExhausted, not OSError.
        msg = getattr(e, "message", None) or getattr(e, "strerror", None) or str(e)
        raise OutputError(
            f"{out}: cannot write the temporary SavedModel ({msg.strip().splitlines()[0]}); "
            "free some disk space and convert again; earlier exports are kept"
        ) from None
    return out


# --------------------------------------------------------------------------- converting
def convert_variant(saved_model_dir: str | Path, variant: Variant, ctx: ConvertContext) -> bytes:
    """Run the real TFLite converter for one variant; errors name the failing op."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    variant.configure(conv, ctx)
    try:
        with quiet_native():  # the converter's C++ chatter (shown with -v)
            return bytes(conv.convert())
    except Exception as e:  # ConverterError and friends
        if _DISK_FULL.search(str(e)):
            raise OutputError(
                f"variant {variant.name}: the converter could not write its files "
                f"({_DISK_FULL.search(str(e)).group(0)}); free some disk space and convert again"
            ) from None
        raise ModelFileError(_conversion_message(variant, e)) from None


_DISK_FULL = re.compile(r"No space left on device|File too large|Disk quota exceeded")


def _conversion_message(variant: Variant, e: Exception) -> str:
    text = str(e)
    ops = sorted(set(re.findall(r"'(tfl?\.[A-Za-z0-9_]+)'", text)))
    hint = {
        "int8": "this op has no int8 kernel; use --variants int16x8 or dynamic, or change "
        "the model (e.g. avoid that layer)",
        "int16x8": "this op has no 16x8 kernel; use int8 or dynamic",
    }.get(variant.name, "check the model's layers")
    first = next((ln.strip() for ln in text.splitlines() if "error" in ln.lower()), text[:300])
    where = f" (ops: {', '.join(ops)})" if ops else ""
    return f"variant {variant.name}: the TFLite converter failed{where}: {first}; {hint}"


def io_quantization(model: bytes) -> dict[str, Any]:
    """Input/output dtype, scale and zero point, read with the real interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    out: dict[str, Any] = {}
    for key, det in (("input", it.get_input_details()[0]), ("output", it.get_output_details()[0])):
        scale, zp = det["quantization"]
        out[key] = {
            "dtype": np.dtype(det["dtype"]).name,
            "shape": [int(d) for d in det["shape"]],
            "scale": float(scale),
            "zero_point": int(zp),
        }
    # With a float output, the last integer tensor is the one DEQUANTIZE reads: its scale
    # is the output's real resolution.
    out_index = it.get_output_details()[0]["index"]
    for op in it._get_ops_details():
        if out_index in list(op["outputs"]) and op["op_name"] == "DEQUANTIZE":
            scale, zp = it._get_tensor_details(int(op["inputs"][0]), 0)["quantization"]
            out["output"]["integer_scale"] = float(scale)
            break
    else:
        out["output"]["integer_scale"] = out["output"]["scale"] or None
    return out


def check_integer_input(variant: str, io_type: str, q: dict[str, Any]) -> list[str]:
    """Warnings when integer input does not map camera bytes 1:1 (scale 1, zp 0 / -128)."""
    if io_type == "float":
        return []
    inp = q["input"]
    want_zp = 0 if io_type == "uint8" else -128
    if abs(inp["scale"] - 1.0) > 0.01 or inp["zero_point"] != want_zp:
        return [
            f"{variant}: {io_type} input has scale {inp['scale']:.4f}, zero point "
            f"{inp['zero_point']} (want 1.0, {want_zp}); camera bytes would need rescaling"
        ]
    return []


@dataclass
class ExportedFile:
    variant: str
    path: Path
    size_bytes: int
    io: str
    quantization: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    #: the standard TFLite Metadata was written (MediaPipe Tasks, Android Studio read it)
    standard_metadata: bool = False


def write_variant(
    saved_model_dir: str | Path,
    variant: Variant,
    ctx: ConvertContext,
    export_dir: str | Path,
    extra: dict[str, Any] | None = None,
) -> ExportedFile:
    """Convert one variant, embed the spec, write ``export_dir/model_<suffix>.tflite`` atomically."""
    data = convert_variant(saved_model_dir, variant, ctx)
    io_type = ctx.io if variant.uses_io else "float"
    spec = ctx.spec.with_extra(
        export={"variant": variant.name, "io": io_type, **(extra or {})},
    )
    data = embed_spec(data, spec)
    warnings: list[str] = []
    standard = _with_standard_metadata(data, spec, variant.name, warnings)
    data, written = standard or data, standard is not None
    q = io_quantization(data)
    path = atomic_write_bytes(Path(export_dir) / variant.filename, data)
    return ExportedFile(
        variant=variant.name,
        path=path,
        size_bytes=len(data),
        io=io_type,
        quantization=q,
        warnings=warnings + check_integer_input(variant.name, io_type, q),
        standard_metadata=written,
    )


#: The kind in an export folder's ownership marker (edge_runtime/ownership.py).
EXPORT_KIND = "export"


def check_export_dir(run: Path, export_dir: Path) -> None:
    """RUN_DIR/export may not be or hold an input (the run's files, its datasets: an
    ``export`` that is a link into the data), and must be convert's own folder."""
    import json

    files = [(f"RUN_DIR/{n}", run / n) for n in ("model.keras", "spec.json", "config.json")]
    try:
        cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    folders = [
        (f"the run's {what}", cfg[key])
        for key, what in (("data_dir", "DATA_DIR"), ("val_dir", "--val"))
        if isinstance(cfg, dict) and isinstance(cfg.get(key), str) and cfg[key]
    ]
    what = "RUN_DIR/export"
    check_outputs(files, [], input_folders=folders, output_folders=[(what, export_dir)])
    legacy = only_names(("report.json", "report.md"), ("model_*", ".model_*"))
    claim_folder(what, export_dir, EXPORT_KIND, legacy=legacy, purpose="exports")


def _with_standard_metadata(
    data: bytes, spec: ModelSpec, name: str, notes: list[str]
) -> bytes | None:
    """The model with the standard TFLite Metadata added (our spec stays), or None when
    MediaPipe's writer cannot run here (``notes`` says why; the file keeps our spec)."""
    from . import tflite_metadata

    try:
        return tflite_metadata.write_standard_metadata(data, spec)
    except tflite_metadata.MetadataUnavailable as e:
        notes.append(f"{name}: no standard TFLite metadata (other tools cannot read it): {e}")
        return None


def clean_stale_temps(export_dir: str | Path) -> int:
    """Remove temp files a killed earlier conversion left behind (never final names)."""
    n = 0
    d = Path(export_dir)
    if not d.is_dir():
        return 0
    for p in d.glob(".model_*.tmp*"):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n


# --------------------------------------------------------------------------- the whole run
@dataclass
class ConvertOptions:
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    io: str = "float"
    calib: int = 256
    edgetpu: bool = False
    max_drop: float | None = None
    verify: bool = True
    latency_runs: int = 50
    #: Verify on at most this many validation images (None = all).
    val_limit: int | None = None
    seed: int = 0


@dataclass
class _ConvertState:
    """What the steps of :func:`convert_run` hand on to each other."""

    opt: ConvertOptions
    say: Callable[[str], None]
    run: Path
    spec: ModelSpec
    export_dir: Path
    variants: list[Variant]
    #: The Keras model on a static batch of 1: exported, and the reference for verification.
    static: Any
    ctx: ConvertContext
    train_ds: Any = None
    val_ds: Any = None
    calib_images: np.ndarray | None = None
    #: The SavedModel every variant is converted from (removed when convert_run ends).
    saved_model: Path | None = None
    #: The validation split and Keras's raw outputs on it (from the verification step).
    val: Any = None
    keras_raw: np.ndarray | None = None
    files: list[ExportedFile] = field(default_factory=list)
    #: The report's notes: the same list, so steps after the report is started add to it.
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    checks: list[Any] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    gate_error: Exception | None = None


def convert_run(
    run_dir: str | Path,
    options: ConvertOptions | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Convert a training run into ``run_dir/export/``; returns the report dict.

    The steps: prepare (options, run, Keras model), calibration, converting every
    variant, the report, the Edge TPU, verification, the quality gate, writing the report.
    Raises QualityGateError (after writing the report) when ``max_drop`` is exceeded, and
    ModelFileError (after writing the others and the report) when a variant failed.
    """
    st = _prepare(run_dir, options or ConvertOptions(), echo or (lambda s: None))
    tmp = Path(tempfile.mkdtemp(prefix="edgereg_savedmodel_"))
    try:
        _load_splits_and_calibrate(st)
        _convert_variants(st, tmp)
        _start_report(st)
        _edgetpu_step(st)
        _verify_step(st)
        _int8_precision_step(st)
        _quality_gate(st)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _write_report_and_finish(st)


def _prepare(run_dir: str | Path, opt: ConvertOptions, say: Callable[[str], None]) -> _ConvertState:
    """Check the options and the run, clean stale temp files, load the spec and Keras model."""
    if opt.io not in IO_TYPES:
        raise OptionError(f"--io: {opt.io!r} is not one of {', '.join(IO_TYPES)}")
    names = list(opt.variants)
    needs_int8 = opt.edgetpu or any(VARIANTS[n].selective for n in names if n in VARIANTS)
    if needs_int8 and "int8" not in names:
        names.append("int8")
    variants = [VARIANTS[n] for n in names]
    run = Path(run_dir)
    if not run.is_dir():
        raise ModelFileError(f"{run}: no such run directory; train one with `edgereg train`")
    spec = load_run_spec(run)
    export_dir = run / "export"
    check_export_dir(run, export_dir)
    try:
        export_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{export_dir}: cannot create ({e.strerror or e})") from None
    mark(export_dir, EXPORT_KIND)
    if n := clean_stale_temps(export_dir):
        say(f"removed {n} temp file(s) left by an interrupted conversion")

    say(f"loading {run / 'model.keras'}")
    model = load_run_model(run)
    static = static_batch_model(model, spec)
    ctx = ConvertContext(spec=spec, io=opt.io)
    return _ConvertState(opt, say, run, spec, export_dir, variants, static, ctx)


def _load_splits_and_calibrate(st: _ConvertState) -> None:
    """The train/val splits (for calibration or verification) and the calibration images."""
    from . import quantize

    opt, say = st.opt, st.say
    need_calib = any(v.needs_calibration for v in st.variants)
    if need_calib or opt.verify:
        st.train_ds, st.val_ds = quantize.load_splits(st.run)
    if need_calib:
        paths = quantize.train_paths(st.train_ds)
        calib_images = quantize.calibration_images(paths, st.spec, opt.calib, opt.seed)
        k = min(opt.calib, len(paths))
        mirrored = f" + {len(calib_images) - k} mirrored" if len(calib_images) > k else ""
        say(f"calibration: {k} of {len(paths)} training images{mirrored}")
        st.ctx.representative = quantize.representative_dataset(calib_images)
        st.calib_images = calib_images


def _convert_variants(st: _ConvertState, tmp: Path) -> None:
    """One SavedModel, then every variant from it; a failed variant is kept for the end.

    Selective variants (``int8_mixed``) are built later, from the verified int8 file.
    """
    from . import quantize

    files, notes, failures, spec, say = st.files, st.notes, st.failures, st.spec, st.say
    calib_images, ctx, export_dir = st.calib_images, st.ctx, st.export_dir
    variants = [v for v in st.variants if not v.selective]
    say("exporting a SavedModel (static batch of 1)")
    saved = st.saved_model = export_saved_model(st.static, tmp / "saved_model")
    for i, v in enumerate(variants, 1):
        say(f"[{i}/{len(variants)}] converting {v.name} -> {v.filename}")
        extra = {"calibration_images": len(calib_images)} if v.needs_calibration else {}
        try:
            f = write_variant(saved, v, ctx, export_dir, extra)
        except ModelFileError as e:
            # keep going: the other variants and the report are still useful
            failures.append(str(e))
            say(f"  FAILED: {e}")
            continue
        files.append(f)
        notes += f.warnings
    for f in files:
        if f.variant == "int8" and f.quantization["output"].get("integer_scale"):
            scale = f.quantization["output"]["integer_scale"]
            notes.append("int8: " + quantize.int8_output_note(spec, scale))


def _start_report(st: _ConvertState) -> None:
    """The report's run, spec, settings, files and notes (later steps add their parts)."""
    st.report = {
        "run": st.run.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "spec": st.spec.to_dict(),
        "io": st.opt.io,
        "calibration_images": 0 if st.calib_images is None else len(st.calib_images),
        "files": [
            {
                "variant": f.variant,
                "file": f.path.name,
                "size_bytes": f.size_bytes,
                "io": f.io,
                "quantization": f.quantization,
                "backends": list(VARIANTS[f.variant].backends),
                "edgetpu_eligible": VARIANTS[f.variant].edgetpu_eligible,
                "standard_metadata": f.standard_metadata,
            }
            for f in st.files
        ],
        "notes": st.notes,
    }
    if st.failures:
        st.report["failed"] = st.failures


def _edgetpu_step(st: _ConvertState) -> None:
    """With ``--edgetpu``: analyse the int8 file for the Edge TPU and compile it."""
    if not st.opt.edgetpu:
        return
    if not any(f.variant == "int8" for f in st.files):
        st.notes.append("Edge TPU analysis skipped: the int8 variant failed")
        return
    from . import edgetpu

    say, rep = st.say, st.report
    int8_path = st.export_dir / VARIANTS["int8"].filename
    analysis = edgetpu.analyse(int8_path.read_bytes(), str(int8_path))
    say(analysis.summary())
    for s in analysis.suggestions:
        say(f"  suggestion: {s}")
    comp = edgetpu.compile_model(int8_path, st.export_dir)
    say(comp.message)
    rep["edgetpu"] = {
        "summary": analysis.summary(),
        "analysis": analysis.to_dict(),
        "compiler": comp.to_dict(),
    }
    if comp.ran and comp.output is not None:
        rep["files"].append(
            {
                "variant": "int8_edgetpu",
                "file": comp.output.name,
                "size_bytes": comp.output.stat().st_size,
                "io": st.opt.io,
                "backends": ["litert+libedgetpu"],
                "edgetpu_eligible": True,
            }
        )


def _verify_step(st: _ConvertState) -> None:
    """Unless ``--no-verify``: every file vs Keras on the validation split."""
    if not st.opt.verify:
        return
    if st.val_ds is None:
        st.notes.append("verification skipped: no validation split (install edgereg[train])")
        return
    from . import verify

    opt, spec, say, rep = st.opt, st.spec, st.say, st.report
    val = verify.ValidationSet.from_datasets(st.val_ds, st.train_ds, opt.val_limit)
    rep["validation_images"] = len(val.images)
    say(f"verifying on {len(val.images)} validation images (device runtime vs Keras)")
    kraw = verify.keras_raw(st.static, spec, val.images)
    st.val, st.keras_raw = val, kraw
    kmetrics = verify.compute_metrics(
        spec, val.targets, spec.decode_output(kraw), val.sizes, val.train_targets
    )
    key, hib = verify.primary_metric(spec)
    rep["keras"] = {
        "metric_key": key,
        "higher_is_better": hib,
        "value": float(kmetrics[key]),
        "metrics": verify._jsonable(kmetrics),
    }
    for f in st.files:
        _verify_one(st, f)


def _verify_one(st: _ConvertState, f: ExportedFile) -> Any:
    """Verify one file against Keras on the validation split; into checks and the report."""
    from . import verify

    rep, key = st.report, st.report["keras"]["metric_key"]
    kmetrics = rep["keras"]["metrics"]
    c = verify.verify_file(
        f.path, f.variant, st.spec, st.val, st.keras_raw, kmetrics, st.opt.latency_runs,
        progress=st.say,
    )  # fmt: skip
    st.checks.append(c)
    st.say(
        f"  {f.variant:10s} {key} {c.value:.4g} (Keras {c.keras_value:.4g}, "
        f"{100 * c.relative_drop:+.1f} %), {f.size_bytes / 1024:.0f} KiB, "
        f"{c.latency_ms['1_thread']:.2f} ms 1 thread"
    )
    rep["verification"] = [x.to_dict() for x in st.checks]
    return c


def _int8_precision_step(st: _ConvertState) -> None:
    """Always: int8's change against float, a loud warning past the target, and the
    selective variant (int8_mixed) when int8 misses it (convert/selective.py)."""
    from . import selective

    target = st.opt.max_drop if st.opt.max_drop is not None else selective.INT8_TARGET
    int8 = next((c for c in st.checks if c.variant == "int8"), None)
    wanted = [v for v in st.variants if v.selective]
    if int8 is None:
        if wanted:
            st.notes.append("int8_mixed not built: no verified int8 file (needs verification)")
        return
    drop, se = int8.relative_drop, int8.relative_drop_se
    line = (
        f"int8 vs the float model on {len(st.val.images)} validation images: "
        f"{int8.metric_key} {int8.value:.4g} vs {int8.keras_value:.4g} ({pct_se(drop, se)})"
    )
    st.report["int8_change"] = {"relative_drop": drop, "se": se, "target": target}
    if selective.within(drop, se, target):
        st.say(line + f"; within the {100 * target:g} % target")
        if wanted:
            st.notes.append(f"int8_mixed not built: int8 is within the {100 * target:g} % target")
        return
    if drop <= target:  # within on this split, but not by its standard error
        st.say(line + f"; within the {100 * target:g} % target, but not by one standard error")
        st.notes.append(
            f"int8 {pct_se(drop, se)} vs float: within the {100 * target:g} % target on this "
            "split, but not by one standard error; int8_mixed is built as the safer CPU file"
        )
    else:
        loud = f"WARNING: {line}: more than the {100 * target:g} % target"
        st.say("!" * 72 + "\n" + loud + "\n" + "!" * 72)
        st.notes.append(loud)
    for v in wanted:
        _build_selective(st, v, int8, target)


def _build_selective(st: _ConvertState, v: Variant, int8: Any, target: float) -> None:
    """Search the fewest float layers that bring int8 within ``target``; write and verify."""
    from . import selective

    say = st.say
    say(f"{v.name}: measuring per-layer int8 error (TFLite QuantizationDebugger)")
    try:
        dbg = selective.make_debugger(st.saved_model, st.ctx, st.calib_images)
        layers = selective.layer_errors(dbg)
        score = selective.scorer(st.spec, st.val, int8.keras_value, int8.higher_is_better,
                                 int8.metric_key, st.keras_raw)  # fmt: skip
        res = selective.search(dbg, layers, score, target, say)
    except Exception as e:  # the debugger raises many kinds; int8 itself stays valid
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        st.failures.append(f"variant {v.name}: selective quantization failed ({msg})")
        say(f"  FAILED: {msg}")
        return
    st.report["selective"] = res.to_dict()
    if res.model is None or res.chosen is None:
        st.notes.append(f"{v.name}: no candidate could be built")
        return
    _write_selective(st, v, res)


def _write_selective(st: _ConvertState, v: Variant, res: Any) -> None:
    """Embed the spec, write the file atomically, verify it, and say what it cost."""
    from . import selective

    ch = res.chosen
    extra = {"variant": v.name, "io": "float", "float_layers": ch.denylisted,
             "calibration_images": len(st.calib_images)}  # fmt: skip
    data = embed_spec(res.model, st.spec.with_extra(export=extra))
    path = atomic_write_bytes(st.export_dir / v.filename, data)
    f = ExportedFile(v.name, path, len(data), "float", io_quantization(data))
    st.files.append(f)
    st.report["files"].append(
        {
            "variant": v.name, "file": path.name, "size_bytes": len(data), "io": "float",
            "quantization": f.quantization, "backends": list(v.backends),
            "edgetpu_eligible": False, "float_layers": ch.denylisted,
        }
    )  # fmt: skip
    c = _verify_one(st, f)
    int8 = next(x for x in st.checks if x.variant == "int8")
    se = c.relative_drop_se
    within = "within" if selective.within(c.relative_drop, se, res.target) else "STILL NOT within"
    st.notes.append(
        f"{v.name}: {len(ch.denylisted)} layer(s) kept in float ({ch.order} order: "
        f"{', '.join(selective.short_name(n) for n in ch.denylisted)}): {c.metric_key} {pct_se(c.relative_drop, se)} vs float "
        f"({within} the {100 * res.target:g} % target by one standard error; int8 "
        f"{pct_se(int8.relative_drop, int8.relative_drop_se)}); "
        f"cost vs int8: {f.size_bytes / 1024:.0f} vs "
        f"{next(x.size_bytes for x in st.files if x.variant == 'int8') / 1024:.0f} KiB, "
        f"{c.latency_ms['1_thread']:.2f} vs {int8.latency_ms['1_thread']:.2f} ms (1 thread). "
        "The Edge TPU keeps the fully-integer int8 file."
    )


def _quality_gate(st: _ConvertState) -> None:
    """With ``--max-drop``: record pass/fail in the report; the error is raised at the end."""
    max_drop = st.opt.max_drop
    if max_drop is None:
        return
    if not st.checks:
        st.notes.append("--max-drop was not checked: verification did not run")
        return
    from . import verify

    try:
        verify.check_gate(st.checks, max_drop)
        st.report["gate"] = {"max_drop": max_drop, "result": "passed"}
    except Exception as e:
        st.report["gate"] = {"max_drop": max_drop, "result": f"FAILED: {e}"}
        st.gate_error = e


def _write_report_and_finish(st: _ConvertState) -> dict[str, Any]:
    """Write report.json/.md; then a failed variant, then a failed gate, is the error."""
    from . import report

    report.write_report(st.export_dir, st.report)
    st.say(f"wrote {st.export_dir / 'report.md'}")
    if st.failures:
        raise ModelFileError(
            "; ".join(st.failures) + f" (the other variants are in {st.export_dir})"
        )
    if st.gate_error is not None:
        raise st.gate_error
    return st.report
