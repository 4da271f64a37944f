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
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edge_runtime.images import read_image
from edge_runtime.preprocess import resize_to_input
from edge_runtime.spec import ModelSpec

INPUT_SIZE = {"point": 96, "value": 64, "keypoints": 96, "class": 96}


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


def train_handrolled(
    spec: ModelSpec,
    train_paths,
    train_targets: np.ndarray,
    val_paths,
    seconds: float,
    seed: int = 0,
    max_epochs: int = 150,
    batch_size: int = 32,
) -> HandrolledResult:
    """Train the user question's own network for ``seconds`` of wall clock (or max_epochs).

    ``train_targets`` are in user units as the Dataset gives them. Returns validation
    predictions decoded to user units (same layout as ``spec.decode_output``).
    """
    import keras

    keras.utils.set_random_seed(seed)
    task = spec.task
    size = INPUT_SIZE[task]
    x_train = load_images(train_paths, size) / 255.0
    x_val = load_images(val_paths, size) / 255.0
    t = np.asarray(train_targets)
    if task in ("point", "keypoints"):
        y = t.reshape(len(t), -1).astype(np.float32)
        model = (
            _resnet_point(size) if task == "point" else _mobilenet_v1_keypoints(size, y.shape[1])
        )
    elif task == "value":
        mu, sd = float(t.mean()), float(t.std() or 1.0)
        y = ((t - mu) / sd).astype(np.float32)[:, None]
        model = _vgg_value(size)
    else:
        y = t.astype(np.float32)[:, None] if len(spec.class_names) == 2 else t.astype(np.int64)
        model = _cnn_class(size, len(spec.class_names))

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
    if task in ("point", "keypoints"):
        pred = raw.reshape(len(raw), -1, 2)
    elif task == "value":
        pred = raw[:, 0] * sd + mu
    elif len(spec.class_names) == 2:
        p1 = raw[:, 0]
        pred = np.stack([1 - p1, p1], axis=1)
    else:
        pred = raw
    return HandrolledResult(
        task=task,
        epochs=len(hist.history.get("loss", [])),
        seconds=seconds_used,
        params=int(model.count_params()),
        y_pred=np.asarray(pred, dtype=np.float32),
    )
