"""The task registry is real: a toy task defined in THIS file only goes through the CLI.

``redness`` (the share of red in an image, 0..1, labels optionally in percent with its
own ``--percent`` option) is defined below on both sides of the device line and
registered as a plugin (``EDGEREG_TASKS=test_task_registry``) in real ``edgereg``
subprocesses: ``data check``, ``train`` (a few steps), ``convert`` (int8) and ``run``.
No other file of the project knows it. The module registers it only when imported as
that plugin, so the pytest process's registry stays as shipped.

A second test reads the source: outside the task modules (``edge_runtime/tasks``,
``train/tasks``) nothing branches on a task's name.
"""

from __future__ import annotations

import ast
import csv
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from edge_runtime import tasks as device_tasks
from edge_runtime.tasks.base import DeviceTask, FrameGeometry, fmt_number
from train import tasks as train_tasks
from train.tasks.base import BaselineRule, HeaderProblem, LabelColumns, TaskOption, TrainTask

REPO = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).stem


# --------------------------------------------------------------------------- the toy task
class RednessDevice(DeviceTask):
    name = "redness"
    summary = "toy: the share of red in the image (0..1)"
    order = 900

    def output_size(self, spec: Any) -> int:
        return 1

    def decode(self, spec: Any, raw: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(raw, np.float32)[..., 0], 0.0, 1.0)

    def result_fields(self, spec: Any, decoded: np.ndarray, frame: FrameGeometry) -> dict:
        return {"redness": float(np.asarray(decoded).reshape(-1)[0])}

    def prediction(self, spec: Any, result: Any) -> np.ndarray:
        return np.float32(result.outputs["redness"])

    def text(self, spec: Any, result: Any) -> str:
        return f"red {result.outputs['redness']:.2f}"

    def csv_columns(self, spec: Any) -> list[str]:
        return ["redness"]

    def csv_values(self, spec: Any, result: Any) -> list[str]:
        return [fmt_number(result.outputs["redness"])]


PERCENT = TaskOption(
    "percent", "--percent", "Labels are in percent.", is_flag=True, default=False, labels=True
)


class RednessTrain(TrainTask):
    name = "redness"
    options: ClassVar[tuple[TaskOption, ...]] = (PERCENT,)
    default_input_size = 32
    metric_keys = ("mae",)
    primary_metric = ("mae", False)

    def label_columns(self, header: list[str], opts: Any) -> LabelColumns:
        lc = [h.lower() for h in header]
        if "redness" not in lc:
            raise HeaderProblem("a redness CSV needs image,redness", "redness")
        return LabelColumns([lc.index("redness")], ["redness"], "redness")

    def make_target(self, raw, width, height, cols, opts, vocabulary):
        v = float(raw[0]) / (100.0 if opts.get("percent") else 1.0)
        if not 0.0 <= v <= 1.0:
            return None, [("redness", f"redness={v:g} is outside [0, 1] (percent? --percent)")]
        return np.asarray(v, np.float32), []

    def training_target(self, spec: Any, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, np.float32).reshape(len(y), 1)

    def build_head(self, spec: Any, features: Any, dropout: float) -> Any:
        import keras

        x = keras.layers.GlobalAveragePooling2D()(features)
        return keras.layers.Dense(1, name="output")(x)

    def compute_metrics(self, spec, y_true, y_pred, image_sizes, train_targets):
        yt, yp = np.asarray(y_true, float), np.asarray(y_pred, float)
        ref = yt if train_targets is None else np.asarray(train_targets, float)
        return {"mae": float(np.abs(yp - yt).mean())}, {
            "mae": float(np.abs(ref.mean() - yt).mean())
        }

    def baseline_rule(self, spec, metrics=None) -> BaselineRule:
        return BaselineRule("mae")

    def sanity_error(self, spec, y, pred):
        e = float(np.abs(pred - y).mean())
        return e, e < 0.05, "mean absolute error"

    def plot_pred_vs_true(self, spec, y_true, y_pred, plt):
        fig, ax = plt.subplots()
        ax.scatter(y_true, y_pred)
        return fig

    def plot_errors(self, spec, y_true, y_pred, image_sizes, ax):
        ax.hist(np.asarray(y_pred) - np.asarray(y_true))


if os.environ.get(device_tasks.PLUGINS_ENV, "") and PLUGIN in os.environ[device_tasks.PLUGINS_ENV]:
    device_tasks.register(RednessDevice())
    train_tasks.register(RednessTrain())


