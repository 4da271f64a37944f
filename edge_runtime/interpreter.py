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

from .errors import BackendError, ModelFileError
from .metadata import read_metadata

#: name -> module holding ``Interpreter`` and ``load_delegate``
BACKEND_MODULES = {
    "litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow.lite",
}
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
        allowed = ", ".join(("auto", *BACKEND_MODULES))
        raise BackendError(f"backend: {name!r} is not one of {allowed}")
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


def check_model_structure(model: bytes, where: str = "model") -> None:
    """Bounds-check what the TFLite verifier leaves to the runtime, before tensors are allocated.

    The flatbuffer verifier checks offsets, not meaning: an operator that names tensor 23563
    of 13, or a shape of 2**40 elements, passes it and then crashes ``allocate_tensors()``
    (seen with bit-flipped files). Raises ModelFileError naming the file instead. Skipped when
    no TFLite schema module is installed (tflite-runtime alone ships none).
    """
    try:
        from .metadata import _schema

        schema = _schema()
    except ImportError:
        return
    try:
        _check_structure(schema, model, where)
    except ModelFileError:
        raise
    except Exception as e:  # any decoding failure of a corrupt file
        raise ModelFileError(f"{where}: corrupt TFLite model ({type(e).__name__}: {e})") from None


_EXPECTED_OPTIONS: dict[int, int] = {}


def _expected_options(schema: Any) -> dict[int, int]:
    """builtin op code -> its BuiltinOptions union type, where the names pair up
    (FULLY_CONNECTED -> FullyConnectedOptions); ops without such a pair are not checked."""
    if not _EXPECTED_OPTIONS:
        options = {k: v for k, v in vars(schema.BuiltinOptions).items() if not k.startswith("_")}
        for name, code in vars(schema.BuiltinOperator).items():
            if name.startswith("_"):
                continue
            camel = "".join(p[:1] + p[1:].lower() for p in name.split("_")) + "Options"
            camel = camel.replace("2d", "2D").replace("3d", "3D")
            if camel in options:
                _EXPECTED_OPTIONS[code] = options[camel]
    return _EXPECTED_OPTIONS


def _builtin_code(code: Any) -> int:
    return max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))


#: zero-point ranges of quantized tensor types (uint8, int8, int16, int32, int64)
_ZP_RANGE = {
    3: (0, 255),
    9: (-128, 127),
    7: (-32768, 32767),
    2: (-(2**31), 2**31 - 1),
    4: (-(2**31), 2**31 - 1),
}


def _check_quantization(q: Any, ttype: int, rank: int, t: int, bad: Any) -> None:
    n_s, n_z = q.ScaleLength(), q.ZeroPointLength()
    if n_z and n_s != n_z:
        raise bad(f"tensor {t} has {n_s} scales and {n_z} zero points")
    if n_s:
        scales = q.ScaleAsNumpy()
        if not np.all(np.isfinite(scales)) or np.any(scales < 0):
            raise bad(f"tensor {t} has a scale that is negative or not finite")
    if n_z:
        zps = q.ZeroPointAsNumpy()
        lo, hi = _ZP_RANGE.get(ttype, (0, 0))
        if int(zps.min()) < lo or int(zps.max()) > hi:
            raise bad(f"tensor {t} has a zero point outside [{lo}, {hi}] for its type")
    if n_s > 1 and not 0 <= q.QuantizedDimension() < max(rank, 1):
        raise bad(f"tensor {t} is quantized along dimension {q.QuantizedDimension()} of {rank}")


def _check_structure(schema: Any, model: bytes, where: str) -> None:
    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{where}: corrupt TFLite model ({what}); re-export or re-copy it")

    m = schema.Model.GetRootAsModel(model, 0)
    if m.Version() != 3:
        raise bad(f"schema version {m.Version()}, TFLite files have 3")
    n_codes, n_buffers = m.OperatorCodesLength(), m.BuffersLength()
    expected = _expected_options(schema)
    for c in range(n_codes):
        if not 1 <= m.OperatorCodes(c).Version() <= 1000:
            raise bad(f"operator code {c} has version {m.OperatorCodes(c).Version()}")
    if m.SubgraphsLength() < 1:
        raise bad("no subgraph")
    for g in range(m.SubgraphsLength()):
        sg = m.Subgraphs(g)
        n_t = sg.TensorsLength()
        for t in range(n_t):
            ten = sg.Tensors(t)
            if not 0 <= ten.Buffer() < max(n_buffers, 1):
                raise bad(f"tensor {t} uses buffer {ten.Buffer()} of {n_buffers}")
            shape = [int(d) for d in ten.ShapeAsNumpy()] if ten.ShapeLength() else []
            if any(d < 0 for d in shape):
                raise bad(f"tensor {t} has a negative dimension {shape}")
            n = 1
            for d in shape:
                n *= d
            if n > MAX_TENSOR_ELEMENTS:
                raise bad(f"tensor {t} has {n} elements")
            size = _ITEMSIZE.get(ten.Type())
            if size is not None and 0 < ten.Buffer() < n_buffers:
                data_len = m.Buffers(ten.Buffer()).DataLength()
                if data_len and data_len != n * size:
                    raise bad(
                        f"tensor {t} holds {data_len} bytes, its shape {shape} needs {n * size}"
                    )
            q = ten.Quantization()
            if q is not None:
                _check_quantization(q, ten.Type(), len(shape), t, bad)
        for io, length, get in (
            ("input", sg.InputsLength(), sg.Inputs),
            ("output", sg.OutputsLength(), sg.Outputs),
        ):
            for i in range(length):
                if not 0 <= get(i) < n_t:
                    raise bad(f"subgraph {io} {i} names tensor {get(i)} of {n_t}")
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            if not 0 <= op.OpcodeIndex() < n_codes:
                raise bad(f"operator {o} uses opcode {op.OpcodeIndex()} of {n_codes}")
            want = expected.get(_builtin_code(m.OperatorCodes(op.OpcodeIndex())))
            got = op.BuiltinOptionsType()
            if want is not None and got not in (0, want):
                raise bad(f"operator {o} carries options of another operator type")
            for kind, length, get in (
                ("input", op.InputsLength(), op.Inputs),
                ("output", op.OutputsLength(), op.Outputs),
                ("intermediate", op.IntermediatesLength(), op.Intermediates),
            ):
                for i in range(length):
                    if not -1 <= get(i) < n_t:
                        raise bad(f"operator {o} {kind} {i} names tensor {get(i)} of {n_t}")


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
    delegates = [edgetpu_delegate(be, dev)] if dev else None
    try:
        with warnings.catch_warnings():
            # tf.lite.Interpreter warns it is deprecated: the user forced it, we said so.
            warnings.simplefilter("ignore", UserWarning)
            interp = be.Interpreter(
                model_content=model, num_threads=threads, experimental_delegates=delegates
            )
        check_model_structure(model, where)  # after the verifier, before allocation
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
