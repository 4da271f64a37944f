"""Backend choice, Edge TPU device strings, the runtime-version guard and tensor helpers."""

from __future__ import annotations

import ctypes.util
import importlib.util
import types

import numpy as np
import pytest
from models import make_tflite

from edge_runtime.errors import BackendError, ModelFileError
from edge_runtime.interpreter import (
    Backend,
    check_runtime_version,
    dequantize,
    get_output,
    input_details,
    load_backend,
    make_interpreter,
    model_min_runtime,
    parse_device,
    quantize,
    set_input,
)
from edge_runtime.predictor import Predictor


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    return make_tflite(tmp_path_factory.mktemp("interp"), "value", "int8", "float")


def test_auto_prefers_litert():
    be = load_backend("auto")
    assert be.name == "litert" and be.version.startswith("2.")


@pytest.mark.skipif(
    importlib.util.find_spec("tflite_runtime") is not None, reason="tflite-runtime is installed"
)
def test_forcing_a_missing_backend_is_a_clear_error(int8_model):
    with pytest.raises(BackendError, match=r"tflite_runtime.*pip install tflite-runtime"):
        load_backend("tflite_runtime")
    with pytest.raises(BackendError, match="tflite_runtime"):
        Predictor.create_from_model_path(int8_model, backend="tflite_runtime")


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(BackendError, match="not one of auto, litert"):
        load_backend("onnx")


@pytest.mark.parametrize(
    "dev,want",
    [("cpu", None), ("usb", "usb"), ("usb:0", "usb:0"), ("pci", "pci"), ("PCI:1", "pci:1")],
)
def test_device_strings(dev, want):
    assert parse_device(dev) == want


@pytest.mark.parametrize("dev", ["gpu", "usb:x", "usb0", "pci:"])
def test_bad_device_string(dev):
    with pytest.raises(BackendError, match="device"):
        parse_device(dev)


@pytest.mark.skipif(ctypes.util.find_library("edgetpu") is not None, reason="libedgetpu present")
@pytest.mark.parametrize("dev", ["usb", "pci:0"])
def test_edgetpu_without_libedgetpu_says_what_to_install(int8_model, dev):
    with pytest.raises(BackendError, match=r"libedgetpu\.so\.1.*libedgetpu1-std") as e:
        Predictor.create_from_model_path(int8_model, device=dev)
    assert dev in str(e.value)


def _stand_in_backend(version: str, error: Exception | None = None) -> Backend:
    """A stand-in for tflite-runtime (not installable next to numpy 2 here)."""

    class Interp:
        def __init__(self, **kw):
            if error is not None:
                raise error

    return Backend("tflite_runtime", types.SimpleNamespace(Interpreter=Interp), version)


def test_tflite_runtime_refuses_models_needing_a_newer_runtime(int8_model):
    model = int8_model.read_bytes()
    need = model_min_runtime(model)
    assert need and need[0].isdigit()  # the converter writes e.g. "1.14.0"
    check_runtime_version(model, _stand_in_backend("2.14.0"), "m.tflite")  # new enough
    with pytest.raises(BackendError, match=r"m\.tflite: needs TFLite runtime .*ai-edge-litert"):
        check_runtime_version(model, _stand_in_backend("1.5.0"), "m.tflite")


def test_tflite_runtime_op_version_failure_becomes_backend_error(int8_model):
    err = ValueError("Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'.")
    with pytest.raises(BackendError, match=r"FULLY_CONNECTED.*ai-edge-litert"):
        make_interpreter(
            int8_model.read_bytes(), where="m.tflite", backend=_stand_in_backend("2.14.0", err)
        )


def test_interpreter_load_failure_is_model_file_error(int8_model):
    err = RuntimeError("Model provided has model identifier 'XXXX', should be 'TFL3'")
    with pytest.raises(ModelFileError, match="m.tflite"):
        make_interpreter(
            int8_model.read_bytes(), where="m.tflite", backend=_stand_in_backend("2.14.0", err)
        )


def test_num_threads_must_be_positive(int8_model):
    with pytest.raises(BackendError, match="num_threads"):
        make_interpreter(int8_model.read_bytes(), num_threads=0)


def test_quantize_dequantize_roundtrip():
    x = np.array([-1.0, 0.0, 0.5, 1.0, 100.0], np.float32)
    q = quantize(x, 1 / 127, 0, np.int8)
    assert q.dtype == np.int8 and q.tolist() == [-127, 0, 64, 127, 127]  # clipped
    np.testing.assert_allclose(dequantize(q, 1 / 127, 0)[:4], x[:4], atol=0.5 / 127)
    q8 = quantize(np.array([0.0, 255.0]), 1.0, 0, np.uint8)
    assert q8.tolist() == [0, 255]
    assert dequantize(np.array([1.5], np.float32), 0.0, 0).dtype == np.float32


def test_set_input_and_get_output_on_a_full_int8_model(tmp_path):
    path = make_tflite(tmp_path, "class", "int8", "int8")
    it, _ = make_interpreter(path.read_bytes())
    d = input_details(it)
    assert d["dtype"] == np.int8
    img = np.full((1, 32, 32, 3), 200.0, np.float32)
    set_input(it, img)  # quantized with the tensor's own scale and zero point
    scale, zp = d["quantization"]
    assert it.get_tensor(d["index"])[0, 0, 0, 0] == np.clip(round(200 / scale) + zp, -128, 127)
    it.invoke()
    probs = get_output(it)
    assert probs.dtype == np.float32 and probs.shape == (1, 2)
    assert probs.sum() == pytest.approx(1.0, abs=0.02)


