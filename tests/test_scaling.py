"""Training that outgrows one machine: the streamed input, 2 devices, 2 workers (real TF).

The multi-device checks split the CPU into 2 logical devices (``EDGEREG_CPU_DEVICES``,
applied before TensorFlow starts, so in a subprocess); the multi-worker check starts 2
real `edgereg train` processes on 127.0.0.1 with ``TF_CONFIG``. Sizes are tiny (32 px,
alpha 0.35, weights none): a few steps each.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.spec import ModelSpec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_training import TINY, make_dataset  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
ENV.pop("TF_CONFIG", None)
CLI_TINY = ["--input-size", "32", "--weights", "none", "--alpha", "0.35"]


# --------------------------------------------------------------------------- the input path
def _value_set(tmp_path: Path, n: int = 12) -> tuple[list[Path], np.ndarray, ModelSpec]:
    from train.dataset import load_dataset

    root = make_dataset(tmp_path / "v", "value", n)
    ds = load_dataset(root, "value")
    spec = ModelSpec(task="value", input_height=32, input_width=32, value_range=(80.0, 350.0))
    return [s.path for s in ds.samples], ds.targets(), spec


def test_every_cache_gives_the_device_resize_and_the_disk_cache_leaves_nothing(tmp_path):
    from edge_runtime.images import read_image
    from edge_runtime.preprocess import resize_to_input
    from train.inputs import MEMORY_CACHE_MAX_BYTES, ImageSet, choose_cache

    paths, _, spec = _value_set(tmp_path)
    want = np.stack([resize_to_input(read_image(p), 32, 32, spec.interpolation) for p in paths])
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    for mode in ("memory", "disk", "none"):
        s = ImageSet(paths, spec, mode, tmp_dir=str(tmp))
        assert s.cache == mode
        for _ in range(2):  # the first read fills the cache, the second reads it
            assert np.array_equal(s.array(), want), mode
        got = np.concatenate(list(s.batches(5)))
        assert got.dtype == np.float32 and np.array_equal(got, want.astype(np.float32))
        assert list(tmp.iterdir()) == [], "the disk cache is unlinked when opened"
        s.close()
    assert choose_cache("auto", 1000) == "memory"
    assert choose_cache("auto", MEMORY_CACHE_MAX_BYTES + 1, str(tmp)) in ("disk", "none")
    assert choose_cache("none", 10) == "none"


def test_streamed_batches_are_the_in_memory_path_s_bytes(tmp_path):
    """Same (seed, epoch, index) rule as augment_batch: the old and new paths see one data."""
    import tensorflow as tf

    from train import tasks
    from train.augment import Augmenter, augment_batch
    from train.inputs import ImageSet, TrainStream, epoch_order

    paths, y, spec = _value_set(tmp_path)
    spec = ModelSpec(**{**spec.__dict__, "invariances": ("rot90", "hflip", "vflip")})
    images = ImageSet(paths, spec, "memory")
    encode = lambda t: tasks.get("value").training_target(spec, t)  # noqa: E731
    stream = TrainStream(images, y, encode, lambda: Augmenter(spec), seed=3)
    x_all, y_all = augment_batch(Augmenter(spec), images.array(), y, 3, epoch=1)
    order = epoch_order(3, 1, len(paths), 16)  # 12 images, padded to 2 batches of 8
    assert sorted(order[:12]) == list(range(12)) and len(order) == 16
    got = list(stream.dataset(1, 2, 8, tf.distribute.get_strategy()))
    assert len(got) == 2
    for k, (xb, yb) in enumerate(got):
        idx = order[8 * k : 8 * (k + 1)]
        assert np.array_equal(np.asarray(xb), x_all[idx].astype(np.float32))
        assert np.allclose(np.asarray(yb), encode(y_all[idx]))
    assert not np.array_equal(x_all, images.array()), "augmentation did something"
    # Each of P input pipelines takes its replicas' slice of every global batch.
    rows = [stream.replica_batches(order, 8, p, 2) for p in (0, 1)]
    assert np.array_equal(np.concatenate(rows, axis=1).reshape(-1), order)


# --------------------------------------------------------------------------- 2 devices
TWO_DEVICES = """
import json, math, sys
from pathlib import Path
from train.training import train

data, out, kw = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
rows = {}
for name, devices, batch, lr in (("one", "1", 8, 1e-3 * math.sqrt(2)), ("two", "2", 4, 1e-3)):
    run = train(data, "value", out / name, devices=devices, batch_size=batch, lr=lr,
                value_range=(80, 350), verbose=False, **kw)
    rows[name] = [r for r in (run / "history.csv").read_text().splitlines()]
    rows[name + "_config"] = json.loads((run / "config.json").read_text())
