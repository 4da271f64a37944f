"""Reliability and security posture, through real ``edgereg`` subprocesses.

- An exit-code matrix: every bad file a user can hand us gives its documented exit code,
  a message naming the file, and no traceback.
- Out of disk space (a real RLIMIT_FSIZE in the child) while ``edgereg convert`` writes:
  OutputError (exit 8), earlier artifacts byte-for-byte intact, no temp files left.
- kill -9 + ``--resume`` ends as good as an uninterrupted run (within noise).
- Nothing listens on a network port; no shell strings; safe mode and no unpickling
  (source greps); the Docker image runs as a non-root user.

Faults tested elsewhere are listed in docs/reliability.md.
"""

from __future__ import annotations

import csv
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from subproc import ENV, edgereg

from edge_runtime.metadata import SPEC_METADATA_NAME, embed_spec, read_metadata

REPO = Path(__file__).resolve().parents[1]


def assert_clean_error(r: subprocess.CompletedProcess, code: int, *names: str) -> None:
    """The documented exit code, a message naming the file(s), no traceback."""
    assert r.returncode == code, f"exit {r.returncode}, want {code}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "error:" in r.stderr, r.stderr[-3000:]
    for name in names:
        assert name in r.stderr, f"{name!r} not named in:\n{r.stderr[-3000:]}"


def write_point_data(root: Path, n: int = 6, size: int = 40, rows: list | None = None) -> Path:
    """A tiny point dataset in the contract format (labels.csv + PNGs)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = np.full((size, size, 3), 40, np.uint8)
        x, y = rng.uniform(0.2, 0.8, 2)
        cv2.circle(img, (int(x * size), int(y * size)), 4, (0, 200, 255), -1)
        cv2.imwrite(str(root / f"im{i}.png"), img)
        out.append([f"im{i}.png", f"{x:.4f}", f"{y:.4f}"])
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x", "y"])
        w.writerows(out + (rows or []))
    return root


# --------------------------------------------------------------------------- bad models
@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """One real conversion, then every kind of bad model file, each in its own folder."""
    from models import build_keras, convert, make_spec

    d = tmp_path_factory.mktemp("bad")
    spec = make_spec("point", 32)
    bare = convert(build_keras(spec), spec, "fp32", embed=False)
    good = embed_spec(bare, spec)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        p = d / name / f"{name}.tflite"
        p.parent.mkdir()
        p.write_bytes(data)
        files[name] = p

    put("good", good)
    put("truncated", good[: len(good) // 2])
    put("text", b"this is a text file, not a model\n" * 20)
    put("nospec", bare)
    # a 48x48 spec on a 32x32 model; a keypoints spec (6 outputs) on a model with 2
    put("disagree_input", embed_spec(bare, make_spec("point", 48)))
    put("disagree_output", embed_spec(bare, make_spec("keypoints", 32)))
    # the embedded JSON edited in place: same length, invalid task name
    raw = read_metadata(good)[SPEC_METADATA_NAME]
    assert b'"task": "point"' in raw
    put("malformed", good.replace(raw, raw.replace(b'"task": "point"', b'"task": "pXint"')))
    # the same flatbuffer with the spec JSON cut into invalid JSON
    put("badjson", good.replace(raw, b"{" * len(raw)))
    data = write_point_data(d / "data")
    return d, files, data


MODEL_CASES = {
    # name: (exit code, words the message must contain)
    "truncated": (5, []),
    "text": (5, ["not a TFLite model"]),
    "nospec": (6, ["spec"]),
    "disagree_input": (6, ["spec"]),
    "disagree_output": (6, ["spec"]),
    "malformed": (6, ["pXint"]),
    "badjson": (6, ["spec"]),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
@pytest.mark.parametrize("command", ["run", "bench", "eval"])
def test_bad_model_files_exit_codes(bad, command, case, tmp_path):
    d, files, data = bad
    model = files[case]
    if command == "run":
        r = edgereg("run", model, "--source", data / "im0.png", "--json", "-", cwd=tmp_path)
    elif command == "bench":
        r = edgereg("bench", model, "--frames", "2", "--warmup", "0", "--no-startup", cwd=tmp_path)
    else:
        r = edgereg("eval", model, data, cwd=tmp_path)
    code, words = MODEL_CASES[case]
    assert_clean_error(r, code, model.name, *words)


def test_good_model_is_accepted_by_the_same_commands(bad, tmp_path):
    """The matrix's control: the unbroken model passes run and bench."""
    d, files, data = bad
    r = edgereg("run", files["good"], "--source", data / "im0.png", "--json", "-", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.splitlines()[0])["result"]["task"] == "point"
    r = edgereg("bench", files["good"], "--frames", "2", "--no-startup", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]


