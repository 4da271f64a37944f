"""The TFLite interpreter backend, chosen at run time, plus pycoral-style tensor helpers.

Backends, in the order ``backend="auto"`` tries them:

- ``litert``: ``ai_edge_litert.interpreter`` (the maintained successor of tflite-runtime);
- ``tflite_runtime``: ``tflite_runtime.interpreter`` (stopped at 2.14; refuses models that
  need a newer runtime, with a clear message);
- ``tensorflow``: ``tensorflow.lite`` (imported only when chosen: it is 1.7 GB and slow).

All three share one ``Interpreter`` API. An Edge TPU is used through the
``libedgetpu.so.1`` delegate with device strings ``usb``, ``usb:N``, ``pci``, ``pci:N``.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import flatbuffer as fb
from .errors import BackendError, ModelFileError
from .log import quiet_native
from .metadata import read_metadata

#: name -> module holding ``Interpreter`` and ``load_delegate``
BACKEND_MODULES = {
    "litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow.lite",
}
#: ``backend=`` / ``--backend`` choices: ``auto`` (the first importable), then each backend.
BACKENDS = ("auto", *BACKEND_MODULES)
BACKEND_ALIASES = {"ai_edge_litert": "litert", "tflite": "tflite_runtime", "tf": "tensorflow"}
BACKEND_INSTALL = {
    "litert": "pip install ai-edge-litert",
    "tflite_runtime": "pip install tflite-runtime (Python <= 3.11, numpy < 2)",
    "tensorflow": "pip install tensorflow-cpu",
}
EDGETPU_LIBRARY = "libedgetpu.so.1"
EDGETPU_INSTALL = (
    "install the Edge TPU runtime: add the Coral apt repository "
    "(https://coral.ai/docs/accelerator/get-started/) and `sudo apt-get install "
    "libedgetpu1-std` (USB), or the gasket-dkms driver plus libedgetpu1-std (PCIe)"
)
_DEVICE_RE = re.compile(r"^(usb|pci)(?::(\d+))?$")


@dataclass(frozen=True)
class Backend:
    """An importable interpreter backend."""

    name: str
    module: Any
    version: str

    @property
    def Interpreter(self) -> Any:  # noqa: N802 - mirrors the backend's class name
        return self.module.Interpreter

    def load_delegate(self, library: str, options: dict[str, str] | None = None) -> Any:
        load = getattr(self.module, "load_delegate", None)
        if load is None:  # tensorflow.lite keeps it under experimental
            load = self.module.experimental.load_delegate
        return load(library, options or {})


def _import_backend(name: str) -> Backend:
    if name == "tensorflow":
        tf = importlib.import_module("tensorflow")  # only when this backend was chosen

        return Backend(name, tf.lite, tf.__version__)
    modname = BACKEND_MODULES[name]
    module = importlib.import_module(modname)
    dist = {"litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}[name]
    try:
        from importlib.metadata import version

        ver = version(dist)
    except Exception:
        ver = str(getattr(importlib.import_module(modname.split(".")[0]), "__version__", "0"))
    return Backend(name, module, ver)


def load_backend(name: str = "auto") -> Backend:
    """The interpreter backend ``name`` (or the first available one for ``auto``)."""
    name = BACKEND_ALIASES.get(name, name)
    if name == "auto":
        for candidate in BACKEND_MODULES:
            try:
                return _import_backend(candidate)
            except ImportError:
                continue
        raise BackendError(
            "no TFLite interpreter found: install ai-edge-litert (`pip install ai-edge-litert`), "
            "or tflite-runtime, or tensorflow"
        )
    if name not in BACKEND_MODULES:
        raise BackendError(f"backend: {name!r} is not one of {', '.join(BACKENDS)}")
    try:
        return _import_backend(name)
    except ImportError as e:
        raise BackendError(
            f"backend {name!r} is not installed ({e}); install it with `{BACKEND_INSTALL[name]}` "
            "or use --backend auto"
        ) from None


def parse_device(device: str | None) -> str | None:
    """``cpu`` -> None; ``usb``, ``usb:0``, ``pci``, ``pci:1`` -> the Edge TPU device string."""
    d = (device or "cpu").strip().lower()
    if d == "cpu":
        return None
    if d in ("edgetpu", "tpu"):
        return "usb"
    if not _DEVICE_RE.match(d):
        raise BackendError(
            f"device: {device!r} is not one of cpu, usb, usb:N, pci, pci:N (an Edge TPU)"
        )
    return d


def edgetpu_delegate(backend: Backend, device: str) -> Any:
    """The Edge TPU delegate for ``device``, or a BackendError saying what to install."""
    import ctypes

    try:
        # Probe the library first: a failed load_delegate leaves a half-built Delegate behind.
        ctypes.CDLL(EDGETPU_LIBRARY)
        return backend.load_delegate(EDGETPU_LIBRARY, {"device": device})
    except (ValueError, OSError, RuntimeError) as e:
        raise BackendError(
            f"device {device!r}: cannot load the Edge TPU delegate {EDGETPU_LIBRARY} ({e}); "
            f"{EDGETPU_INSTALL}; and check the Coral is plugged in (`lsusb` shows 'Google' or "
            "'Global Unichip', `ls /dev/apex_0` for PCIe). Or run on the CPU with --device cpu."
        ) from None


def _version_tuple(v: str) -> tuple[int, ...]:
    parts = []
    for p in re.split(r"[.\-+]", v.strip("\x00 ").strip()):
        m = re.match(r"\d+", p)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def model_min_runtime(model: bytes, where: str = "model") -> str | None:
    """The model's ``min_runtime_version`` metadata (e.g. ``"1.14.0"``), or None."""
    raw = read_metadata(model, where).get("min_runtime_version")
    if not raw:
        return None
    text = raw.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
    return text or None


