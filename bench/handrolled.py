"""The hand-rolled recipes from the four user questions, for side-by-side comparison.

Each is the network the asker built, trained from scratch on the same data as edgereg,
for the same wall-clock budget. Where the question leaves a detail open we take the
most generous reading for the baseline (inputs scaled to [0, 1], value targets
standardized, the fixed sigmoid/binary head for the class question), so a ratio
against edgereg is conservative.

- point (seeds/000): the answer's small ResNet, Dense(2, sigmoid), MSE, rmsprop.
- value (seeds/001): the VGG-like conv-conv-conv-pool net at 64x64, Dense(1), MSE.
- keypoints (seeds/002): the hand-copied MobileNet v1 from scratch with the asker's
  "better" Flatten-Dense(2000)-Dense(2000)-Dense(8) head, MSE.
- class (seeds/003): Conv(32,5)-pool-Conv(64,5)-pool-Dense, with the accepted fix
  (one sigmoid output, binary cross-entropy), SGD.
- angle (no question; what people do first): the same VGG-like net regressing the angle
  in degrees / 360 with MSE, blind to the wrap-around at 0/360.

Each task names its recipe (``handrolled`` in ``train/tasks/<task>.py``); the recipes
here are keyed by their own names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.images import read_image
from edge_runtime.preprocess import resize_to_input
from edge_runtime.spec import ModelSpec


@dataclass
class HandrolledResult:
    task: str
    epochs: int
    seconds: float
    params: int
    y_pred: np.ndarray  # decoded, user units, like spec.decode_output


def _layers():
    import keras

    return keras, keras.layers


def _resnet_point(size: int):
    keras, L = _layers()

    def unit(x, filters, pool=False):
        res = x
        if pool:
            x = L.MaxPooling2D((2, 2))(x)
            res = L.Conv2D(filters, 1, strides=2, padding="same", kernel_initializer="he_normal")(
                res
            )
        out = L.BatchNormalization()(x)
        out = L.Activation("relu")(out)
        out = L.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal")(out)
        out = L.BatchNormalization()(out)
        out = L.Activation("relu")(out)
        out = L.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal")(out)
        return L.add([res, out])

    inp = keras.Input((size, size, 3))
    x = L.Conv2D(32, 3, padding="same", kernel_initializer="he_uniform")(inp)
    for f, pool in ((32, False), (32, False), (64, True), (64, False), (128, True), (128, False)):
        x = unit(x, f, pool)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.Dropout(0.25)(x)
    x = L.AveragePooling2D((3, 3))(x)
    x = L.Flatten()(x)
    out = L.Dense(2, activation="sigmoid")(x)
    model = keras.Model(inp, out)
    model.compile(optimizer="rmsprop", loss="mse")
    return model


def _vgg_value(size: int):
    keras, L = _layers()
    inp = keras.Input((size, size, 3))
    x = inp
    for filters in (32, 64, 128):
        for _ in range(3):
            x = L.Conv2D(filters, 3)(x)
            x = L.BatchNormalization()(x)
            x = L.Activation("relu")(x)
        x = L.MaxPooling2D(2, 2)(x)
    for filters in (128, 32):
        x = L.Dropout(0.2)(x)
        x = L.Conv2D(filters, 1)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
    x = L.Flatten()(x)
    out = L.Dense(1)(x)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss="mse")
    return model


def _mobilenet_v1_keypoints(size: int, n_out: int):
    keras, L = _layers()
    inp = keras.Input((size, size, 3))
    x = L.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    blocks += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for filters, stride in blocks:
        x = L.ZeroPadding2D(1)(x)
        x = L.DepthwiseConv2D(3, strides=stride, use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
        x = L.Conv2D(filters, 1, use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.Activation("relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(2000, activation="relu")(x)
    x = L.Dropout(0.5)(x)
    x = L.Dense(2000, activation="relu")(x)
    out = L.Dense(n_out)(x)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss="mse")
    return model


def _cnn_class(size: int, n_classes: int):
    keras, L = _layers()
    inp = keras.Input((size, size, 3))
    x = L.Conv2D(32, 5, padding="same", activation="relu")(inp)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(64, 5, padding="same", activation="relu")(x)
    x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    if n_classes == 2:
        out = L.Dense(1, activation="sigmoid")(x)
        loss = "binary_crossentropy"
    else:
        out = L.Dense(n_classes, activation="softmax")(x)
        loss = "sparse_categorical_crossentropy"
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.SGD(), loss=loss)
    return model


def load_images(paths, size: int) -> np.ndarray:
    """Decode and resize with edgereg's own loader, so both sides see the same pixels."""
    return np.stack([resize_to_input(read_image(p), size, size) for p in paths]).astype(np.float32)


