"""The one flatbuffer reader of edge_runtime, against the TFLite schema's own object API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime import flatbuffer as fb
from edge_runtime.errors import ModelFileError
from edge_runtime.metadata import _schema

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_int8.tflite"
MODEL = FIXTURE.read_bytes()


def test_reads_what_the_schema_object_api_reads():
    schema = _schema()
    ref = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(MODEL, 0))
    r = fb.FlatbufferReader(MODEL, "tiny.tflite")
    root = r.root()
    assert r.scalar(root, fb.MODEL_VERSION, "<I", 0) == ref.version == 3
    buffers = r.tables(root, fb.MODEL_BUFFERS)
    assert len(buffers) == len(ref.buffers)
    for pos, buf in zip(buffers, ref.buffers, strict=True):
        data = r.byte_vector(pos, fb.BUFFER_DATA)
        want = b"" if buf.data is None else bytes(np.asarray(buf.data, np.uint8))
        assert (data or b"") == want
        assert r.vector_length(pos, fb.BUFFER_DATA) == len(want)
    names = [r.string(m, fb.METADATA_NAME) for m in r.tables(root, fb.MODEL_METADATA)]
    assert names == [m.name.decode() for m in ref.metadata]
    (sg,) = r.tables(root, fb.MODEL_SUBGRAPHS)
    tensors = r.tables(sg, fb.SUBGRAPH_TENSORS)
    assert len(tensors) == len(ref.subgraphs[0].tensors)
    for pos, t in zip(tensors, ref.subgraphs[0].tensors, strict=True):
        assert r.array(pos, fb.TENSOR_SHAPE, "<i4").tolist() == list(t.shape)
        assert r.scalar(pos, fb.TENSOR_TYPE, "<b", 0) == t.type
        q = r.table(pos, fb.TENSOR_QUANTIZATION)
        scales = [] if q is None else r.array(q, fb.QUANT_SCALE, "<f4").tolist()
        scale = None if t.quantization is None else t.quantization.scale
        want_scales = [] if scale is None else list(scale)
        assert scales == pytest.approx(want_scales)
    assert r.array(sg, fb.SUBGRAPH_INPUTS, "<i4").tolist() == list(ref.subgraphs[0].inputs)
    # a field index past the vtable is absent: the defaults come back
    assert r.field(root, 60) is None
    assert r.scalar(root, 60, "<i", 7) == 7
    assert r.tables(root, 60) == [] and r.string(root, 60) == ""
    assert r.byte_vector(root, 60) is None and r.array(root, 60, "<i4").size == 0


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(
    data=st.one_of(st.binary(max_size=64), st.just(MODEL[:200]), st.just(MODEL)),
    pos=st.integers(-8, len(MODEL) + 8),
    index=st.integers(0, 40),
    method=st.sampled_from(
        ["u16", "u32", "i32", "u64", "field", "scalar", "table", "tables", "vector_length"]
        + ["byte_vector", "string", "array", "vector"]
    ),
)
def test_any_position_is_read_or_refused_with_the_file_named(data, pos, index, method):
    """Arbitrary positions and field numbers: a value, or a ModelFileError naming the file."""
    r = fb.FlatbufferReader(data, "odd.tflite")
    calls = {
        "u16": lambda: r.u16(pos),
        "u32": lambda: r.u32(pos),
        "i32": lambda: r.i32(pos),
        "u64": lambda: r.u64(pos),
        "vector": lambda: r.vector(pos, 4),
        "field": lambda: r.field(pos, index),
        "scalar": lambda: r.scalar(pos, index, "<q", 0),
        "table": lambda: r.table(pos, index),
        "tables": lambda: r.tables(pos, index),
        "vector_length": lambda: r.vector_length(pos, index),
        "byte_vector": lambda: r.byte_vector(pos, index),
        "string": lambda: r.string(pos, index),
        "array": lambda: r.array(pos, index, "<i8"),
    }
    try:
        calls[method]()
    except ModelFileError as e:
        assert str(e).startswith("odd.tflite: not a valid TFLite flatbuffer (")
