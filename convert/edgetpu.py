"""Edge TPU: analyse an int8 ``.tflite`` as the compiler would, then run ``edgetpu_compiler``.

The analysis reads the real flatbuffer (TFLite schema object API): every activation and
weight tensor must be int8/uint8 (int32 only for biases and shape constants), shapes must be
static, and ops must be on the Edge TPU's supported list. The compiler maps ops to the TPU
in execution order until the first one it cannot map; that op and EVERYTHING AFTER IT run on
the CPU. :func:`analyse` reports that first op with a suggestion.

The supported list below is Coral's table "TensorFlow models on the Edge TPU"
(coral.ai/docs/edgetpu/models-intro, "Supported operations"), with its notes; a number is
the minimum Edge TPU runtime version the op needs when it is newer than the base set.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.atomic import atomic_write_bytes, atomic_write_text
from edge_runtime.errors import BackendError, ModelFileError
from edge_runtime.metadata import (
    append_associated_files,
    associated_files,
    embed_spec,
    read_metadata,
    spec_from_model_bytes,
)

#: TFLite builtin op name -> Coral's documented limitation ("" = none documented).
SUPPORTED_OPS: dict[str, str] = {
    "ADD": "",
    "AVERAGE_POOL_2D": "no fused activation function",
    "CONCATENATION": "no fused activation; a constant input must be all zeros with 2 inputs",
    "CONV_2D": "same dilation in x and y",
    "DEPTHWISE_CONV_2D": "dilated kernels need runtime 14",
    "EXPAND_DIMS": "runtime 13",
    "FULLY_CONNECTED": "default weights format only; output one-dimensional",
    "L2_NORMALIZATION": "",
    "LOGISTIC": "",
    "LSTM": "unidirectional only; runtime 14",
    "MAXIMUM": "",
    "MAX_POOL_2D": "no fused activation function",
    "MEAN": "reduction along x and/or y only (not batch or channels)",
    "MINIMUM": "",
    "MUL": "",
    "PACK": "not along the batch dimension; runtime 13",
    "PAD": "padding along x and/or y only",
    "PRELU": "alpha must be constant; runtime 13",
    "QUANTIZE": "runtime 13",
    "REDUCE_MAX": "runtime 14",
    "REDUCE_MIN": "runtime 14",
    "RELU": "",
    "RELU6": "",
    "RELU_N1_TO_1": "",
    "RESHAPE": "some reshapes of large tensors stay on the CPU",
    "RESIZE_BILINEAR": "3-D input/output; may stay on the CPU to keep precision",
    "RESIZE_NEAREST_NEIGHBOR": "3-D input/output; may stay on the CPU to keep precision",
    "RSQRT": "runtime 14",
    "SLICE": "",
    "SOFTMAX": "1-D input with at most 16,000 elements",
    "SPACE_TO_DEPTH": "",
    "SPLIT": "not along the batch dimension",
    "SQUARED_DIFFERENCE": "runtime 14",
    "SQUEEZE": "runtime 13",
    "STRIDED_SLICE": "",
    "SUB": "",
    "SUM": "runtime 14",
    "TANH": "",
    "TRANSPOSE": "runtime 14",
}

#: What to do when this op is the first to fall back to the CPU.
SUGGESTIONS: dict[str, str] = {
    "HARD_SWISH": "hard-swish is not an Edge TPU op: train with a minimalistic MobileNetV3 "
    "(--backbone mobilenetv3small/large with minimalistic=True) or MobileNetV2",
    "DEQUANTIZE": "a float op remains: convert with full int8 (--variants int8) and --io uint8",
    "QUANTIZE": "float input: convert with --io uint8 (or int8) so the camera bytes go straight in",
    "GELU": "use ReLU/ReLU6 activations",
    "BATCH_MATMUL": "use Dense/Conv layers (attention blocks do not map)",
}

#: Tensor types allowed for activations / weights; int32 also for biases and shape constants.
_INT_TYPES = {"INT8", "UINT8"}
_INSTALL = (
    "edgetpu_compiler is not on PATH. It runs on x86-64 Linux only: add Coral's apt "
    "repository (deb https://packages.cloud.google.com/apt coral-edgetpu-stable main, key "
    "https://packages.cloud.google.com/apt/doc/apt-key.gpg), then `sudo apt-get install "
    "edgetpu-compiler` (see https://coral.ai/docs/edgetpu/compiler/), or use Coral's Colab "
    "compiler; then rerun `edgereg convert RUN --edgetpu`. The Edge TPU analysis is still written to the report."
)


@dataclass
class OpInfo:
    index: int
    name: str
    supported: bool
    note: str = ""


@dataclass
class EdgeTpuAnalysis:
    """What the Edge TPU compiler would make of a model, before running it."""

    ops: list[OpInfo]
    #: Non-integer tensors: (name, type).
    float_tensors: list[tuple[str, str]] = field(default_factory=list)
    #: Tensors whose shape_signature has -1 (dynamic).
    dynamic_tensors: list[str] = field(default_factory=list)
    #: Ops not on the supported list (in execution order, deduplicated).
    unsupported_ops: list[str] = field(default_factory=list)
    #: The first op that would run on the CPU (everything after it does too); None if none.
    first_cpu_op: OpInfo | None = None
    ops_on_tpu: int = 0
    ops_on_cpu: int = 0
    suggestions: list[str] = field(default_factory=list)
    #: Cheap float<->int8 conversions at the model's edges (run on the CPU; not blocking).
    boundary_ops: list[str] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return not self.float_tensors and not self.dynamic_tensors and self.first_cpu_op is None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["compatible"] = self.compatible
        d["ops"] = [f"{o.name}" for o in self.ops]
        return d

    def summary(self) -> str:
        if self.compatible:
            extra = f" (plus CPU boundary ops: {', '.join(self.boundary_ops)})" * bool(
                self.boundary_ops
            )
            return f"Edge TPU: all {self.ops_on_tpu} ops can map to the TPU{extra}"
        parts = []
        if self.first_cpu_op is not None:
            o = self.first_cpu_op
            parts.append(
                f"first CPU op is #{o.index} {o.name}; it and the {self.ops_on_cpu - 1} ops "
                f"after it run on the CPU ({self.ops_on_tpu} on the TPU)"
            )
        if self.float_tensors:
            names = ", ".join(f"{n} ({t})" for n, t in self.float_tensors[:5])
            more = f" and {len(self.float_tensors) - 5} more" if len(self.float_tensors) > 5 else ""
            parts.append(f"{len(self.float_tensors)} non-integer tensors: {names}{more}")
        if self.dynamic_tensors:
            parts.append(f"dynamic shapes: {', '.join(self.dynamic_tensors[:5])}")
        return "Edge TPU: " + "; ".join(parts)


def _schema():
    try:
        import ai_edge_litert.schema_py_generated as schema
    except ImportError:  # pragma: no cover - the workstation has one of the two
        import tensorflow.lite.python.schema_py_generated as schema  # type: ignore
    return schema


def _enum_names(enum_cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _lst(v: Any) -> list[Any]:
    return [] if v is None else list(v)


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else (v or "")


@dataclass
class _Graph:
    """The parts of a parsed ``.tflite`` that the analysis reads: its first subgraph."""

    model: Any
    subgraph: Any
    tensors: list[Any]
    buffers: list[Any]
    inputs: set[int]
    outputs: set[int]
    op_names: dict[int, str]
    type_names: dict[int, str]

    def type_of(self, t: int) -> str:
        return self.type_names.get(self.tensors[t].type, "?")

    def is_const(self, t: Any) -> bool:
        b = self.buffers[t.buffer] if 0 <= t.buffer < len(self.buffers) else None
        return b is not None and (b.data is not None and len(b.data) > 0 or (b.size or 0) > 0)


def analyse(tflite: bytes, where: str = "model") -> EdgeTpuAnalysis:
    """Analyse a ``.tflite`` flatbuffer for the Edge TPU (no compiler needed)."""
    g = _read_graph(tflite, where)
    ops, bias_like, boundary = _map_ops(g)
    float_tensors, dynamic = _odd_tensors(g, bias_like, boundary)
    return _placement(ops, float_tensors, dynamic, boundary)


def _read_graph(tflite: bytes, where: str) -> _Graph:
    """Step 1 of analyse: parse the flatbuffer (a clear error on garbage), first subgraph."""
    read_metadata(tflite, where)  # clear ModelFileError on garbage before the schema parser
    _verify_flatbuffer(tflite, where)
    schema = _schema()
    try:
        m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tflite, 0))
    except Exception as e:
        raise ModelFileError(f"{where}: not a valid TFLite flatbuffer ({e})") from None
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    if not m.subgraphs:
        raise ModelFileError(f"{where}: the model has no subgraph")
    sg = m.subgraphs[0]
    return _Graph(
        model=m,
        subgraph=sg,
        tensors=sg.tensors or [],
        buffers=m.buffers or [],
        inputs={int(t) for t in _lst(sg.inputs)},
        outputs={int(t) for t in _lst(sg.outputs)},
        op_names=op_names,
        type_names=type_names,
    )


def _map_ops(g: _Graph) -> tuple[list[OpInfo], set[int], list[str]]:
    """Step 2 of analyse: each op in execution order, and whether the TPU can run it.

    Returns the ops, the tensors that may be int32 (biases, shape operands) and the float
    boundary ops at the graph's edges."""
    ops: list[OpInfo] = []
    bias_like: set[int] = set()
    boundary: list[str] = []
    for i, op in enumerate(g.subgraph.operators or []):
        code = g.model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = g.op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{_s(code.customCode)}"
        ins = [int(t) for t in _lst(op.inputs) if t >= 0]
        outs = [int(t) for t in _lst(op.outputs) if t >= 0]
        # Biases (3rd input of conv/FC) and shape operands are legitimately int32.
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
            bias_like.update(ins[2:])
        if name in ("RESHAPE", "MEAN", "SUM", "PAD", "STRIDED_SLICE", "SLICE", "REDUCE_MAX"):
            bias_like.update(ins[1:])
        is_boundary = _is_float_boundary(g, name, ins, outs)
        if is_boundary:
            boundary.append(f"#{i} {name}")
        supported = name in SUPPORTED_OPS
        # An op computing in float is not mapped even if its kind is supported.
        if supported and not is_boundary:
            supported = _all_integer(g, ins + outs, bias_like)
        ops.append(
            OpInfo(i, name, supported or is_boundary, SUPPORTED_OPS.get(name, "not supported"))
        )
    return ops, bias_like, boundary


