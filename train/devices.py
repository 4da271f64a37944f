"""Where ``edgereg train`` runs: devices, tf.distribute strategy and numeric precision.

- ``--devices auto`` (default): every visible GPU; with two or more, a
  ``tf.distribute.MirroredStrategy`` over them; with none, the CPU. ``cpu``: the CPU even
  when GPUs are visible. ``N``: the first N GPUs (or, on a machine without GPUs, the first N
  logical CPU devices, see :data:`CPU_DEVICES_ENV`: that checks the distributed path
  without a GPU).
- With ``TF_CONFIG`` set (the standard variable naming the cluster and this process's
  task), a ``tf.distribute.MultiWorkerMirroredStrategy`` over every worker, each using its
  own devices as above. Only the chief (``chief`` task, else worker 0) writes the run.
- The batch: ``--batch-size`` is per replica (one replica per device and worker), so the
  global batch is ``batch_size x replicas``; the learning rate is multiplied by
  ``sqrt(replicas)`` (the square-root rule for Adam-type optimizers: Malladi et al., "On the
  SDEs and Scaling Rules for Adaptive Gradient Algorithms", NeurIPS 2022). On one device
  both are unchanged, so the recipe is the single-device one.
- ``--precision auto`` (default): ``mixed`` (float16 compute, float32 weights, Keras' loss
  scaling) on GPUs, ``float32`` elsewhere. The head and the exported model stay float32.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.errors import TrainingError

DEVICE_CHOICES = ("auto", "cpu")
PRECISIONS = ("auto", "mixed", "float32")
#: Split the CPU into this many logical devices before TensorFlow starts (a check of the
#: multi-device path on a machine without GPUs: ``EDGEREG_CPU_DEVICES=2 ... --devices 2``).
CPU_DEVICES_ENV = "EDGEREG_CPU_DEVICES"
#: How long a collective waits for a silent worker before the run stops with an error.
WORKER_TIMEOUT_S = 600.0


def parse_devices(text: str | int | None) -> str:
    """``auto``, ``cpu`` or a positive count, as a string (what config.json keeps)."""
    value = str(text if text is not None else "auto").strip().lower()
    if value in DEVICE_CHOICES:
        return value
    if value.isdigit() and int(value) >= 1:
        return str(int(value))
    raise TrainingError(f"--devices {text!r}: give auto, cpu or a number of devices (1, 2, ...)")


@dataclass
class DeviceSetup:
    """The strategy a run trains under, and this process's place in it."""

    strategy: Any  # tf.distribute.Strategy
    kind: str  # "default" | "mirrored" | "multi-worker"
    devices: list[str]  # this worker's devices
    replicas: int  # replicas in sync, over every worker
    workers: int
    worker_index: int
    is_chief: bool
    precision: str  # "mixed" | "float32"
    _vote: Any = field(default=None, repr=False)

    def describe(self) -> str:
        where = ", ".join(self.devices) or "default device"
        text = f"devices: {where} ({self.kind} strategy, {self.replicas} replica(s)"
        if self.workers > 1:
            role = "chief" if self.is_chief else "not chief"
            text += f", worker {self.worker_index} of {self.workers}, {role}"
        return text + f"), precision {self.precision}"

    def lr_scale(self) -> float:
        """Learning-rate factor for the global batch (square-root rule, 1 on one replica)."""
        return math.sqrt(self.replicas)

    def scope(self) -> Any:
        return self.strategy.scope()

    def sync_batchnorm(self, model: Any, on: bool = True) -> int:
        """BatchNorm statistics over the global batch, not each replica's share of it.

        Only matters where BatchNorm trains (from scratch; a pretrained start keeps it in
        inference mode): with it, N replicas train like one device on the same global batch.
        Turned off again before the model is saved. Returns how many layers it set.
        """
        if self.replicas <= 1:
            return 0
        import keras

        layers = [m for m in _sublayers(model) if isinstance(m, keras.layers.BatchNormalization)]
        for layer in layers:
            layer.synchronized = on
        return len(layers)

    def any_worker(self, flag: bool) -> bool:
        """True when ``flag`` is true on any worker (so every worker stops together)."""
        if self.workers <= 1:
            return flag
        import tensorflow as tf

        if self._vote is None:

            @tf.function
            def vote(value: Any) -> Any:
                per_replica = self.strategy.run(lambda: tf.identity(value))
                return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

            self._vote = vote
        return float(self._vote(tf.constant(1.0 if flag else 0.0))) > 0

    def barrier(self) -> None:
        """Every worker waits here for the others (the chief's last writes, at the end)."""
        self.any_worker(False)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Turn a lost worker (a collective that failed or timed out) into a clear error."""
        if self.workers <= 1:
            yield
            return
        import tensorflow as tf

        lost = (
            tf.errors.UnavailableError,
            tf.errors.DeadlineExceededError,
            tf.errors.CancelledError,
            tf.errors.AbortedError,
            tf.errors.InternalError,
        )
        try:
            yield
        except lost as e:
            first = str(getattr(e, "message", e)).strip().splitlines()[0][:300]
            raise TrainingError(
                f"worker {self.worker_index}: lost contact with the other workers of the "
                f"cluster in TF_CONFIG ({type(e).__name__}: {first}). A worker stopped or its "
                "host is unreachable. Start every worker again with the same command and "
                "--resume: the run continues after the last finished epoch."
            ) from None


def _sublayers(model: Any) -> list[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        out.extend(_sublayers(layer))
    return out


# --------------------------------------------------------------------------- setup
def tf_config() -> dict[str, Any] | None:
    """The parsed ``TF_CONFIG`` when it names a cluster of more than one task, else None."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        conf = json.loads(raw)
        cluster = conf["cluster"]
        task = conf["task"]
        n = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
        role, index = str(task["type"]), int(task["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise TrainingError(
            f"TF_CONFIG is not valid ({e}); it needs "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        ) from None
    if role not in cluster or index >= len(cluster[role]):
        raise TrainingError(f"TF_CONFIG: task {role}:{index} is not in its cluster {cluster}")
    return conf if n > 1 else None


def is_chief_task(conf: dict[str, Any] | None) -> bool:
    """The chief writes the run: the ``chief`` task, or worker 0 when there is none."""
    if conf is None:
        return True
    role, index = conf["task"]["type"], int(conf["task"]["index"])
    if "chief" in conf["cluster"]:
        return role == "chief"
    return role == "worker" and index == 0


def split_cpu(n: int | None = None) -> None:
    """Make ``n`` logical CPU devices (default: from :data:`CPU_DEVICES_ENV`), before TF starts."""
    if n is None:
        text = os.environ.get(CPU_DEVICES_ENV, "").strip()
        if not text:
            return
        if not text.isdigit() or int(text) < 1:
            raise TrainingError(f"{CPU_DEVICES_ENV}={text!r}: give a number of devices (1, 2, ...)")
        n = int(text)
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) == n:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError as e:  # TensorFlow already initialised its devices
        raise TrainingError(f"{CPU_DEVICES_ENV}: cannot split the CPU now ({e})") from None


