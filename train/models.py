"""Model = raw-RGB input -> MobileNet backbone (normalization inside) -> one task head.

Output contract (see :mod:`edge_runtime.spec`): ONE output tensor named ``output`` with
``spec.output_size`` values. The head, its loss and where the backbone is cut are the
task's (``train/tasks/<task>.py``: ``build_head``, ``loss``, ``trunk``); regression heads
are linear, bounded by the task's decoder (finer int8 outputs than a sigmoid: see
``train/tasks/_common.py``).

No Lambda layers: the file loads with ``safe_mode=True``. Import this module before
``keras.saving.load_model`` so anything registered here is known.
"""

from __future__ import annotations

from typing import Any

import keras

from edge_runtime.spec import ModelSpec
from train import tasks

#: Dropout before the last dense layer(s).
DEFAULT_DROPOUT = 0.2
#: Where the MobileNetV2 backbone is cut for tasks whose ``trunk`` is ``"stride16"``
#: (stride 16, 576 channels; the same map SSDLite detects from).
STRIDE16_CUT_LAYER = "features_14_conv_0_relu6"


def default_input_size(task: str) -> int:
    """The default square input size for a task (its ``default_input_size``)."""
    return tasks.get(task).default_input_size


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

    task = tasks.get(spec.task)
    h, w = spec.input_height, spec.input_width
    inp = keras.Input((h, w, 3), dtype="float32", name="input")
    wt = None if weights in (None, "none", "None") else weights
    bb = build_backbone(backbone, (h, w, 3), alpha=alpha, weights=wt)
    if task.trunk == "stride16":
        bb = _stride16_trunk(bb)
    features = bb(inp)
    # Under mixed precision (train/devices.py) the backbone computes in float16; the head
    # stays float32, so the outputs (and the loss) keep their resolution.
    from train.devices import float32_policy

    with float32_policy():
        out = task.build_head(spec, features, dropout)
    return keras.Model(inp, out, name=f"edgereg_{spec.task}_{backbone}")


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


def loss_for(spec: ModelSpec) -> Any:
    """The task's loss on its training target (``train/tasks/<task>.py``: ``loss``).

    Coordinates and values: Huber with a small delta (like L1 for errors above 2 % of the
    frame/range, so a few hard images do not dominate, like L2 near the target); class:
    sparse categorical cross-entropy on class indices.
    """
    return tasks.get(spec.task).loss(spec)