def test_keras_file_with_lambda_is_refused_and_its_code_never_runs(bad, tmp_path):
    import keras
    from models import make_spec

    d, _, data = bad
    marker = tmp_path / "lambda_ran"
    inp = keras.Input((32, 32, 3))
    # the lambda would create the marker file if Keras ever deserialized and ran it
    code = f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]"
    x = keras.layers.Lambda(eval(code))(inp)  # noqa: S307  (test builds a hostile file)
    out = keras.layers.Dense(2, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    model_dir = tmp_path / "evil"
    model_dir.mkdir()
    path = model_dir / "evil.keras"
    keras.Model(inp, out).save(path)
    (model_dir / "spec.json").write_text(make_spec("point", 32).to_json())
    marker.unlink(missing_ok=True)  # building the model ran it once, here
    r = edgereg("eval", path, data, cwd=tmp_path)
    assert_clean_error(r, 5, "evil.keras", "Lambda", "safe mode")
    assert not marker.exists(), "the Lambda's code ran"


# --------------------------------------------------------------------------- bad data
def test_dataset_problems_and_paths_escaping_data_dir(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    cv2.imwrite(str(outside / "secret.png"), np.zeros((40, 40, 3), np.uint8))
    data = tmp_path / "data"
    data.mkdir()
    (data / "link.png").symlink_to(outside / "secret.png")
    cv2.imwrite(str(data / "extra.png"), np.zeros((40, 40, 3), np.uint8))
    rows = [
        ["../outside/secret.png", "0.5", "0.5"],  # line 8
        [str(outside / "secret.png"), "0.5", "0.5"],  # line 9: absolute
        ["link.png", "0.5", "0.5"],  # line 10: symlink out
        ["missing.png", "0.5", "0.5"],  # line 11
        ["extra.png", "1.7", "0.5"],  # line 12: x out of range
    ]
    write_point_data(data, rows=rows)
    r = edgereg("data", "check", data, "--task", "point", cwd=tmp_path)
    assert_clean_error_report(r, 1)
    for line in (8, 9, 10):
        assert re.search(rf"row {line}, .*(outside the dataset folder|absolute path)", r.stdout), (
            line,
            r.stdout + r.stderr,
        )
    assert re.search(r"row 11, file missing.png.*not found", r.stdout), r.stdout
    assert re.search(r"row 12, .*1.7", r.stdout), r.stdout

    r = edgereg("train", data, "--task", "point", "--out", tmp_path / "run", cwd=tmp_path)
    assert_clean_error(r, 3, "labels.csv")
    assert "outside the dataset folder" in r.stderr
    assert not (tmp_path / "run" / "model.keras").exists()


def assert_clean_error_report(r: subprocess.CompletedProcess, code: int) -> None:
    """``data check`` prints a report (not an error line) and exits 1 on problems."""
    assert r.returncode == code, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert "labels.csv" in r.stdout + r.stderr


# --------------------------------------------------------------------------- weights, sources
class _Payload:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_hostile_pth_is_refused_and_nothing_runs(tmp_path):
    import pickle

    data = write_point_data(tmp_path / "data")
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(_Payload(os.system, (f"touch {marker}",)), protocol=2))
    r = edgereg(
        "train", data, "--task", "point", "--out", tmp_path / "run", "--weights", evil,
        cwd=tmp_path,
    )  # fmt: skip
    assert_clean_error(r, 7, "evil.pth", "refused")
    assert not marker.exists()


def test_camera_that_cannot_open_is_exit_11(bad, tmp_path):
    _, files, _ = bad
    r = edgereg("run", files["good"], "--source", "57", "--no-reconnect", cwd=tmp_path)
    assert_clean_error(r, 11, "57")


# --------------------------------------------------------------------------- disk full
def _fsize_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_disk_full_during_convert_is_exit_8_and_earlier_artifacts_stay(tmp_path):
    from test_convert import make_run

    run = make_run(tmp_path, n=8, n_val=2)
    r = edgereg("convert", run, "--variants", "fp32", "--no-verify", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    export = run / "export"
    before = {p.name: p.read_bytes() for p in export.iterdir() if p.is_file()}
    assert "model_fp32.tflite" in before
    limit = len(before["model_fp32.tflite"]) // 2  # the new model cannot be written whole
    r = edgereg(
        "convert", run, "--variants", "fp32", "--no-verify", cwd=tmp_path,
        preexec_fn=_fsize_limit(limit),
    )  # fmt: skip
    after = {p.name: p.read_bytes() for p in export.iterdir() if p.is_file()}
    assert after == before, "an earlier artifact changed or a temp file was left"
    # Known bug (reported): the SavedModel export into a temp dir hits the limit first and
    # TensorFlow's OutOfRangeError ("File too large") escapes as a traceback, exit 1.
    assert_clean_error(r, 8)
    assert str(run) in r.stderr or "export" in r.stderr, r.stderr[-2000:]


@pytest.mark.slow
def test_disk_full_during_train_is_exit_8_and_earlier_files_stay(tmp_path):
    """RLIMIT_FSIZE below the size of a checkpoint: the first checkpoint cannot be written."""
    from test_training import _cli_tiny, make_dataset

    data = make_dataset(tmp_path / "v", "value", 16)
    run = tmp_path / "run"
    r = edgereg(
        "train", data, "--task", "value", "--out", run, "--epochs", "2", "--range", "80", "350",
        *_cli_tiny(), "-q", cwd=tmp_path, timeout=900, preexec_fn=_fsize_limit(300_000),
    )  # fmt: skip
    assert_clean_error(r, 8, str(run))
    # what was written before the failure is whole, and no temp file is left behind
    assert json.loads((run / "config.json").read_text())["task"] == "value"
    assert json.loads((run / "spec.json").read_text())["task"] == "value"
    assert not (run / "model.keras").exists()
    leftovers = [p.name for p in run.rglob("*") if p.is_file()]
    # (.lock and .edgereg, the run folder's ownership marker, are the run's own)
    ours = (".lock", ".edgereg")
    assert sorted(n for n in leftovers if n not in ours) == ["config.json", "spec.json"], leftovers


def test_disk_full_during_run_video_output_is_exit_8_and_earlier_video_stays(bad, tmp_path):
    _, files, _ = bad
    video = tmp_path / "in.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(30):  # noisy frames: MJPG cannot squeeze them below the limit
        vw.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    vw.release()
    out = tmp_path / "out.avi"
    r = edgereg("run", files["good"], "--source", video, "--video", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    earlier = out.read_bytes()
    r = edgereg(
        "run", files["good"], "--source", video, "--video", out, "--json", tmp_path / "o.jsonl",
        cwd=tmp_path, preexec_fn=_fsize_limit(len(earlier) // 3),
    )  # fmt: skip
    assert_clean_error(r, 8, "out.avi")
    assert out.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == ["out.avi"]


# --------------------------------------------------------------------------- resume quality
@pytest.mark.slow
def test_kill_9_and_resume_ends_as_good_as_an_uninterrupted_run(tmp_path):
    """Same data, seed and epochs: killed after epoch 2 of 6 and resumed vs never killed."""
    from test_training import _cli_tiny, make_dataset

    data = make_dataset(tmp_path / "v", "value", 48)
    args = ["--task", "value", "--epochs", "6", "--range", "80", "350", *_cli_tiny(), "-q"]
    full, res = tmp_path / "full", tmp_path / "resumed"
    r = edgereg("train", data, "--out", full, *args, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]

    cmd = [sys.executable, "-m", "edgereg", "train", str(data), "--out", str(res), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and proc.poll() is None:
            hist = res / "history.csv"
            if hist.exists() and len(hist.read_text().strip().splitlines()) - 1 >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "training ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    r = edgereg("train", data, "--out", res, "--resume", cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    m_full = json.loads((full / "metrics.json").read_text())
    m_res = json.loads((res / "metrics.json").read_text())
    print(
        f"uninterrupted mae {m_full['mae']:.2f} (baseline {m_full['baseline_mae']:.2f}), "
        f"killed+resumed mae {m_res['mae']:.2f} (baseline {m_res['baseline_mae']:.2f})"
    )
    # noise: within 5 % of the 270-unit range, and both beat the trivial predictor alike
    assert abs(m_res["mae"] - m_full["mae"]) <= 0.05 * 270, (m_full, m_res)
    assert (m_res["mae"] < m_res["baseline_mae"]) == (m_full["mae"] < m_full["baseline_mae"])


# --------------------------------------------------------------------------- security
def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _inet_inodes() -> dict[str, str]:
    """inode -> 'table local_address state' for every TCP/UDP/raw socket on the machine."""
    out = {}
    for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        p = Path("/proc/net") / table
        if not p.exists():
            continue
        for line in p.read_text().splitlines()[1:]:
            f = line.split()
            out[f[9]] = f"{table} {f[1]} state={f[3]}"
    return out


def test_run_opens_no_network_socket(bad, tmp_path):
    from models import make_spec  # noqa: F401  (same helpers as the other tests)

    _, files, _ = bad
    video = tmp_path / "loop.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20, (64, 48))
    for i in range(10):
        vw.write(np.full((48, 64, 3), i * 20, np.uint8))
    vw.release()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgereg", "run", str(files["good"]), "--source", str(video)]
        + ["--loop", "--json", str(tmp_path / "out.jsonl"), "--no-status"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
        cwd=tmp_path,
    )
    seen: dict[str, str] = {}
    checks = 0
    try:
        deadline = time.monotonic() + 120
        out = tmp_path / "out.jsonl"
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.stat().st_size > 2000:  # frames are flowing
                inet = _inet_inodes()
                for ino in _socket_inodes(proc.pid):
                    if ino in inet:
                        seen[ino] = inet[ino]
                checks += 1
                if checks >= 20:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert checks >= 20
    assert seen == {}, f"edgereg run holds network sockets: {seen}"


SOURCE_DIRS = ("edge_runtime", "edgereg", "train", "convert", "bench")


def _sources() -> list[Path]:
    files = [p for d in SOURCE_DIRS for p in (REPO / d).rglob("*.py")]
    assert len(files) > 30
    return files


def _grep(pattern: str) -> list[str]:
    rx = re.compile(pattern)
    hits = []
    for p in _sources():
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if rx.search(line):
                hits.append(f"{p.relative_to(REPO)}:{i}: {line.strip()}")
    return hits


def test_no_shell_strings_in_subprocesses():
    assert _grep(r"shell\s*=\s*True|os\.system\(|os\.popen\(|commands\.getoutput") == []


def test_keras_is_never_loaded_with_safe_mode_off():
    assert _grep(r"safe_mode\s*=\s*False|enable_unsafe_deserialization") == []
    # every load_model call passes safe_mode=True explicitly (arguments may span lines)
    calls = []
    for p in _sources():
        text = p.read_text(encoding="utf-8")
        for m in re.finditer(r"load_model\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            calls.append((p.relative_to(REPO), text[m.end() : i - 1]))
    assert calls and all(re.search(r"safe_mode\s*=\s*True", args) for _, args in calls), calls


def test_no_unpickling_outside_the_restricted_unpickler():
    hits = _grep(r"pickle\.loads?\(|allow_pickle\s*=\s*True|torch\.load\(|\bUnpickler\b|dill\.")
    hits += _grep(r"marshal\.loads?\(|yaml\.load\(|yaml\.unsafe_load")
    # the one allowed place: train/weights.py's _SafeUnpickler (allow-list of globals)
    assert hits and all(h.startswith("train/weights.py:") for h in hits), hits
    assert all("Unpickler" in h for h in hits), hits


def test_docker_image_runs_as_a_non_root_user():
    lines = (REPO / "Dockerfile.arm").read_text().splitlines()
    users = [ln.split()[1] for ln in lines if ln.strip().upper().startswith("USER ")]
    assert users, "Dockerfile.arm has no USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_disk_full_during_run_json_lines_is_exit_8(bad, tmp_path):
    """JSON lines are a stream (docs/runtime.md): disk full stops the run with exit 8."""
    _, files, _ = bad
    video = tmp_path / "in.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20, (64, 48))
    for i in range(30):
        vw.write(np.full((48, 64, 3), i * 8, np.uint8))
    vw.release()
    out = tmp_path / "o.jsonl"
    r = edgereg("run", files["good"], "--source", video, "--json", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    full = out.read_text().splitlines()
    assert len(full) == 30
    limit = len(out.read_bytes()) // 3
    r = edgereg(
        "run", files["good"], "--source", video, "--json", out, cwd=tmp_path,
        preexec_fn=_fsize_limit(limit),
    )  # fmt: skip
    assert_clean_error(r, 8, "o.jsonl")
    data = out.read_bytes()
    # the line cut by the full disk is dropped: the file holds only whole lines, in order
    assert len(data) <= limit and data.endswith(b"\n")
    frames = [json.loads(line)["frame"] for line in data.decode().splitlines()]
    assert frames == list(range(len(frames))) and 0 < len(frames) < 30