def setup_devices(devices: str = "auto", precision: str = "auto") -> DeviceSetup:
    """Choose the devices and strategy, and set Keras' global precision policy."""
    import tensorflow as tf

    devices = parse_devices(devices)
    conf = tf_config()
    split_cpu()
    local = _local_devices(tf, devices)
    on_gpu = any("GPU" in d for d in local)
    prec = _precision(precision, on_gpu)
    if conf is not None:
        strategy, kind = _multi_worker(tf, on_gpu), "multi-worker"
    elif len(local) > 1:
        strategy, kind = tf.distribute.MirroredStrategy(local), "mirrored"
    else:
        strategy, kind = tf.distribute.get_strategy(), "default"
    _set_precision(prec)
    workers = (
        1 if conf is None else sum(len(conf["cluster"].get(k, [])) for k in ("chief", "worker"))
    )
    index = 0 if conf is None else _worker_index(conf)
    return DeviceSetup(
        strategy=strategy,
        kind=kind,
        devices=local,
        replicas=int(strategy.num_replicas_in_sync),
        workers=workers,
        worker_index=index,
        is_chief=is_chief_task(conf),
        precision=prec,
    )


def _local_devices(tf: Any, devices: str) -> list[str]:
    """This worker's device names for ``--devices``; hides GPUs for ``cpu``."""
    gpus = tf.config.list_physical_devices("GPU")
    if devices == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    if devices == "cpu":
        return ["/cpu:0"]
    if devices == "auto":
        return [f"/gpu:{i}" for i in range(len(gpus))] or ["/cpu:0"]
    n = int(devices)
    if gpus:
        if n > len(gpus):
            raise TrainingError(f"--devices {n}: only {len(gpus)} GPU(s) visible")
        tf.config.set_visible_devices(gpus[:n], "GPU")  # multi-worker uses what is visible
        return [f"/gpu:{i}" for i in range(n)]
    cpus = tf.config.list_logical_devices("CPU")
    if n > len(cpus):
        raise TrainingError(
            f"--devices {n}: no GPU is visible and the CPU is {len(cpus)} device(s); use "
            f"--devices auto or cpu (or {CPU_DEVICES_ENV}={n} to split the CPU, a check only)"
        )
    return [f"/cpu:{i}" for i in range(n)]


def _multi_worker(tf: Any, on_gpu: bool) -> Any:
    impl = tf.distribute.experimental.CommunicationImplementation
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=impl.NCCL if on_gpu else impl.RING,
        timeout_seconds=WORKER_TIMEOUT_S,
    )
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=options
        )
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise TrainingError(f"TF_CONFIG: cannot join the cluster ({e})") from None


def _worker_index(conf: dict[str, Any]) -> int:
    role, index = conf["task"]["type"], int(conf["task"]["index"])
    return index + (1 if role == "worker" and "chief" in conf["cluster"] else 0)


def _precision(precision: str, on_gpu: bool) -> str:
    p = str(precision or "auto").lower()
    if p not in PRECISIONS:
        raise TrainingError(f"--precision {precision!r}: give one of {', '.join(PRECISIONS)}")
    if p == "auto":
        return "mixed" if on_gpu else "float32"
    return p


def _set_precision(precision: str) -> None:
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16" if precision == "mixed" else "float32")


@contextlib.contextmanager
def float32_policy() -> Iterator[None]:
    """Build layers in float32 whatever the global policy (heads, the exported model)."""
    import keras

    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(old)