def test_tflite_runtime_2_14_refuses_a_tf_2_21_dynamic_range_model():
    """The brief's trap: FULLY_CONNECTED v12 from a new converter; caught before loading."""
    import keras
    from models import convert, make_spec

    spec = make_spec("value", 32)
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = keras.layers.Conv2D(64, 3, strides=4)(keras.layers.Rescaling(1 / 255)(inp))
    x = keras.layers.Dense(64)(keras.layers.GlobalAveragePooling2D()(x))  # >= 1024 weights
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    model = convert(keras.Model(inp, out), spec, "dynamic")
    need = model_min_runtime(model)
    assert need is not None and tuple(int(v) for v in need.split(".")[:2]) > (2, 14)
    with pytest.raises(BackendError, match=rf"dyn\.tflite: needs TFLite runtime {need}.*2\.14"):
        make_interpreter(model, where="dyn.tflite", backend=_stand_in_backend("2.14.0"))
    # LiteRT runs it
    it, be = make_interpreter(model, where="dyn.tflite")
    assert be.name == "litert"


def test_edgetpu_compiled_model_on_cpu_says_so(int8_model, tmp_path):
    """A real file whose second op is the Edge TPU's custom op, loaded by the real LiteRT."""
    import flatbuffers

    from edge_runtime.metadata import _schema

    schema = _schema()
    data = int8_model.read_bytes()
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    oc = m.operatorCodes[1]
    oc.builtinCode = oc.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    oc.customCode, oc.version = "edgetpu-custom-op", 1
    b = flatbuffers.Builder(len(data) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    path = tmp_path / "m_edgetpu.tflite"
    path.write_bytes(bytes(b.Output()))
    with pytest.raises(BackendError, match=r"m_edgetpu\.tflite: .*compiled for the Edge TPU"):
        Predictor.create_from_model_path(path)


def test_forced_tensorflow_backend_matches_litert(int8_model):
    frame = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    with Predictor.create_from_model_path(int8_model, backend="tensorflow") as p:
        assert p.backend.name == "tensorflow"
        a = p.predict(frame).raw
    with Predictor.create_from_model_path(int8_model) as p:
        b = p.predict(frame).raw
    np.testing.assert_allclose(a, b, atol=0.02)


def _edit(model: bytes, fn) -> bytes:
    import flatbuffers

    from edge_runtime.metadata import _schema

    schema = _schema()
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    fn(m)
    b = flatbuffers.Builder(len(model) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _set_op_input(m):
    op = m.subgraphs[0].operators[1]
    op.inputs = [23563, *list(op.inputs)[1:]]


def _set_zero_point(m):
    q = m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].quantization
    q.zeroPoint = [5898240]


def _set_shape(m):
    t = m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]]
    t.shape = [1 << 30, *list(t.shape)[1:]]


@pytest.mark.parametrize(
    "edit,match",
    [
        (_set_op_input, "names tensor 23563"),
        (_set_zero_point, "zero point outside"),
        (_set_shape, "elements|holds"),
    ],
    ids=["op-input", "zero-point", "shape"],
)
def test_semantically_corrupt_models_are_refused_before_allocation(tmp_path, edit, match):
    """Each of these passes the flatbuffer verifier and crashed allocate_tensors() (SIGSEGV)."""
    src = make_tflite(tmp_path, "point", "int8", "uint8")
    bad = tmp_path / "corrupt.tflite"
    bad.write_bytes(_edit(src.read_bytes(), edit))
    with pytest.raises(ModelFileError, match=rf"corrupt\.tflite: corrupt TFLite model .*({match})"):
        Predictor.create_from_model_path(bad)


FUZZ = """
import sys, numpy as np
from edge_runtime.errors import EdgeregError
from edge_runtime.predictor import Predictor
data = open(sys.argv[1], "rb").read()
rng = np.random.default_rng(0)
kinds = {}
for i in range(int(sys.argv[2])):
    b = bytearray(data)
    for _ in range(rng.integers(1, 8)):
        b[rng.integers(0, len(b))] = rng.integers(0, 256)
    path = sys.argv[3]
    open(path, "wb").write(b)
    try:
        with Predictor.create_from_model_path(path) as p:
            p.predict(np.zeros((40, 40, 3), np.uint8))
        k = "ok"
    except EdgeregError as e:
        k = type(e).__name__
    kinds[k] = kinds.get(k, 0) + 1
print(kinds)
"""


def test_bit_flipped_models_never_crash_the_process(tmp_path):
    """Random byte corruptions, in a subprocess so a segfault fails the test, not pytest."""
    import ast
    import subprocess
    import sys

    src = make_tflite(tmp_path, "point", "int8", "uint8")
    n = 400
    out = subprocess.run(
        [sys.executable, "-c", FUZZ, str(src), str(n), str(tmp_path / "c.tflite")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    kinds = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert sum(kinds.values()) == n
    assert set(kinds) <= {"ok", "ModelFileError", "SpecError", "BackendError"}
    assert kinds.get("ModelFileError", 0) > n // 4
