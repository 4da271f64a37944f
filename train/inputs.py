"""The training input path of ``edgereg train``: images streamed, not held whole.

:class:`ImageSet` reads a split's images at the model's input size through a cache: each
image is decoded and resized with :func:`edge_runtime.preprocess.resize_to_input` (the
device's own resize) the first time it is needed, then read from the cache:

- ``memory``: one uint8 array, filled as images are first read;
- ``disk``: one uint8 file in the temporary folder (``TMPDIR``), unlinked as soon as it is
  opened (nothing is left behind, even after ``kill -9``), read with ``pread`` so the
  operating system's page cache, not the process, holds what is hot;
- ``none``: decode every time (no cache at all);
- ``auto``: ``memory`` up to :data:`MEMORY_CACHE_MAX_BYTES` (and a quarter of the
  available memory), else ``disk`` when the temporary folder has room, else ``none``.

:class:`TrainStream` makes each epoch a ``tf.data`` pipeline: the epoch's shuffled order
(:func:`epoch_order`) cut into per-replica batches; each batch is read, augmented and
encoded by numpy code (``tf.numpy_function``, ``AUTOTUNE`` batches in parallel threads,
results in order) while the model trains on the previous ones. An image's augmentation
depends only on (seed, epoch, index), exactly as :func:`train.augment.augment_batch`, so
the batches are the same bytes as the in-memory path's, and a resumed run sees the same
data. Under ``tf.distribute`` every global batch is the same set of images whatever the
number of replicas and workers: each input pipeline takes its replicas' slices of it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import DataError, TrainingError
from edge_runtime.spec import ModelSpec
from train.interrupt import check as check_interrupt

CACHE_MODES = ("auto", "memory", "disk", "none")
#: ``--cache auto`` keeps a split set in memory up to this size (uint8 at the input size:
#: 2,000 images of 224x224 are 0.3 GB); above it, the disk cache (as fast here, see
#: docs/scaling.md, and its pages belong to the operating system, not to the process).
MEMORY_CACHE_MAX_BYTES = 1 << 30
#: The input pipeline's read-ahead: batches ready beyond those being made, and the memory
#: tf.data's autotuning may use for its buffers.
PREFETCH_BATCHES = 2
READ_AHEAD_BYTES = 256 << 20
#: Free space the disk cache leaves in the temporary folder.
DISK_MARGIN_BYTES = 1 << 30


# --------------------------------------------------------------------------- caches
def choose_cache(mode: str, n_bytes: int, tmp_dir: str | None = None) -> str:
    """The cache for ``n_bytes`` of images: ``mode`` itself unless it is ``auto``."""
    mode = str(mode or "auto").lower()
    if mode not in CACHE_MODES:
        raise TrainingError(f"--cache {mode!r}: give one of {', '.join(CACHE_MODES)}")
    if mode != "auto":
        return mode
    if n_bytes <= min(MEMORY_CACHE_MAX_BYTES, _available_memory() // 4):
        return "memory"
    free = shutil.disk_usage(tmp_dir or tempfile.gettempdir()).free
    return "disk" if free >= n_bytes + DISK_MARGIN_BYTES else "none"


def _available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 << 30  # not Linux: assume a modest machine


class _MemoryCache:
    def __init__(self, n: int, shape: tuple[int, int, int]) -> None:
        self.data = np.empty((n, *shape), np.uint8)  # pages are touched only when filled

    def get(self, i: int) -> np.ndarray:
        return self.data[i]

    def put(self, i: int, img: np.ndarray) -> None:
        self.data[i] = img

    def close(self) -> None:
        self.data = np.empty((0, 1, 1, 3), np.uint8)


class _DiskCache:
    def __init__(self, n: int, shape: tuple[int, int, int], tmp_dir: str | None) -> None:
        self.shape = shape
        self.size = int(np.prod(shape))
        fd, path = tempfile.mkstemp(prefix="edgereg-cache-", suffix=".u8", dir=tmp_dir)
        os.unlink(path)  # the file lives as long as the descriptor: nothing is left behind
        self.fd = fd

    def get(self, i: int) -> np.ndarray:
        buf = os.pread(self.fd, self.size, i * self.size)
        if len(buf) != self.size:
            raise TrainingError(f"disk cache: short read of image {i}; is the disk full?")
        return np.frombuffer(bytearray(buf), np.uint8).reshape(self.shape)  # writable

    def put(self, i: int, img: np.ndarray) -> None:
        data = np.ascontiguousarray(img, np.uint8).tobytes()
        try:
            if os.pwrite(self.fd, data, i * self.size) != self.size:
                raise OSError("short write")
        except OSError as e:
            raise TrainingError(
                f"disk cache in {tempfile.gettempdir()}: cannot write ({e}); free space, "
                "point TMPDIR elsewhere, or use --cache none"
            ) from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --------------------------------------------------------------------------- image sets
class ImageSet:
    """A split's images at the input size (uint8 RGB), read through a cache.

    ``len()`` is the number of images; :meth:`images` gives a stack, :meth:`batches`
    float32 batches in order (validation), :meth:`array` all of them (small sets only).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        spec: ModelSpec,
        cache: str = "auto",
        tmp_dir: str | None = None,
    ) -> None:
        from edge_runtime.images import read_image  # OpenCV: not at import (edgereg --help)
        from edge_runtime.preprocess import resize_to_input

        self._read, self._resize = read_image, resize_to_input
        self.paths = [Path(p) for p in paths]
        self.spec = spec
        self.shape = (spec.input_height, spec.input_width, 3)
        n_bytes = len(self.paths) * int(np.prod(self.shape))
        self.cache = choose_cache(cache, n_bytes, tmp_dir)
        self._filled = np.zeros(len(self.paths), bool)
        self._store: _MemoryCache | _DiskCache | None = None
        if self.cache == "memory":
            self._store = _MemoryCache(len(self.paths), self.shape)
        elif self.cache == "disk":
            self._store = _DiskCache(len(self.paths), self.shape, tmp_dir)

    def __len__(self) -> int:
        return len(self.paths)

    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.shape))

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` at the input size, from the cache or decoded (then cached)."""
        if self._store is not None and self._filled[i]:
            return self._store.get(i)
        h, w, _ = self.shape
        try:
            img = self._resize(self._read(self.paths[i]), h, w, self.spec.interpolation)
        except DataError:
            raise
        except (OSError, ValueError) as e:
            raise DataError(f"{self.paths[i]}: cannot read this image ({e})") from None
        if self._store is not None:
            self._store.put(i, img)
            self._filled[i] = True
        return img

    def images(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape), np.uint8)
        for j, i in enumerate(indices):
            out[j] = self.image(int(i))
        return out

    def array(self) -> np.ndarray:
        return self.images(range(len(self)))

    def batches(self, batch: int = 64) -> Iterator[np.ndarray]:
        """float32 batches of every image, in order (what the model is evaluated on)."""
        for start in range(0, len(self), batch):
            yield self.images(range(start, min(start + batch, len(self)))).astype(np.float32)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
            self._filled[:] = False

    def describe(self) -> str:
        return f"{len(self)} images, cache {self.cache} ({self.nbytes() / 2**20:,.0f} MB as uint8)"


# --------------------------------------------------------------------------- epochs
def epoch_order(seed: int, epoch: int, n: int, length: int) -> np.ndarray:
    """Shuffled indices for one epoch, padded with repeats to ``length`` (whole batches).

    Every batch has the same size, so the train step is traced once (a smaller last batch
    would trace it again, which costs seconds on a CPU). The first pad repeats are the same
    as before streaming; more than ``n`` of them (a tiny set on many replicas) continue
    with further permutations.
    """
    rng = np.random.default_rng((seed, epoch, 7))
    parts = [rng.permutation(n)]
    total = n
    while total < length:
        parts.append(rng.permutation(n)[: length - total])
        total += len(parts[-1])
    return np.concatenate(parts)[:length] if length >= n else parts[0]


class TrainStream:
    """The training images of every epoch, read, augmented and encoded in a tf.data pipeline.

    ``augmenter`` makes one :class:`train.augment.Augmenter` (one per input thread: its
    albumentations pipelines keep a seed); None turns augmentation off. ``encode`` turns a
    batch of dataset-form targets into what the loss compares with.
    """

    def __init__(
        self,
        images: ImageSet,
        targets: np.ndarray,
        encode: Callable[[np.ndarray], np.ndarray],
        augmenter: Callable[[], Any] | None,
        seed: int,
    ) -> None:
        self.images = images
        self.targets = np.asarray(targets)
        self.encode = encode
        self.augmenter = augmenter
        self.seed = int(seed)
        self._local = threading.local()
        probe = np.asarray(encode(self.targets[:1]))
        self.y_dtype, self.y_shape = probe.dtype, probe.shape[1:]

    def batch(self, epoch: int, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The augmented uint8 images and encoded targets of ``indices`` for ``epoch``."""
        aug = self._augmenter()
        x = np.empty((len(indices), *self.images.shape), np.uint8)
        y = np.array(self.targets[np.asarray(indices, np.int64)], copy=True)
        for j, i in enumerate(np.asarray(indices, np.int64)):
            img = self.images.image(int(i))
            if aug is not None:
                rng = np.random.default_rng((self.seed, epoch, int(i)))
                img, y[j] = aug(img, self.targets[i], rng)
            x[j] = img
        return x, np.asarray(self.encode(y), self.y_dtype)

    def _augmenter(self) -> Any:
        if self.augmenter is None:
            return None
        aug = getattr(self._local, "aug", None)
        if aug is None:
            aug = self._local.aug = self.augmenter()
        return aug

    def probe(self) -> tuple[np.ndarray, np.ndarray]:
        """One un-augmented local batch (float32 image, encoded target): builds the model."""
        x = self.images.images([0]).astype(np.float32)
        return x, np.asarray(self.encode(self.targets[:1]), self.y_dtype)

    def replica_batches(
        self, order: np.ndarray, global_batch: int, pipeline: int, pipelines: int
    ) -> np.ndarray:
        """Index rows of one input pipeline: its replicas' slices of every global batch."""
        steps = len(order) // global_batch
        share = global_batch // pipelines
        rows = order[: steps * global_batch].reshape(steps, global_batch)
        return rows[:, pipeline * share : (pipeline + 1) * share]

    def dataset(self, epoch: int, steps: int, global_batch: int, strategy: Any) -> Any:
        """One epoch as a (distributed) dataset of (float32 images, targets) batches."""
        import tensorflow as tf

        order = epoch_order(self.seed, epoch, len(self.images), steps * global_batch)

        def make(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            per = ctx.get_per_replica_batch_size(global_batch)
            rows = self.replica_batches(
                order, global_batch, ctx.input_pipeline_id, ctx.num_input_pipelines
            )
            return self._pipeline(epoch, rows.reshape(-1, per))

        return strategy.distribute_datasets_from_function(make)

    def _pipeline(self, epoch: int, index_rows: np.ndarray) -> Any:
        import tensorflow as tf

        h, w, _ = self.images.shape
        y_type = tf.as_dtype(self.y_dtype)
        per = index_rows.shape[1]

        def read(ix: Any) -> tuple[Any, Any]:
            x, y = tf.numpy_function(
                lambda i: self.batch(epoch, i), [ix], (tf.uint8, y_type), stateful=False
            )
            x = tf.ensure_shape(x, (per, h, w, 3))
            y = tf.ensure_shape(y, (per, *self.y_shape))
            return tf.cast(x, tf.float32), y

        ds = tf.data.Dataset.from_tensor_slices(index_rows.astype(np.int64))
        ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF  # each pipeline already has its share
        )
        # Bounded read-ahead: when the model is slower than the input (training on a CPU),
        # autotuning would otherwise buffer batches up to half of the available memory.
        batch_bytes = per * h * w * 3 * 5  # uint8 read + float32 copy
        options.autotune.ram_budget = max(READ_AHEAD_BYTES, 4 * batch_bytes)
        return ds.with_options(options).prefetch(PREFETCH_BATCHES)


#: Validation batch: the images pass through a traced forward function in batches of
#: this size (the last one padded, so it is traced once). Calling the model eagerly on 64
#: images of 224 px took the process from 2.3 to 6.9 GB (measured; see docs/scaling.md).
PREDICT_BATCH = 32


def predict(model: Any, images: ImageSet | np.ndarray, batch: int = PREDICT_BATCH) -> np.ndarray:
    """The model's raw outputs for every image, in order (inference mode, float32)."""
    forward = _forward(model)
    if isinstance(images, ImageSet):
        batches: Iterator[np.ndarray] = images.batches(batch)
    else:
        batches = (images[i : i + batch].astype(np.float32) for i in range(0, len(images), batch))
    outs = []
    for xb in batches:
        n = len(xb)
        if n < batch:
            xb = np.concatenate([xb, np.zeros((batch - n, *xb.shape[1:]), xb.dtype)])
        outs.append(np.asarray(forward(xb), np.float32)[:n])
    return np.concatenate(outs, axis=0)


def _forward(model: Any) -> Any:
    cached = getattr(model, "_edgereg_forward", None)
    if cached is None:
        import tensorflow as tf

        cached = model._edgereg_forward = tf.function(lambda x: model(x, training=False))
    return cached


def fit_epoch(
    model: Any, dataset: Any, strategy: Any, steps: int, bar: Any, probe: tuple[Any, Any]
) -> tuple[float, float]:
    """Train ``model`` one epoch on the (distributed) ``dataset``.

    Returns the epoch's mean loss and the steps per second after the first step (which
    traces the step function: seconds to minutes on a CPU).

    Each step runs Keras' own ``model.train_step`` (loss scaling for replicas and mixed
    precision included) on every replica with ``strategy.run``. Neither ``model.fit`` nor
    Keras' compiled train function is used: in Keras 3 both fail under
    MultiWorkerMirroredStrategy (``fit`` reduces the first batch to build the model,
    keras-team/keras#20585; the train function reduces the scalar loss along an axis).
    ``probe`` is one local (x, y) batch that builds the loss and optimizer state outside
    the replicas, as ``train_on_batch`` does. ``bar`` (tqdm) advances per step.
    """
    model._maybe_symbolic_build(data_batch=(*probe, None))  # Keras' own build step
    step = _train_step(model, strategy)
    model.reset_metrics()
    loss = float("nan")
    iterator = iter(dataset)
    t1 = time.monotonic()
    try:
        for k in range(steps):
            loss = float(step(iterator))  # running mean since reset_metrics: the epoch's
            check_interrupt()  # Ctrl-C (train/interrupt.py) stops here, between steps
            if k == 0:
                t1 = time.monotonic()
            bar.update(1)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss:.4g}")
    finally:
        bar.close()
    rate = (steps - 1) / (time.monotonic() - t1) if steps > 1 else float("nan")
    return loss, rate


def _train_step(model: Any, strategy: Any) -> Any:
    """A traced step for ``model``'s current optimizer (each compile makes a new one)."""
    cached = getattr(model, "_edgereg_step", None)
    if cached is not None and cached[0] is model.optimizer:
        return cached[1]
    import tensorflow as tf

    @tf.function
    def step(iterator: Any) -> Any:
        logs = strategy.run(model.train_step, args=(next(iterator),))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, logs["loss"], axis=None)

    model._edgereg_step = (model.optimizer, step)
    return step
