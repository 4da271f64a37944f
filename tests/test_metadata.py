"""The spec embedded in a real converted .tflite, read back without TensorFlow."""

from __future__ import annotations

import pytest

from edge_runtime.errors import ModelFileError
from edge_runtime.metadata import (
    SPEC_METADATA_NAME,
    embed_spec,
    read_metadata,
    spec_from_model_bytes,
)
from edge_runtime.spec import ModelSpec


@pytest.fixture(scope="module")
def tiny_tflite() -> bytes:
    import tempfile

    import keras
    import tensorflow as tf

    inp = keras.Input((32, 32, 3), batch_size=1)
    x = keras.layers.Rescaling(1 / 127.5, -1)(inp)
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="sigmoid")(x)
    d = tempfile.mkdtemp()
    keras.Model(inp, out).export(d, verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(d).convert()


def test_embed_and_read_roundtrip(tiny_tflite):
    spec = ModelSpec(task="point", input_height=32, input_width=32, num_keypoints=1)
    assert spec_from_model_bytes(tiny_tflite) is None
    model = embed_spec(tiny_tflite, spec)
    assert spec_from_model_bytes(model) == spec
    # re-embedding replaces, never duplicates
    model2 = embed_spec(model, spec.with_extra(note="x"))
    assert list(read_metadata(model2)).count(SPEC_METADATA_NAME) == 1
    assert spec_from_model_bytes(model2).extra == {"note": "x"}


def test_embedded_model_still_runs(tiny_tflite):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    spec = ModelSpec(task="point", input_height=32, input_width=32, num_keypoints=1)
    it = Interpreter(model_content=embed_spec(tiny_tflite, spec))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.full((1, 32, 32, 3), 128, np.float32))
    it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"])
    assert out.shape == (1, 2) and np.all((out > 0) & (out < 1))


@pytest.mark.parametrize("cut", [0, 7, 100, -200])
def test_truncated_or_garbage_is_a_clear_error(tiny_tflite, cut):
    data = tiny_tflite[:cut] if cut >= 0 else tiny_tflite[:cut]
    try:
        read_metadata(data, "m.tflite")
    except ModelFileError as e:
        assert "m.tflite" in str(e)
    with pytest.raises(ModelFileError, match="TFL3"):
        read_metadata(b"PK\x03\x04" + b"\x00" * 100, "m.tflite")