# --------------------------------------------------------------------------- the test
def _dataset(root: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    rows = []
    for i in range(n):
        red = float(rng.uniform(0.05, 0.95))
        img = rng.integers(0, 60, (40, 40, 3)).astype(np.float32)
        img[..., 0] += red * 190  # RGB: channel 0 is red
        name = f"img_{i:03d}.png"
        cv2.imwrite(str(root / name), cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR))
        rows.append(f"{name},{100 * red:.3f}")
    (root / "labels.csv").write_text("image,redness\n" + "\n".join(rows) + "\n")
    return root


@pytest.mark.slow
def test_a_toy_task_defined_here_goes_through_check_train_convert_and_run(tmp_path, run_cli):
    env = {
        device_tasks.PLUGINS_ENV: PLUGIN,
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    data = _dataset(tmp_path / "data", 24, 0)

    out = run_cli("--help", env=env)
    assert out.returncode == 0
    out = run_cli("train", "--help", env=env)
    assert "redness" in out.stdout and "--percent" in out.stdout, out.stdout

    out = run_cli("data", "check", data, "--task", "redness", env=env)
    assert out.returncode == 1 and "outside [0, 1] (percent? --percent)" in out.stdout
    out = run_cli("data", "check", data, "--task", "redness", "--percent", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    out = run_cli("data", "check", data, "--task", "point", "--percent", env=env)
    assert out.returncode == 2 and "--percent applies to --task redness only" in out.stderr

    run = tmp_path / "run"
    out = run_cli(
        "train", data, "--task", "redness", "--percent", "--out", run, "--epochs", "2",
        "--weights", "none", "--alpha", "0.35", "--batch-size", "8", "-q", env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    spec = json.loads((run / "spec.json").read_text())
    assert spec["task"] == "redness" and spec["input_height"] == 32
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["options"] == {"percent": True}

    out = run_cli("convert", run, "--variants", "int8", "--calib", "8", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    model = run / "export" / "model_int8.tflite"

    jsonl, table = tmp_path / "r.jsonl", tmp_path / "r.csv"
    out = run_cli(
        "run", model, "--source", str(data / "*.png"), "--json", jsonl, "--csv", table,
        "--no-status", env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert len(lines) == 24
    for rec in lines:
        r = rec["result"]
        assert r["task"] == "redness" and 0.0 <= r["redness"] <= 1.0
    rows = list(csv.reader(table.open()))
    assert rows[0][-1] == "redness" and len(rows) == 25

    # without the plugin, the device refuses the model by naming the tasks it knows
    out = run_cli("run", model, "--source", str(data / "*.png"), "--json", jsonl)
    assert out.returncode == 6 and "'redness' is not one of" in out.stderr


# --------------------------------------------------------------------------- no branches
#: Source outside the task modules that may name a task. Keep it short and say why.
ALLOWED: dict[str, str] = {}
SCANNED = ("edge_runtime", "train", "convert", "edgereg", "bench")


def _task_names() -> set[str]:
    return set(device_tasks.names())


def _literal_names(node: ast.AST, names: set[str]) -> set[str]:
    if isinstance(node, ast.Constant) and node.value in names:
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in names}
    return set()


def _branches(path: Path, names: set[str]) -> list[str]:
    """Comparisons of something called *task* with a task name, and dicts keyed by names."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            text = ast.unparse(node)
            hit = set().union(*(_literal_names(s, names) for s in sides))
            if hit and "task" in text.lower():
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {text}")
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if len(keys & names) >= 2:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: dict keyed by task names")
    return found


def test_nothing_outside_the_task_modules_branches_on_a_task_name():
    names = _task_names()
    assert {"point", "keypoints", "value", "class", "angle"} <= names
    found = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith(("edge_runtime/tasks/", "train/tasks/")) or rel in ALLOWED:
                continue
            found += _branches(path, names)
    assert found == []


def test_the_branch_finder_finds_branches(tmp_path):
    """The scan above could fail: it flags each kind of branch it looks for."""
    src = tmp_path / "x.py"
    src.write_text(
        "if spec.task == 'value':\n    pass\n"
        "ok = task in ('point', 'keypoints')\n"
        "SIZES = {'point': 1, 'class': 2}\n"
        "fine = mode == 'value'\n"
    )
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        found = _branches(src, _task_names())
    finally:
        REPO = saved
    assert len(found) == 3