print(json.dumps(rows))
"""


@pytest.mark.slow
def test_two_logical_cpus_train_like_one_device(tmp_path):
    """MirroredStrategy over 2 devices with 4 images each = 1 device with 8, lr x sqrt(2).

    The default recipe (pretrained start: head warm-up, then fine-tuning with BatchNorm
    frozen), at 32 px. Dropout is off (its masks are drawn per replica). What is left is
    the order of floating-point sums. (From scratch, BatchNorm's synchronized statistics
    are computed as E[x^2] - E[x]^2, which on 8 values of a 1x1 map differs enough from
    the one-device two-pass variance that losses agree only to a few per cent.)
    """
    data = make_dataset(tmp_path / "v", "value", 24)
    kw = {"input_size": 32, "weights": "imagenet", "epochs": 2, "dropout": 0.0}
    env = {**ENV, "EDGEREG_CPU_DEVICES": "2"}
    r = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES, str(data), str(tmp_path), json.dumps(kw)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    assert rows["one_config"]["replicas"] == 1 and rows["two_config"]["replicas"] == 2
    hist = {k: list(csv.DictReader(rows[k])) for k in ("one", "two")}
    assert len(hist["one"]) == len(hist["two"]) == 2
    for a, b in zip(hist["one"], hist["two"], strict=True):
        for col in ("loss", "val_loss", "val_mae", "lr"):
            # Stated tolerance: 1e-3 relative (measured: about 1e-6).
            assert math.isclose(float(a[col]), float(b[col]), rel_tol=1e-3), (col, a, b)


# --------------------------------------------------------------------------- 2 workers
def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start_workers(data: Path, outs: list[Path], extra: list[str]) -> list[subprocess.Popen]:
    ports = _free_ports(len(outs))
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i, out in enumerate(outs):
        conf = {"cluster": cluster, "task": {"type": "worker", "index": i}}
        cmd = [sys.executable, "-m", "edgereg", "train", str(data), "--out", str(out), *extra]
        log = open(out.parent / f"worker{i}.log", "w")  # noqa: SIM115 (closed with the test)
        procs.append(
            subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**ENV, "TF_CONFIG": json.dumps(conf)},
            )
        )
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


@pytest.mark.slow
def test_two_workers_chief_writes_a_lost_worker_is_reported_and_resume_converts_and_runs(
    tmp_path,
):
    """2 `edgereg train` processes with TF_CONFIG on 127.0.0.1. Worker 1 is given its own
    --out: nothing may appear there. Worker 1 is killed after the first checkpoint; the
    chief says so clearly; both resume from the chief's run directory (as on a shared disk)
    and finish; the run converts and runs on the device runtime."""
    data = make_dataset(tmp_path / "v", "value", 16)
    chief_out, other_out = tmp_path / "run", tmp_path / "other" / "run"
    other_out.parent.mkdir()
    args = ["--task", "value", "--range", "80", "350", "--epochs", "3", "--batch-size", "4"]
    procs = _start_workers(data, [chief_out, other_out], [*args, *CLI_TINY])
    last = chief_out / "checkpoint" / "last.npz"
    deadline = time.monotonic() + 900
    while not last.exists() and time.monotonic() < deadline and procs[0].poll() is None:
        time.sleep(0.2)
    assert last.exists(), (tmp_path / "worker0.log").read_text()[-3000:]
    procs[1].kill()  # a worker dies in the middle of the run
    codes = _wait(procs, 900)
    log0 = (tmp_path / "worker0.log").read_text()
    assert codes[0] == 12, log0[-3000:]  # TrainingError
    assert "lost contact with the other workers" in log0 and "--resume" in log0, log0[-3000:]
    assert "Traceback" not in log0
    assert not (chief_out / "model.keras").exists()

    assert not other_out.exists(), "only the chief writes"
    procs = _start_workers(data, [chief_out, chief_out], ["--resume"])
    codes = _wait(procs, 900)
    log0 = (tmp_path / "worker0.log").read_text()
    log1 = (tmp_path / "worker1.log").read_text()
    assert codes == [0, 0], log0[-2000:] + log1[-2000:]
    assert "resuming" in log0 and "worker 1 of 2" in log1, log1[-2000:]
    assert not other_out.exists(), "only the chief writes"
    cfg = json.loads((chief_out / "config.json").read_text())
    assert cfg["status"] == "complete" and cfg["replicas"] == 2
    with open(chief_out / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]

    conv = subprocess.run(
        [sys.executable, "-m", "edgereg", "convert", str(chief_out), "--variants", "fp32"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert conv.returncode == 0, conv.stderr[-3000:]
    model = chief_out / "export" / "model_fp32.tflite"
    run = subprocess.run(
        [sys.executable, "-m", "edgereg", "run", str(model), "--source", str(data), "--json", "-"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 16
    assert all(80 <= r["result"]["value"] <= 350 for r in results), results[:2]


def test_tf_config_roles_and_errors(monkeypatch):
    from edge_runtime.errors import TrainingError
    from train.devices import is_chief_task, parse_devices, tf_config

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert tf_config() is None and is_chief_task(None)
    two = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": two, "task": {"type": "worker", "index": 1}})
    )
    assert not is_chief_task(tf_config())
    chief = {"chief": ["127.0.0.1:3"], **two}
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": chief, "task": {"type": "worker", "index": 0}})
    )
    assert not is_chief_task(tf_config())
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(TrainingError, match="TF_CONFIG is not valid"):
        tf_config()
    assert parse_devices("AUTO") == "auto" and parse_devices(2) == "2"
    with pytest.raises(TrainingError, match="--devices"):
        parse_devices("0")
    assert tempfile.gettempdir()


@pytest.mark.slow
def test_mixed_precision_trains_and_saves_a_float32_model(tmp_path):
    """--precision mixed (float16 compute; on a CPU only to prove the path): the head and
    the saved model are float32, so conversion reads what it always read."""
    import keras

    import train.models  # noqa: F401
    from train.training import train

    data = make_dataset(tmp_path / "v", "value", 16)
    try:
        out = train(
            data,
            "value",
            tmp_path / "run",
            epochs=1,
            batch_size=8,
            precision="mixed",
            value_range=(80, 350),
            verbose=False,
            **TINY,
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    policies = {layer.dtype_policy.name for layer in model.layers}
    assert policies == {"float32"}, policies
    y = np.asarray(model(np.zeros((1, 32, 32, 3), np.float32)))
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert json.loads((out / "config.json").read_text())["precision"] == "mixed"