def check_runtime_version(model: bytes, backend: Backend, where: str = "model") -> None:
    """Refuse a model whose minimum runtime version is newer than ``backend`` (tflite-runtime)."""
    if backend.name != "tflite_runtime":
        return
    need = model_min_runtime(model, where)
    if need and _version_tuple(need) > _version_tuple(backend.version):
        raise BackendError(
            f"{where}: needs TFLite runtime {need} but tflite-runtime {backend.version} is "
            "installed; install ai-edge-litert (`pip install ai-edge-litert`) or re-convert "
            "the model as full int8 (`edgereg convert --int8`)"
        )


#: bytes per element of TFLite tensor types whose constant buffers can be size-checked
_ITEMSIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 12: 8, 15: 4, 16: 2, 18: 2}
#: No edgereg model comes near this many elements in one tensor.
MAX_TENSOR_ELEMENTS = 1 << 28
#: zero-point ranges of quantized tensor types (uint8, int8, int16, int32, int64)
_ZP_RANGE = {3: (0, 255), 9: (-128, 127), 7: (-32768, 32767), 2: (-(2**31), 2**31 - 1)}
_ZP_RANGE[4] = _ZP_RANGE[2]
#: BuiltinOperator -> the BuiltinOptions type it reads, where the schema's names pair up
#: (FULLY_CONNECTED -> FullyConnectedOptions); generated from the TFLite schema. Ops not
#: listed are not checked.
_EXPECTED_OPTIONS = {
    0: 11,
    2: 10,
    3: 1,
    4: 2,
    5: 94,
    6: 38,
    9: 8,
    13: 13,
    18: 21,
    22: 17,
    23: 15,
    25: 9,
    26: 19,
    29: 3,
    30: 18,
    31: 16,
    33: 20,
    34: 22,
    36: 23,
    39: 26,
    41: 28,
    42: 29,
    43: 30,
    45: 32,
    47: 33,
    49: 35,
    50: 36,
    53: 37,
    56: 40,
    58: 41,
    59: 42,
    61: 44,
    62: 45,
    63: 46,
    64: 47,
    65: 48,
    67: 49,
    68: 50,
    69: 51,
    70: 52,
    71: 53,
    72: 54,
    77: 55,
    78: 56,
    79: 57,
    80: 58,
    83: 59,
    84: 60,
    85: 61,
    86: 62,
    87: 63,
    88: 64,
    90: 65,
    92: 66,
    93: 67,
    94: 68,
    95: 72,
    96: 73,
    97: 74,
    98: 75,
    99: 76,
    100: 77,
    101: 78,
    102: 79,
    103: 80,
    105: 81,
    106: 82,
    107: 83,
    108: 84,
    109: 85,
    110: 86,
    112: 87,
    113: 88,
    114: 89,
    115: 90,
    117: 91,
    118: 92,
    119: 93,
    120: 95,
    121: 96,
    122: 97,
    123: 98,
    124: 99,
    125: 100,
    128: 102,
    129: 103,
    130: 104,
    132: 106,
    136: 107,
    137: 108,
    138: 109,
    139: 110,
    142: 111,
    143: 112,
    144: 113,
    147: 115,
    150: 116,
    151: 117,
    153: 118,
    154: 119,
    155: 121,
    157: 120,
    158: 123,
    159: 124,
    160: 125,
    161: 126,
}