@dataclass(frozen=True)
class Recipe:
    """A user's hand-rolled network: its input size, how it is built, and how targets go
    in and predictions come out (in user units, like ``spec.decode_output``)."""

    input_size: int
    build: Callable[[np.ndarray, ModelSpec, int], Any]
    encode: Callable[[np.ndarray, ModelSpec], tuple[np.ndarray, Any]]
    decode: Callable[[np.ndarray, Any, ModelSpec], np.ndarray]


def _coords_in(t: np.ndarray, spec: ModelSpec) -> tuple[np.ndarray, Any]:
    return np.asarray(t).reshape(len(t), -1).astype(np.float32), None


def _coords_out(raw: np.ndarray, state: Any, spec: ModelSpec) -> np.ndarray:
    return raw.reshape(len(raw), -1, 2)


def _standardized_in(t: np.ndarray, spec: ModelSpec) -> tuple[np.ndarray, Any]:
    t = np.asarray(t, np.float64)
    mu, sd = float(t.mean()), float(t.std() or 1.0)
    return ((t - mu) / sd).astype(np.float32)[:, None], (mu, sd)


def _standardized_out(raw: np.ndarray, state: Any, spec: ModelSpec) -> np.ndarray:
    mu, sd = state
    return raw[:, 0] * sd + mu


def _class_in(t: np.ndarray, spec: ModelSpec) -> tuple[np.ndarray, Any]:
    if len(spec.class_names) == 2:
        return np.asarray(t).astype(np.float32)[:, None], None
    return np.asarray(t).astype(np.int64), None


def _class_out(raw: np.ndarray, state: Any, spec: ModelSpec) -> np.ndarray:
    if len(spec.class_names) == 2:
        p1 = raw[:, 0]
        return np.stack([1 - p1, p1], axis=1)
    return raw


def _degrees_in(t: np.ndarray, spec: ModelSpec) -> tuple[np.ndarray, Any]:
    return (np.asarray(t, np.float32) / 360.0)[:, None], None


def _degrees_out(raw: np.ndarray, state: Any, spec: ModelSpec) -> np.ndarray:
    return np.mod(raw[:, 0] * 360.0, 360.0)


RECIPES: dict[str, Recipe] = {
    "resnet_sigmoid": Recipe(96, lambda y, s, n: _resnet_point(n), _coords_in, _coords_out),
    "mobilenet_v1_dense": Recipe(
        96, lambda y, s, n: _mobilenet_v1_keypoints(n, y.shape[1]), _coords_in, _coords_out
    ),
    "vgg_value": Recipe(64, lambda y, s, n: _vgg_value(n), _standardized_in, _standardized_out),
    "small_cnn": Recipe(
        96, lambda y, s, n: _cnn_class(n, len(s.class_names)), _class_in, _class_out
    ),
    "vgg_degrees": Recipe(96, lambda y, s, n: _vgg_value(n), _degrees_in, _degrees_out),
}


def train_handrolled(
    spec: ModelSpec,
    recipe_name: str,
    train_paths,
    train_targets: np.ndarray,
    val_paths,
    seconds: float,
    seed: int = 0,
    max_epochs: int = 150,
    batch_size: int = 32,
) -> HandrolledResult:
    """Train a user's own network (:data:`RECIPES`) for ``seconds`` of wall clock (or
    ``max_epochs``).

    ``train_targets`` are in user units as the Dataset gives them. Returns validation
    predictions decoded to user units (same layout as ``spec.decode_output``).
    """
    import keras

    keras.utils.set_random_seed(seed)
    recipe = RECIPES[recipe_name]
    size = recipe.input_size
    x_train = load_images(train_paths, size) / 255.0
    x_val = load_images(val_paths, size) / 255.0
    y, state = recipe.encode(np.asarray(train_targets), spec)
    model = recipe.build(y, spec, size)
    deadline = time.monotonic() + seconds

    class _Budget(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if time.monotonic() > deadline:
                self.model.stop_training = True

    start = time.monotonic()
    hist = model.fit(
        x_train, y, batch_size=batch_size, epochs=max_epochs, verbose=0, callbacks=[_Budget()]
    )
    seconds_used = time.monotonic() - start
    raw = model.predict(x_val, batch_size=64, verbose=0)
    return HandrolledResult(
        task=spec.task,
        epochs=len(hist.history.get("loss", [])),
        seconds=seconds_used,
        params=int(model.count_params()),
        y_pred=np.asarray(recipe.decode(raw, state, spec), dtype=np.float32),
    )