def _is_float_boundary(g: _Graph, name: str, ins: list[int], outs: list[int]) -> bool:
    """A QUANTIZE of a float graph input or a DEQUANTIZE to a float graph output."""
    return bool(
        (name == "QUANTIZE" and ins and ins[0] in g.inputs and g.type_of(ins[0]) == "FLOAT32")
        or (
            name == "DEQUANTIZE"
            and outs
            and outs[0] in g.outputs
            and g.type_of(outs[0]) == "FLOAT32"
        )
    )


def _all_integer(g: _Graph, tensors: list[int], bias_like: set[int]) -> bool:
    """Every tensor is int8/uint8 (int32 only for a bias or shape operand)."""
    for t in tensors:
        tt = g.type_of(t)
        if tt not in _INT_TYPES and not (tt == "INT32" and t in bias_like):
            return False
    return True


def _odd_tensors(
    g: _Graph, bias_like: set[int], boundary: list[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """Step 3 of analyse: the non-integer tensors (name, type) and the dynamic-shape ones."""
    float_tensors: list[tuple[str, str]] = []
    dynamic: list[str] = []
    boundary_tensors = {t for t in g.inputs | g.outputs} if boundary else set()
    for ti, t in enumerate(g.tensors):
        tt = g.type_names.get(t.type, "?")
        tname = _s(t.name) or f"tensor{ti}"
        if tt not in _INT_TYPES and not (tt == "INT32" and (ti in bias_like or g.is_const(t))):
            if ti not in boundary_tensors:
                float_tensors.append((tname, tt))
        sig = t.shapeSignature
        if sig is not None and any(int(d) < 0 for d in sig):
            dynamic.append(tname)
    return float_tensors, dynamic


def _placement(
    ops: list[OpInfo],
    float_tensors: list[tuple[str, str]],
    dynamic: list[str],
    boundary: list[str],
) -> EdgeTpuAnalysis:
    """Step 4 of analyse: the TPU runs the ops up to the first unsupported one, the CPU the
    rest (boundary ops not counted); with the suggestions that follow."""
    first = next((o for o in ops if not o.supported), None)
    n_tpu = first.index if first is not None else len(ops)
    n_tpu -= sum(1 for o in ops[:n_tpu] if f"#{o.index} {o.name}" in boundary)
    result = EdgeTpuAnalysis(
        ops=ops,
        float_tensors=float_tensors,
        dynamic_tensors=dynamic,
        unsupported_ops=list(dict.fromkeys(o.name for o in ops if not o.supported)),
        first_cpu_op=first,
        ops_on_tpu=max(n_tpu, 0),
        ops_on_cpu=(len(ops) - first.index) if first is not None else 0,
        boundary_ops=boundary,
    )
    result.suggestions = _suggest(result)
    return result


def _verify_flatbuffer(tflite: bytes, where: str) -> None:
    """The interpreter's own flatbuffer verifier: truncated or corrupt files are refused."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover
        return
    try:
        Interpreter(model_content=bytes(tflite))
    except (ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(
            f"{where}: not a valid TFLite model (truncated or corrupt: {first}); "
            "convert it again with `edgereg convert`"
        ) from None


def _suggest(a: EdgeTpuAnalysis) -> list[str]:
    out: list[str] = []
    if a.first_cpu_op is not None:
        name = a.first_cpu_op.name
        out.append(
            SUGGESTIONS.get(
                name,
                f"{name} is not on the Edge TPU's supported list: replace the layer that makes it"
                if name not in SUPPORTED_OPS
                else f"{name} computes in float here: convert with full int8",
            )
        )
    if a.float_tensors:
        out.append(
            "float tensors remain: use the full-integer variant (--variants int8 --io uint8); "
            "fp32/fp16/dynamic/int16x8 files cannot run on the Edge TPU"
        )
    if a.dynamic_tensors:
        out.append("dynamic shapes: export with a static batch of 1 (edgereg convert does)")
    if a.boundary_ops and not out:
        out.append("float input/output at the edges runs on the CPU: --io uint8 removes it")
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- compiler
@dataclass
class CompileResult:
    ran: bool
    message: str
    output: Path | None = None
    log_path: Path | None = None
    args: list[str] = field(default_factory=list)
    log: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("output", "log_path"):
            d[k] = str(d[k]) if d[k] is not None else None
        return d


_SIZE_LINES = {
    "on_chip_memory_used": r"On-chip memory used for caching model parameters:\s*(\S+)",
    "on_chip_memory_remaining": r"On-chip memory remaining for caching model parameters:\s*(\S+)",
    "off_chip_memory_used": r"Off-chip memory used for streaming uncached model parameters:\s*(\S+)",
}
_INT_LINES = {
    "edgetpu_subgraphs": r"Number of Edge TPU subgraphs:\s*(\d+)",
    "total_ops": r"Total number of operations:\s*(\d+)",
    "ops_on_tpu": r"Number of operations that will run on Edge TPU:\s*(\d+)",
    "ops_on_cpu": r"Number of operations that will run on CPU:\s*(\d+)",
}
_ROW = re.compile(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")


def parse_compiler_log(text: str) -> dict[str, Any]:
    """The compiler's stdout/log -> version, memory figures, op counts and the op table."""
    out: dict[str, Any] = {}
    if m := re.search(r"Edge TPU Compiler version\s*(\S+)", text):
        out["compiler_version"] = m.group(1)
    for key, pat in _SIZE_LINES.items():
        if m := re.search(pat, text):
            out[key] = m.group(1)
            out[key + "_bytes"] = _to_bytes(m.group(1))
    for key, pat in _INT_LINES.items():
        if m := re.search(pat, text):
            out[key] = int(m.group(1))
    rows: list[dict[str, Any]] = []
    in_table = False
    for line in text.splitlines():
        if re.match(r"^\s*Operator\s+Count\s+Status\s*$", line):
            in_table = True
            continue
        if in_table and (m := _ROW.match(line.strip())):
            rows.append(
                {
                    "operator": m.group(1),
                    "count": int(m.group(2)),
                    "status": m.group(3),
                    "on_tpu": m.group(3).startswith("Mapped to Edge TPU"),
                }
            )
    if rows:
        out["operations"] = rows
        tpu = sum(r["count"] for r in rows if r["on_tpu"])
        out.setdefault("ops_on_tpu", tpu)
        out.setdefault("ops_on_cpu", sum(r["count"] for r in rows) - tpu)
    elif "total_ops" in out and "ops_on_cpu" not in out and "compiled successfully" in text:
        out.setdefault("ops_on_tpu", out["total_ops"])
        out.setdefault("ops_on_cpu", 0)
    return out


def _to_bytes(text: str) -> int | None:
    m = re.match(r"^([\d.]+)\s*(B|KiB|MiB|GiB)$", text)
    if not m:
        return None
    mult = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}[m.group(2)]
    return int(round(float(m.group(1)) * mult))


def compiler_path() -> str | None:
    return shutil.which("edgetpu_compiler")


def compile_model(
    int8_path: str | Path, out_dir: str | Path, timeout: float = 600
) -> CompileResult:
    """Run ``edgetpu_compiler`` on an int8 file (argument list, never a shell string).

    Writes ``<stem>_edgetpu.tflite`` (spec embedded) and its ``.log`` into ``out_dir``
    atomically. When the compiler is missing, returns ``ran=False`` with install advice.
    """
    src = Path(int8_path)
    exe = compiler_path()
    if exe is None:
        machine = platform.machine()
        msg = _INSTALL
        if machine not in ("x86_64", "AMD64"):
            msg = f"this machine is {machine}; " + msg
        return CompileResult(ran=False, message=msg)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="edgetpu_") as tmp:
        args = [exe, "--out_dir", tmp, "--show_operations", str(src)]
        try:
            proc = subprocess.run(
                args, capture_output=True, text=True, timeout=timeout, check=False, shell=False
            )
        except subprocess.TimeoutExpired:
            raise BackendError(
                f"edgetpu_compiler: no result after {timeout:.0f} s on {src}"
            ) from None
        except OSError as e:
            raise BackendError(f"edgetpu_compiler: cannot run ({e})") from None
        text = proc.stdout + ("\n" + proc.stderr if proc.stderr else "")
        produced = Path(tmp) / f"{src.stem}_edgetpu.tflite"
        log_file = Path(tmp) / f"{src.stem}_edgetpu.log"
        full_log = text + (
            "\n" + log_file.read_text(errors="replace") if log_file.is_file() else ""
        )
        parsed = parse_compiler_log(full_log)
        if proc.returncode != 0 or not produced.is_file():
            tail = " ".join(text.strip().splitlines()[-3:])
            raise BackendError(
                f"edgetpu_compiler failed on {src} (exit {proc.returncode}): {tail or 'no output'}"
            )
        data = produced.read_bytes()
    final = out_dir / f"{src.stem}_edgetpu.tflite"
    try:
        source = src.read_bytes()
        if spec_from_model_bytes(data, str(final)) is None:
            spec = spec_from_model_bytes(source, str(src))
            if spec is not None:
                data = embed_spec(data, spec.with_extra(edgetpu=True))
        # the standard metadata's files (labels.txt) follow the model, if the compiler
        # kept its metadata but not the archive after it
        if not associated_files(data):
            data = append_associated_files(data, associated_files(source))
    except ModelFileError as e:
        raise BackendError(f"edgetpu_compiler wrote an unreadable model: {e}") from None
    atomic_write_bytes(final, data)
    log_path = atomic_write_text(out_dir / f"{src.stem}_edgetpu.log", full_log)
    return CompileResult(
        ran=True,
        message=f"compiled {final.name}: {parsed.get('ops_on_tpu', '?')} ops on the TPU, "
        f"{parsed.get('ops_on_cpu', '?')} on the CPU",
        output=final,
        log_path=log_path,
        args=[str(a) for a in args],
        log=parsed,
    )