def check_model_structure(model: bytes, where: str = "model") -> None:
    """Bounds-check what the TFLite verifier leaves to the runtime, before tensors are allocated.

    The flatbuffer verifier checks offsets, not meaning: an operator naming tensor 23563 of 13,
    a zero point of 5898240 on a uint8 tensor, options of another operator type or a shape of
    2**40 elements pass it and then crash ``allocate_tensors()`` with SIGSEGV (seen with
    bit-flipped files). Raises ModelFileError naming the file instead.
    """
    try:
        _check_structure(fb.FlatbufferReader(model, where), where)
    except ModelFileError:
        raise
    except Exception as e:  # any decoding failure of a corrupt file
        raise ModelFileError(f"{where}: corrupt TFLite model ({type(e).__name__}: {e})") from None


#: an operator's tensor-index lists, checked like the subgraph's inputs and outputs
_OPERATOR_TENSOR_LISTS = (
    ("input", fb.OPERATOR_INPUTS),
    ("output", fb.OPERATOR_OUTPUTS),
    ("intermediate", fb.OPERATOR_INTERMEDIATES),
)


def _check_structure(m: fb.FlatbufferReader, where: str) -> None:
    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{where}: corrupt TFLite model ({what}); re-export or re-copy it")

    root = m.root()
    version = m.scalar(root, fb.MODEL_VERSION, "<I", 0)
    if version != 3:
        raise bad(f"schema version {version}, TFLite files have 3")
    codes = []
    for c, oc in enumerate(m.tables(root, fb.MODEL_OPERATOR_CODES)):
        ver = m.scalar(oc, fb.OPERATOR_CODE_VERSION, "<i", 1)
        if not 1 <= ver <= 1000:
            raise bad(f"operator code {c} has version {ver}")
        deprecated = m.scalar(oc, fb.OPERATOR_CODE_DEPRECATED_BUILTIN, "<b", 0)
        codes.append(max(deprecated, m.scalar(oc, fb.OPERATOR_CODE_BUILTIN, "<i", 0)))
    buffers = m.tables(root, fb.MODEL_BUFFERS)
    subgraphs = m.tables(root, fb.MODEL_SUBGRAPHS)
    if not subgraphs:
        raise bad("no subgraph")
    for sg in subgraphs:
        tensors = m.tables(sg, fb.SUBGRAPH_TENSORS)
        n_t = len(tensors)
        for t, ten in enumerate(tensors):
            _check_tensor(m, ten, t, buffers, bad)
        for io, idx in (("input", fb.SUBGRAPH_INPUTS), ("output", fb.SUBGRAPH_OUTPUTS)):
            for i, v in enumerate(m.array(sg, idx, "<i4")):
                if not 0 <= v < n_t:
                    raise bad(f"subgraph {io} {i} names tensor {v} of {n_t}")
        for o, op in enumerate(m.tables(sg, fb.SUBGRAPH_OPERATORS)):
            code_index = m.scalar(op, fb.OPERATOR_OPCODE_INDEX, "<I", 0)
            if code_index >= len(codes):
                raise bad(f"operator {o} uses opcode {code_index} of {len(codes)}")
            want = _EXPECTED_OPTIONS.get(codes[code_index])
            got = m.scalar(op, fb.OPERATOR_OPTIONS_TYPE, "<B", 0)
            if want is not None and got not in (0, want):
                raise bad(f"operator {o} carries options of another operator type")
            for kind, idx in _OPERATOR_TENSOR_LISTS:
                for i, v in enumerate(m.array(op, idx, "<i4")):
                    if not -1 <= v < n_t:
                        raise bad(f"operator {o} {kind} {i} names tensor {v} of {n_t}")


