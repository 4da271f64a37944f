"""Model = raw-RGB input -> MobileNet backbone (normalization inside) -> one task head.

Output contract (see :mod:`edge_runtime.spec`): ONE output tensor named ``output`` with
``spec.output_size`` values:

- point / keypoints: normalized (x, y) pairs from a LINEAR output layer; the decoder
  (``ModelSpec.decode_output``) bounds them to [0, 1]. The head keeps WHERE things are: a
  1x1 conv shrinks the channels, then the feature map is flattened (a global average
  would throw the layout away), then dense layers.
- value: the target normalized over ``spec.value_range`` to [0, 1], from a linear output
  layer; the decoder clips to the range.
- class: softmax probabilities over ``spec.class_names`` (trained with a sparse
  categorical cross-entropy on class indices, so one-hot/loss mismatches cannot happen).

Why linear, not sigmoid: measured on the point sample set, a sigmoid output trained to
3.38 px and a linear one to 2.45 px in the same steps, and a full-int8 sigmoid loses
precision twice: its logit is an int8 tensor (a step of ~6/256 in logit space is up to
1.5/256 of the frame after the sigmoid's slope) and TFLite then fixes the LOGISTIC output
to 256 steps over [0, 1]. A linear output's int8 range is calibrated to the targets'
own range. The output bias starts at 0.5 (the middle of the frame / range) with a small
kernel, so the first predictions are inside [0, 1]. Keypoints read the stride-16 map
(as class does): see ``_stride16_trunk``.

No Lambda layers: the file loads with ``safe_mode=True``. Import this module before
``keras.saving.load_model`` so anything registered here is known.
"""

from __future__ import annotations

from typing import Any

import keras

from edge_runtime.spec import ModelSpec

#: Input size (height = width) per task when ``--input-size`` is not given. See docs/training.md.
DEFAULT_INPUT_SIZE = {"point": 160, "keypoints": 160, "value": 96, "class": 224}
#: Dropout before the last dense layer(s).
DEFAULT_DROPOUT = 0.2
#: Channels kept by the 1x1 conv before flattening in coordinate heads.
COORD_HEAD_CHANNELS = 64
COORD_HEAD_UNITS = 256
VALUE_HEAD_UNITS = 128
#: Class and keypoints models: where the MobileNetV2 backbone is cut (stride 16, 576
#: channels; the same map SSDLite detects from). Class: channels of the local 1x1 detector
#: before max pooling.
STRIDE16_CUT_LAYER = "features_14_conv_0_relu6"
STRIDE16_TASKS = ("class", "keypoints")
CLASS_HEAD_CHANNELS = 128


def default_input_size(task: str) -> int:
    """The default square input size for a task."""
    return DEFAULT_INPUT_SIZE[task]


def build_model(
    spec: ModelSpec,
    backbone: str = "mobilenet_v2",
    alpha: float = 1.0,
    weights: str | None = "imagenet",
    dropout: float = DEFAULT_DROPOUT,
) -> keras.Model:
    """Build the full model for ``spec`` (input (H, W, 3) float32 raw 0..255 RGB).

    ``weights``: ``imagenet`` (pretrained, raises WeightsError when none can be had),
    ``none`` (random init) or a path understood by :func:`train.backbones.build_backbone`.
    """
    from train.backbones import build_backbone

    h, w = spec.input_height, spec.input_width
    inp = keras.Input((h, w, 3), dtype="float32", name="input")
    wt = None if weights in (None, "none", "None") else weights
    bb = build_backbone(backbone, (h, w, 3), alpha=alpha, weights=wt)
    if spec.task in STRIDE16_TASKS:
        bb = _stride16_trunk(bb)
    feat = bb(inp)
    x: Any
    if spec.task in ("point", "keypoints"):
        x = keras.layers.Conv2D(COORD_HEAD_CHANNELS, 1, activation="relu", name="head_reduce")(feat)
        x = keras.layers.Flatten(name="head_flatten")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        x = keras.layers.Dense(COORD_HEAD_UNITS, activation="relu", name="head_dense")(x)
        out = _linear_output(spec.output_size)(x)
    elif spec.task == "value":
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(feat)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        x = keras.layers.Dense(VALUE_HEAD_UNITS, activation="relu", name="head_dense")(x)
        out = _linear_output(1)(x)
    else:
        # A local detector (1x1 conv) on a stride-16 map, then global MAX pooling: a class
        # often hinges on a small local feature (a defect covering <1 % of the frame), which
        # an average over the whole map dilutes to nothing.
        x = keras.layers.Conv2D(CLASS_HEAD_CHANNELS, 1, activation="relu", name="head_local")(feat)
        x = keras.layers.GlobalMaxPooling2D(name="head_pool")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        out = keras.layers.Dense(spec.output_size, activation="softmax", name="output")(x)
    name = f"edgereg_{spec.task}_{backbone}"
    return keras.Model(inp, out, name=name)


def _linear_output(units: int) -> keras.layers.Dense:
    """The regression output: linear, starting near 0.5 (see the module docstring)."""
    return keras.layers.Dense(
        units,
        bias_initializer=keras.initializers.Constant(0.5),
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="output",
    )


def _stride16_trunk(bb: keras.Model) -> keras.Model:
    """The backbone cut at its stride-16 expansion (torch-style MobileNetV2 only).

    The last blocks (stride 32, 1280 ImageNet-semantic channels) do not keep a defect of a
    few pixels: measured on the class sample data, the full backbone with a pooled head
    stayed at the majority baseline. Keypoints (corners) are local too: on the keypoints
    sample set the stride-16 map (10x10 at 160 px) gave pck@0.05 0.95 and 5.43 px where the
    stride-32 one (5x5) gave 0.91 and 6.60 px, with cheaper steps. Other backbones are
    returned unchanged.
    """
    names = {layer.name for layer in bb.layers}
    if STRIDE16_CUT_LAYER not in names:
        return bb
    return keras.Model(bb.input, bb.get_layer(STRIDE16_CUT_LAYER).output, name=bb.name)


def get_backbone(model: keras.Model) -> keras.Model:
    """The nested backbone model inside a model from :func:`build_model`."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"{model.name}: no nested backbone model found")


def loss_for(spec: ModelSpec) -> keras.losses.Loss:
    """Loss per task, on the encoded target.

    Coordinates and values: Huber with a small delta (behaves like L1 for errors above
    2 % of the frame/range, so a few hard images do not dominate, and like L2 near the
    target, so it settles smoothly). Class: sparse categorical cross-entropy.
    """
    if spec.task == "class":
        return keras.losses.SparseCategoricalCrossentropy()
    return keras.losses.Huber(delta=0.02)
