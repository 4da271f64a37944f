"""Tiny REAL contract-conforming models for tests: Keras -> TFLite (fp32 / int8) with a spec.

``make_tflite(tmp_dir, "point")`` builds a small Keras model that obeys the output
contract of :class:`edge_runtime.spec.ModelSpec` (raw 0..255 RGB input, one output tensor
of ``spec.output_size`` values), converts it with the real TFLite converter and embeds
the spec. The Keras model is saved next to it (``<name>.keras``, standard layers only,
loads with safe mode on) so tests can compare against its own output: see
:func:`keras_model_for`.

Two architectures:

- ``arch="random"``: a small random conv net (sigmoid / softmax head); any task.
- ``arch="centroid"``: an exactly known answer for point/keypoints: keypoint k is the
  (softmax-weighted) centroid of the bright pixels of colour channel k (R, G, B) in the
  model's RGB input. A red blob at (x, y) gives point (x, y); used for ROI and colour tests.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.metadata import embed_spec
from edge_runtime.spec import ModelSpec

_DEFAULTS: dict[str, dict[str, Any]] = {
    "point": {"num_keypoints": 1},
    "keypoints": {"num_keypoints": 3, "flip_pairs": ((0, 1),)},
    "value": {"value_range": (80.0, 350.0), "units": "mg/L", "target_name": "conc"},
    "class": {"class_names": ("empty", "full")},
    # a pressure gauge: 0 bar at 225 degrees, 10 bar at 135, clockwise from up
    "angle": {
        "params": {"zero_deg": 0.0, "clockwise": True, "gauge": [225.0, 135.0, 0.0, 10.0]},
        "units": "bar",
    },
}


def make_spec(task: str, size: int = 32, **spec_kw: Any) -> ModelSpec:
    """A valid spec for ``task`` at ``size`` x ``size`` with sensible defaults."""
    kw = {**_DEFAULTS[task], **spec_kw}
    kw.setdefault("input_height", size)
    kw.setdefault("input_width", size)
    return ModelSpec(task=task, **kw)


def build_keras(spec: ModelSpec, arch: str = "random", seed: int = 0):
    """A tiny Keras model obeying the output contract of ``spec``."""
    import keras

    keras.utils.set_random_seed(seed)
    h, w = spec.input_height, spec.input_width
    inp = keras.Input((h, w, 3), batch_size=1)
    if arch == "centroid":
        k = spec.num_keypoints
        assert spec.task in ("point", "keypoints") and 1 <= k <= 3, "centroid: 1 to 3 points"
        x = keras.layers.Rescaling(24.0 / 255.0)(inp)  # softmax sharpness
        x = keras.layers.Permute((3, 1, 2))(x)
        x = keras.layers.Reshape((3, h * w))(x)
        x = keras.layers.Softmax(axis=-1)(x)
        dense = keras.layers.Dense(2, use_bias=False)
        x = dense(x)  # (3, 2): per-channel centroid (x, y)
        if k < 3:
            x = keras.layers.Cropping1D((0, 3 - k))(x)
        out = keras.layers.Flatten()(x)
        model = keras.Model(inp, out)
        yy, xx = np.mgrid[0:h, 0:w]
        grid = np.stack([(xx.ravel() + 0.5) / w, (yy.ravel() + 0.5) / h], axis=1)
        dense.set_weights([grid.astype(np.float32)])
        return model
    x = keras.layers.Rescaling(1 / 127.5, -1)(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    act = "softmax" if spec.task == "class" else "sigmoid"
    out = keras.layers.Dense(spec.output_size, activation=act)(x)
    return keras.Model(inp, out)


def calibration_frames(
    spec: ModelSpec, n: int = 16, seed: int = 0, calib_max: int = 255
) -> np.ndarray:
    """Random uint8 RGB frames spanning exactly 0..calib_max (255: uint8 input gets scale 1,
    zero point 0; less gives an input scale below 1)."""
    rng = np.random.default_rng(seed)
    shape = (n, spec.input_height, spec.input_width, 3)
    frames = rng.integers(0, calib_max + 1, shape, dtype=np.uint16).astype(np.uint8)
    frames[:, 0, 0, :] = 0
    frames[:, 0, 1, :] = calib_max
    # a few flat-ish frames with blobs, so calibration sees realistic activations too
    for i in range(0, n, 2):
        frames[i] //= 8
        cy, cx = rng.integers(2, spec.input_height - 6), rng.integers(2, spec.input_width - 6)
        frames[i, cy : cy + 4, cx : cx + 4, rng.integers(0, 3)] = calib_max
    return frames


def convert(
    model,
    spec: ModelSpec,
    variant: str = "fp32",
    io: str = "float",
    embed: bool = True,
    calib_max: int = 255,
) -> bytes:
    """Real TFLite conversion (export once, then from_saved_model), spec embedded."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as d:
        model.export(d, verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(d)
        if variant == "int8":
            frames = calibration_frames(spec, calib_max=calib_max)

            def rep():
                for f in frames:
                    yield [f[None].astype(np.float32)]

            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = rep
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if io != "float":
                dtype = {"uint8": tf.uint8, "int8": tf.int8}[io]
                conv.inference_input_type = dtype
                conv.inference_output_type = dtype
        elif variant == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        elif variant != "fp32":
            raise ValueError(f"variant {variant!r}")
        data = conv.convert()
    return embed_spec(data, spec) if embed else data


def make_tflite(
    tmp_dir: str | Path,
    task: str,
    variant: str = "fp32",
    io: str = "float",
    size: int = 32,
    *,
    arch: str = "random",
    embed: bool = True,
    seed: int = 0,
    calib_max: int = 255,
    **spec_kw: Any,
) -> Path:
    """Build, convert and write ``<tmp_dir>/<task>_<arch>_<variant>_<io>_<size>.tflite``.

    The Keras model is saved next to it as ``.keras``; ``embed=False`` writes a bare
    .tflite with no spec (its spec is written as ``.spec.json``). ``calib_max`` below 255
    calibrates int8 on darker frames, giving an integer input whose scale is not 1.
    """
    spec = make_spec(task, size, **spec_kw)
    model = build_keras(spec, arch, seed)
    tag = ("" if embed else "_bare") + ("" if calib_max == 255 else f"_c{calib_max}")
    out = Path(tmp_dir) / f"{task}_{arch}_{variant}_{io}_{size}{tag}.tflite"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = convert(model, spec, variant, io, embed, calib_max)
    out.write_bytes(data)
    model.save(out.with_suffix(".keras"))
    out.with_suffix(".spec.json").write_text(spec.to_json())
    return out


def keras_model_for(tflite_path: str | Path):
    """The Keras model a :func:`make_tflite` file was converted from (safe mode on)."""
    import keras

    return keras.saving.load_model(Path(tflite_path).with_suffix(".keras"), safe_mode=True)


def spec_for(tflite_path: str | Path) -> ModelSpec:
    """The spec a :func:`make_tflite` file was made with (also for bare files)."""
    return ModelSpec.from_json(Path(tflite_path).with_suffix(".spec.json").read_text())