def _check_tensor(m: fb.FlatbufferReader, ten: int, t: int, buffers: list[int], bad: Any) -> None:
    buffer = m.scalar(ten, fb.TENSOR_BUFFER, "<I", 0)
    if buffer >= max(len(buffers), 1):
        raise bad(f"tensor {t} uses buffer {buffer} of {len(buffers)}")
    shape = [int(d) for d in m.array(ten, fb.TENSOR_SHAPE, "<i4")]
    if any(d < 0 for d in shape):
        raise bad(f"tensor {t} has a negative dimension {shape}")
    n = 1
    for d in shape:
        n *= d
    if n > MAX_TENSOR_ELEMENTS:
        raise bad(f"tensor {t} has {n} elements")
    ttype = m.scalar(ten, fb.TENSOR_TYPE, "<b", 0)
    size = _ITEMSIZE.get(ttype)
    if size is not None and 0 < buffer < len(buffers):
        data_len = m.vector_length(buffers[buffer], fb.BUFFER_DATA)
        if data_len and data_len != n * size:
            raise bad(f"tensor {t} holds {data_len} bytes, its shape {shape} needs {n * size}")
    q = m.table(ten, fb.TENSOR_QUANTIZATION)
    if q is None:
        return
    scales, zps = m.array(q, fb.QUANT_SCALE, "<f4"), m.array(q, fb.QUANT_ZERO_POINT, "<i8")
    if len(zps) and len(scales) != len(zps):
        raise bad(f"tensor {t} has {len(scales)} scales and {len(zps)} zero points")
    if len(scales) and (not np.all(np.isfinite(scales)) or np.any(scales < 0)):
        raise bad(f"tensor {t} has a scale that is negative or not finite")
    if len(zps):
        lo, hi = _ZP_RANGE.get(ttype, (0, 0))
        if int(zps.min()) < lo or int(zps.max()) > hi:
            raise bad(f"tensor {t} has a zero point outside [{lo}, {hi}] for its type")
    qdim = m.scalar(q, fb.QUANT_DIMENSION, "<i", 0)
    if len(scales) > 1 and not 0 <= qdim < max(len(shape), 1):
        raise bad(f"tensor {t} is quantized along dimension {qdim} of {len(shape)}")


