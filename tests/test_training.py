"""Model heads, the training recipe and `edgereg train`, on tiny real data with real Keras.

Sizes are tiny (32-48 px inputs, alpha 0.35, weights none, a few epochs) to keep the suite
fast; the accuracy bars are measured by bench/, not here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.errors import DataError, TrainingError
from edge_runtime.spec import ModelSpec

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY = {"input_size": 32, "alpha": 0.35, "weights": "none"}


# --------------------------------------------------------------------------- tiny datasets
def make_dataset(root: Path, task: str, n: int, size: int = 48, seed: int = 0, **kw) -> Path:
    """A small learnable dataset in the contract format (labels.csv + PNGs)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        img = np.full((size, size, 3), 40, np.uint8)
        name = f"img{i:03d}.png"
        if task == "point":
            x, y = rng.uniform(0.2, 0.8, 2)
            if not kw.get("identical"):
                cv2.circle(img, (int(x * size), int(y * size)), size // 10, (0, 200, 255), -1)
            rows.append([name, f"{x:.4f}", f"{y:.4f}"])
        elif task == "value":
            v = rng.uniform(80, 350)
            t = (v - 80) / 270
            img[:] = (int(255 * (1 - t)), 100, int(255 * t))  # BGR on disk
            rows.append([name, f"{v:.2f}"])
        else:
            c = i % 2
            if c:
                cv2.circle(img, (size // 2, size // 2), size // 4, (255, 255, 255), -1)
            else:
                cv2.rectangle(img, (size // 4, size // 4), (3 * size // 4, 3 * size // 4), 255, -1)
            rows.append([name, "round" if c else "square"])
        cv2.imwrite(str(root / name), img)
    header = {
        "point": ["image", "x", "y"],
        "value": ["image", "value"],
        "class": ["image", "label"],
    }
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header[task])
        w.writerows(rows)
    return root


def _spec(task: str, size: int = 32) -> ModelSpec:
    kw = {
        "point": {"num_keypoints": 1},
        "keypoints": {"num_keypoints": 4, "flip_pairs": ((0, 1), (2, 3))},
        "value": {"value_range": (80.0, 350.0)},
        "class": {"class_names": ("a", "b", "c")},
    }[task]
    return ModelSpec(task=task, input_height=size, input_width=size, **kw)


# --------------------------------------------------------------------------- heads
def test_heads_obey_the_output_contract_and_load_in_safe_mode(tmp_path: Path) -> None:
    import keras

    import train.models  # noqa: F401  (registers anything custom before loading)
    from train.models import build_model

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    x[0] = 0.0
    x[1] = 255.0  # the extremes of the raw input range
    for task in ("point", "keypoints", "value", "class"):
        spec = _spec(task)
        model = build_model(spec, alpha=0.35, weights="none")
        assert len(model.outputs) == 1
        assert model.output_shape == (None, spec.output_size)
        assert not any(type(layer).__name__ == "Lambda" for layer in model.layers)
        y = np.asarray(model(x, training=False))
        assert y.shape == (5, spec.output_size) and np.all(np.isfinite(y))
        if task == "class":
            assert np.all((y >= 0) & (y <= 1))
            np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
        else:  # linear regression output (finer int8): starts near the middle, not saturated
            assert model.get_layer("output").get_config()["activation"] == "linear"
            assert np.all(np.abs(y - 0.5) < 0.45), y
        decoded = spec.decode_output(y)
        if task == "value":
            assert np.all((decoded >= 80) & (decoded <= 350))
        # the decoder bounds what a linear head can overshoot
        far = spec.decode_output(np.full((1, spec.output_size), 1.7, np.float32))
        if task == "value":
            assert float(far[0]) == 350.0
        elif task != "class":
            assert np.all(far == 1.25)  # the frame plus the labels' margin
        path = tmp_path / f"{task}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        np.testing.assert_allclose(np.asarray(loaded(x, training=False)), y, atol=1e-5)


def test_class_and_keypoints_heads_read_a_stride_16_map() -> None:
    """A small defect must survive to the output: the class model cuts MobileNetV2 at
    stride 16 and max-pools a 1x1 detector (a global average over the last, stride-32 map
    kept the class sample data at the majority baseline)."""
    import keras

    from train.models import STRIDE16_CUT_LAYER, build_model, get_backbone

    model = build_model(_spec("class", 64), alpha=0.35, weights="none")
    bb = get_backbone(model)
    assert bb.layers[-1].name == STRIDE16_CUT_LAYER
    assert tuple(bb.output.shape[1:3]) == (4, 4)  # 64 / 16
    assert isinstance(model.get_layer("head_pool"), keras.layers.GlobalMaxPooling2D)
    # keypoints (local corners) use the same stride-16 map, flattened to keep positions
    kp = build_model(_spec("keypoints", 64), alpha=0.35, weights="none")
    assert tuple(get_backbone(kp).output.shape[1:3]) == (4, 4)
    assert isinstance(kp.get_layer("head_flatten"), keras.layers.Flatten)
    # point and value keep the whole backbone (stride 32)
    for task in ("point", "value"):
        m = build_model(_spec(task, 64), alpha=0.35, weights="none")
        assert tuple(get_backbone(m).output.shape[1:3]) == (2, 2)


# --------------------------------------------------------------------------- a short real run
def test_short_run_writes_a_complete_run_directory(tmp_path: Path) -> None:
    import keras

    import train.models  # noqa: F401
    from train.training import train

    data = make_dataset(tmp_path / "pt", "point", 24)
    out = train(data, "point", tmp_path / "run", epochs=2, batch_size=8, verbose=False, **TINY)
    for name in ("model.keras", "spec.json", "config.json", "metrics.json", "history.csv"):
        assert (out / name).stat().st_size > 0, name
    assert "mean_error_px" in (out / "summary.txt").read_text()
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert {"history.png", "pred_vs_true.png", "error_hist.png", "examples.png"} <= set(pngs)
    assert not (out / "checkpoint").exists()
    spec = ModelSpec.from_json((out / "spec.json").read_text())
    assert (spec.task, spec.input_height, spec.num_keypoints) == ("point", 32, 1)
    assert spec.backbone.startswith("mobilenet_v2")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["status"] == "complete" and cfg["task"] == "point" and cfg["seed"] == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for k in ("mean_error_px", "pck@0.05", "baseline_mean_error_px"):
        assert np.isfinite(metrics[k]), k
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(r["phase"] == "scratch" for r in rows)
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    y = np.asarray(model(np.zeros((1, 32, 32, 3), np.float32)))
    assert y.shape == (1, 2)
    # the deployable file holds the network only: no optimizer moments (2x the weights)
    with zipfile.ZipFile(out / "model.keras") as z, z.open("model.weights.h5") as f:
        import h5py

        assert "optimizer" not in h5py.File(io.BytesIO(f.read()), "r")
    # the run directory is not overwritten, and there is nothing to resume
    with pytest.raises(TrainingError, match="already holds a run"):
        train(data, "point", out, epochs=1, verbose=False, **TINY)
    with pytest.raises(TrainingError, match="already complete"):
        train(data, "point", out, resume=True, verbose=False)


def test_phases_warmup_trains_only_the_head_finetune_only_top_blocks_bn_frozen() -> None:
    """Real train steps under each phase's settings: what must not move does not move."""
    import keras

    from train.backbones import backbone_blocks
    from train.models import build_model, get_backbone
    from train.training import TrainConfig, _compile, _configure_phase, _Run

    phases = _Run(TrainConfig("d", "value", epochs=20), Path("o"), None, False)._phases(100)
    assert [(p[0], p[1], p[2]) for p in phases] == [("warmup", 0, 3), ("finetune", 3, 20)]
    assert phases[1][3] == pytest.approx(phases[0][3] * 0.3)
    scratch = _Run(TrainConfig("d", "value", epochs=4, weights="none"), Path("o"), None, False)
    assert [p[0] for p in scratch._phases(100)] == ["scratch"]

    spec = _spec("value")
    model = build_model(spec, alpha=0.35, weights="none")  # same layers as the pretrained one
    bb = get_backbone(model)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    y = rng.uniform(0, 1, (8, 1)).astype(np.float32)

    def snapshot():
        return [
            [np.array(w) for w in layer.weights] for blk in backbone_blocks(bb) for layer in blk
        ]

    def moved(before, after):
        return [
            any(not np.array_equal(u, v) for u, v in zip(a, b, strict=True))
            for a, b in zip(before, after, strict=True)
        ]

    cfg = TrainConfig("d", "value", fine_tune_blocks=2)
    _configure_phase(model, "warmup", cfg)
    _compile(model, spec, 1e-2, 10, 0, 0.0)
    head_before = np.array(model.get_layer("output").weights[0])
    before = snapshot()
    for _ in range(2):
        model.train_on_batch(x, y)
    assert not any(moved(before, snapshot())), "warm-up changed the backbone"
    assert not np.array_equal(head_before, np.array(model.get_layer("output").weights[0]))

    _configure_phase(model, "finetune", cfg)
    _compile(model, spec, 1e-2, 10, 0, 0.0)
    blocks = backbone_blocks(bb)
    sizes = [len(b) for b in blocks]
    before = snapshot()
    for _ in range(2):
        model.train_on_batch(x, y)
    after = snapshot()
    per_layer = moved(before, after)
    layers = [layer for blk in blocks for layer in blk]
    n_low = sum(sizes[:-2])
    assert not any(per_layer[:n_low]), "fine-tuning changed a block below the top 2"
    top = [(layer, m) for layer, m in zip(layers[n_low:], per_layer[n_low:], strict=True)]
    assert any(m for layer, m in top if isinstance(layer, keras.layers.Conv2D))
    for layer, m in top:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not m, (
                f"{layer.name}: BatchNorm moved in fine-tuning (must stay in inference mode)"
            )


# --------------------------------------------------------------------------- --sanity
def test_sanity_passes_on_learnable_data_and_fails_loudly_when_impossible(tmp_path: Path) -> None:
    from train.training import train

    good = make_dataset(tmp_path / "good", "point", 10, seed=1)
    out = train(good, "point", tmp_path / "s1", sanity=True, verbose=False, **TINY)
    result = json.loads((out / "sanity.json").read_text())
    assert result["ok"] and result["images"] == 8 and result["error"] <= 0.02

    # Identical images with different labels: no model can fit them. It must say so.
    bad = make_dataset(tmp_path / "bad", "point", 10, seed=2, identical=True)
    with pytest.raises(TrainingError, match="could not overfit 8 training images"):
        train(bad, "point", tmp_path / "s2", sanity=True, verbose=False, sanity_steps=75, **TINY)
    assert json.loads((tmp_path / "s2" / "sanity.json").read_text())["ok"] is False


# --------------------------------------------------------------------------- bad data
def test_bad_data_is_refused_with_the_report_and_skip_bad_passes(tmp_path: Path, run_cli) -> None:
    data = make_dataset(tmp_path / "v", "value", 12)
    with open(data / "labels.csv", "a") as f:
        f.write("missing.png,100\nextra.png,not-a-number\n")
    (data / "extra.png").write_bytes((data / "img000.png").read_bytes())
    r = run_cli("train", data, "--task", "value", "--out", tmp_path / "run", *_cli_tiny())
    assert r.returncode == DataError.exit_code, r.stderr
    assert "error:" in r.stderr and "Traceback" not in r.stderr
    assert "row 14" in r.stderr and "missing.png" in r.stderr
    assert "row 15" in r.stderr and "extra.png" in r.stderr
    assert not (tmp_path / "run" / "model.keras").exists()

    from train.training import _load_data, _Logger, _make_config

    cfg = _make_config(data, "value", {"skip_bad": True, "input_size": 32})
    loaded = _load_data(cfg, _Logger(False))
    assert loaded.n_dropped == 2
    assert len(loaded.x_train) + len(loaded.x_val) == 12


def _cli_tiny() -> list[str]:
    return ["--input-size", "32", "--alpha", "0.35", "--weights", "none", "--batch-size", "8"]


# --------------------------------------------------------------------------- kill -9, --resume
def test_kill_9_then_resume_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "v", "value", 32)
    out = tmp_path / "run"
    epochs = 5
    cmd = [sys.executable, "-m", "edgereg", "train", str(data), "--task", "value"]
    cmd += ["--out", str(out), "--epochs", str(epochs), "--range", "80", "350", *_cli_tiny()]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    history = out / "history.csv"
    done_before_kill = 0
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if history.exists():
                done_before_kill = len(history.read_text().strip().splitlines()) - 1
                if done_before_kill >= 2:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, "training ended before it could be killed"
        # The checkpoint may be one epoch ahead of history.csv (it is written first).
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "model.keras").exists()
    assert (out / "checkpoint" / "last.npz").exists()

    r = subprocess.run(
        [sys.executable, "-m", "edgereg", "train", str(data), "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    import re

    m = re.search(r"resuming .* after epoch (\d+)", r.stderr)
    assert m, r.stderr[-3000:]
    resumed_after = int(m.group(1))
    # At most one epoch lost: the resumed run starts right after the last finished epoch.
    assert resumed_after in (done_before_kill, done_before_kill + 1)
    assert f"epoch {resumed_after + 1}/{epochs}" in r.stderr
    assert f"epoch {resumed_after}/{epochs}" not in r.stderr.split("resuming")[1]
    with open(history) as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(1, epochs + 1))

    import keras

    import train.models  # noqa: F401

    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    spec = ModelSpec.from_json((out / "spec.json").read_text())
    img = cv2.cvtColor(cv2.imread(str(data / "img000.png")), cv2.COLOR_BGR2RGB)
    x = cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA)[None].astype(np.float32)
    v = float(spec.decode_output(np.asarray(model(x)))[0])
    assert 80 <= v <= 350
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["mae"]) and metrics["epochs_run"] == epochs
    assert not (out / "checkpoint").exists()