def make_interpreter(
    model: bytes,
    *,
    where: str = "model",
    backend: str | Backend = "auto",
    num_threads: int | None = None,
    device: str | None = "cpu",
) -> tuple[Any, Backend]:
    """An allocated interpreter for ``model`` bytes and the backend it runs on."""
    be = backend if isinstance(backend, Backend) else load_backend(backend)
    check_runtime_version(model, be, where)
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise BackendError(f"num_threads: must be a positive integer, got {num_threads!r}")
    threads = num_threads or os.cpu_count() or 1
    dev = parse_device(device)
    check_model_structure(model, where)  # before any native code reads the file
    delegates = [edgetpu_delegate(be, dev)] if dev else None
    try:
        with warnings.catch_warnings():
            # tf.lite.Interpreter warns it is deprecated: the user forced it, we said so.
            warnings.simplefilter("ignore", UserWarning)
            interp = be.Interpreter(
                model_content=model, num_threads=threads, experimental_delegates=delegates
            )
        with quiet_native():  # LiteRT's "INFO: Created ... XNNPACK delegate" (shown with -v)
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        msg = str(e).strip().splitlines()
        detail = " ".join(m.strip() for m in msg if m.strip())[:400]
        if "edgetpu-custom-op" in detail:
            raise BackendError(
                f"{where}: this model was compiled for the Edge TPU; run it with --device usb "
                "(or pci), or use the CPU .tflite made next to it by `edgereg convert`"
            ) from None
        ver = re.search(r"version '(-?\d+)'", detail)
        absurd = ver is not None and not 1 <= int(ver.group(1)) <= 1000
        if ("Didn't find op" in detail or "op for builtin" in detail) and not absurd:
            advice = (
                "upgrade it (`pip install -U ai-edge-litert`)"
                if be.name == "litert"
                else "install ai-edge-litert (`pip install ai-edge-litert`)"
            )
            raise BackendError(
                f"{where}: {be.name} {be.version} cannot run this model ({detail}); {advice} "
                "or re-convert the model with full int8 quantization"
            ) from None
        raise ModelFileError(
            f"{where}: the interpreter cannot load this model ({detail})"
        ) from None
    return interp, be


# --------------------------------------------------------------------------- tensor helpers
def input_details(interpreter: Any, index: int = 0) -> dict[str, Any]:
    """Details (name, index, shape, dtype, quantization) of input ``index``."""
    return interpreter.get_input_details()[index]


def output_details(interpreter: Any, index: int = 0) -> dict[str, Any]:
    """Details (name, index, shape, dtype, quantization) of output ``index``."""
    return interpreter.get_output_details()[index]


def quant_params(details: dict[str, Any]) -> tuple[float, int]:
    """(scale, zero_point) of a tensor; (0.0, 0) when it is not quantized."""
    scale, zero_point = details.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Real values -> ``dtype`` with ``q = round(x / scale) + zero_point``, clipped."""
    dt = np.dtype(dtype)
    if dt.kind == "f" or scale == 0:
        return np.asarray(x, dtype=dt)
    info = np.iinfo(dt)
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dt)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Quantized values -> float32 ``(q - zero_point) * scale`` (float input passes through)."""
    a = np.asarray(q)
    if a.dtype.kind == "f" or scale == 0:
        return a.astype(np.float32, copy=False)
    return ((a.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def set_input(interpreter: Any, array: np.ndarray, index: int = 0) -> None:
    """Write real-valued (or already correctly typed) ``array`` into input ``index``.

    Quantizes with the input tensor's own scale and zero point when the tensor is integer
    and ``array`` is float; integer arrays of the tensor's dtype go in unchanged.
    """
    d = input_details(interpreter, index)
    a = np.asarray(array)
    dtype = np.dtype(d["dtype"])
    if a.dtype != dtype:
        scale, zp = quant_params(d)
        a = quantize(a, scale, zp, dtype) if dtype.kind in "iu" else a.astype(dtype)
    interpreter.set_tensor(d["index"], a.reshape(d["shape"]))


def get_output(interpreter: Any, index: int = 0) -> np.ndarray:
    """Output ``index`` dequantized with its own scale and zero point (float32)."""
    d = output_details(interpreter, index)
    scale, zp = quant_params(d)
    return dequantize(interpreter.get_tensor(d["index"]), scale, zp)
