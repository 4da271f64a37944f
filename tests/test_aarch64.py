"""The device install on aarch64, without a Pi and without Docker.

``Dockerfile.arm`` cannot be built here (no Docker engine), so this test proves the same
install on arm64: an arm64 Debian bookworm root made from Debian's arm64 .debs, the base
package's dependencies from manylinux aarch64 wheels (no TensorFlow anywhere in it), and
the repository's ``edge_runtime/`` copied in, run under ``qemu-aarch64-static`` as a
Raspberry Pi 4 (Cortex-A72) and a Raspberry Pi 5 (Cortex-A76), each with that board's
/proc/cpuinfo (see ``tests/aarch64/build_root.py`` for how, and why no root is needed).

For each board it checks: the process is aarch64 and sees the board's CPU (not the host's);
the runtime's preprocessing of a real PNG frame gives the same int8 input bytes as on this
x86-64 host; with LiteRT's reference kernels every named tensor of the committed int8
model (and so its output) is byte-identical to this host's; the optimized (XNNPACK) path
returns a result that decodes through the embedded spec; nothing imported TensorFlow.
Emulated timings mean nothing and are not measured.

The root is cached under ``.cache/aarch64/`` keyed by a hash of the recipe: the first run
builds it (about a minute with a warm network), later runs reuse it. Needs apt-get,
dpkg-deb and qemu-user-static (``scripts/ci-system-deps.sh``). In CI (``CI=true``) a
missing tool or a failed download fails the test; on a developer machine it is skipped
with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.metadata import read_spec
from edge_runtime.tasks._coordinates import POINT_DECIMALS, PX_DECIMALS

sys.path.insert(0, str(Path(__file__).resolve().parent / "aarch64"))
import build_root  # noqa: E402

pytestmark = pytest.mark.aarch64

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "tests" / "fixtures" / "tiny_int8.tflite"
SCRIPT = REPO / "tests" / "aarch64" / "run_on_device.py"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
RUN_TIMEOUT_S = 600


def _unavailable(reason: str) -> None:
    """Fail in CI (the test must run there); skip with the reason elsewhere."""
    if IN_CI:
        pytest.fail(f"aarch64 test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def built() -> build_root.Built:
    missing = build_root.missing_tools()
    if missing:
        _unavailable(
            f"needs {', '.join(missing)} on PATH; on Debian/Ubuntu run "
            "`sudo bash scripts/ci-system-deps.sh` (installs qemu-user-static)"
        )
    try:
        return build_root.build()
    except build_root.BuildError as e:
        if e.fetch:
            _unavailable(f"could not fetch the arm64 packages or wheels: {e}")
        raise


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    """A copy of edge_runtime/, the only project code the device needs."""
    d = tmp_path_factory.mktemp("aarch64_app")
    shutil.copytree(
        REPO / "edge_runtime", d / "edge_runtime", ignore=shutil.ignore_patterns("__pycache__")
    )
    return d


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> Path:
    """A deterministic 64x48 camera-like frame (gradients and a bright disk), as PNG."""
    yy, xx = np.mgrid[0:48, 0:64]
    img = np.stack([(xx * 4) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], -1).astype(np.uint8)
    cv2.circle(img, (40, 20), 8, (255, 255, 255), -1)
    path = tmp_path_factory.mktemp("aarch64_frame") / "frame.png"
    assert cv2.imwrite(str(path), img)
    return path


def _report(cmd: list[str], env: dict[str, str], what: str) -> dict:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert p.returncode == 0, f"{what} exited {p.returncode}:\n{p.stderr[-4000:]}"
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"{what} printed no report:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def host_report(app: Path, frame: Path) -> dict:
    """The same script natively on this x86-64 host, with the same edge_runtime copy."""
    env = {**os.environ, "PYTHONPATH": str(app), "TF_CPP_MIN_LOG_LEVEL": "2"}
    rep = _report([sys.executable, str(SCRIPT), str(MODEL), str(frame)], env, "host run")
    assert rep["machine"] in ("x86_64", "AMD64"), rep["machine"]
    return rep


@pytest.mark.parametrize("site", sorted(build_root.SITES))
def test_base_install_has_no_tensorflow(built: build_root.Built, site: str) -> None:
    wheels = [w.lower() for w in built.manifest["wheel_sets"][site]]
    assert any(w.startswith("ai_edge_litert-") for w in wheels), wheels
    assert any(w.startswith("opencv_python_headless-") for w in wheels), wheels
    assert not [w for w in wheels if w.startswith(("tensorflow", "keras", "tf_keras"))]
    assert not (built.site_dir(site) / "tensorflow").exists()
    assert (built.root / "usr" / "bin" / "python3.11").is_file()


@pytest.mark.parametrize(
    ("profile", "site"),
    # site-numpy1: the pins a Pi OS venv needs next to apt's picamera2 (docs/raspberry-pi.md).
    [("pi4", "site"), ("pi5", "site"), ("pi4", "site-numpy1")],
)
def test_runtime_on_aarch64_matches_x86_reference(
    profile: str, site: str, built: build_root.Built, app: Path, frame: Path, host_report: dict
) -> None:
    prof = build_root.PROFILES[profile]
    cmd, env = build_root.qemu_command(built, profile, [str(SCRIPT), str(MODEL), str(frame)])
    env["PYTHONPATH"] = os.pathsep.join([str(app), str(built.site_dir(site))])
    dev = _report(cmd, env, f"qemu-aarch64 ({profile}, {prof.qemu_cpu}, {site})")
    host = host_report
    if site == "site-numpy1":
        assert dev["versions"]["numpy"].startswith("1.")

    # It really is arm64, seeing the board's CPU and core count, not this host's.
    assert dev["machine"] == "aarch64"
    assert dev["cpuinfo_parts"] == [prof.cpu_part] * prof.cores
    assert dev["cpuinfo_model"].startswith(f"Raspberry Pi {profile[-1]}")
    assert dev["cpu_count"] == prof.cores
    assert dev["python"].startswith("3.11.")
    assert dev["heavy_modules"] == [] and host["heavy_modules"] == []

    # The runtime's preprocessing (PNG decode, resize, quantize) is bit-identical.
    assert dev["input_dtype"] == host["input_dtype"] == "int8"
    assert dev["input_q"] == host["input_q"], "OpenCV preprocessing differs on aarch64"

    # Reference kernels: every named tensor byte-identical to x86-64, so the output too.
    for case in ("frame", "fixed"):
        d, h = dev["ref"][case], host["ref"][case]
        assert d["output_dtype"] == h["output_dtype"] == "int8"
        assert d["output"] == h["output"], f"{case}: int8 output differs from x86-64"
        differing = sorted(
            (k for k in h["tensor_sha256"] if d["tensor_sha256"].get(k) != h["tensor_sha256"][k]),
            key=int,
        )
        assert set(d["tensor_sha256"]) == set(h["tensor_sha256"])
        assert not differing, f"{case}: tensors {differing} differ from x86-64"

    # The normal (optimized) path: the result decodes through the embedded spec.
    spec = read_spec(MODEL)
    assert spec is not None and dev["spec_task"] == spec.task == "point"
    res = dev["default"]
    if (REPO / "edge_runtime" / "predictor.py").is_file():
        assert res["via"] == "edge_runtime.predictor.Predictor", res["via"]
    raw = np.asarray(res["raw"], dtype=np.float32)
    assert raw.shape == (spec.output_size,)
    points = np.asarray(res["points"], dtype=np.float32)
    np.testing.assert_array_equal(points, spec.decode_output(raw))
    assert np.isfinite(points).all() and (points >= 0).all() and (points <= 1).all()
    w, h = res["frame_size"]
    assert (w, h) == (64, 48)
    np.testing.assert_allclose(res["points_px"], points * [w, h], rtol=0, atol=1e-3)
    # Optimized int8 kernels may round differently from the reference ones, by a step or two.
    ref_float = np.asarray(dev["ref"]["frame"]["output_float"], dtype=np.float32)
    step = 1.0 / 256  # the sigmoid output's int8 scale
    assert np.abs(raw - ref_float).max() <= 2 * step + 1e-6, (raw, ref_float)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project installed the way Dockerfile.arm does it (`pip install .`, no deps).

    Only the files the Dockerfile copies go into the wheel; it is pure Python, so the host
    pip builds and installs it into a target directory put on the arm64 PYTHONPATH.
    """
    d = tmp_path_factory.mktemp("aarch64_pkg")
    src = d / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for pkg in ("edge_runtime", "edgereg", "train", "convert"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(d / "dist"), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (d / "dist").glob("edgereg-*.whl")
    target = d / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


# What the `edgereg` console script (the Dockerfile's ENTRYPOINT) does.
_CONSOLE_SCRIPT = (
    "import sys; from importlib.metadata import entry_points; "
    "ep = entry_points(group='console_scripts')['edgereg']; "
    "sys.argv[0] = 'edgereg'; sys.exit(ep.load()())"
)


def test_edgereg_run_entrypoint_on_aarch64(
    built: build_root.Built, installed: Path, tmp_path: Path
) -> None:
    """`edgereg run MODEL --source 'frames/*.png' --json -` as the arm64 image would run it."""
    frames = tmp_path / "frames"
    frames.mkdir()
    yy, xx = np.mgrid[0:48, 0:64]
    base = np.stack([(xx * 4) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], -1).astype(np.uint8)
    for i, cx in enumerate((12, 32, 52)):
        img = base.copy()
        cv2.circle(img, (cx, 24), 9, (255, 255, 255), -1)
        assert cv2.imwrite(str(frames / f"f{i}.png"), img)
    args = ["run", str(MODEL), "--source", str(frames / "*.png"), "--json", "-", "--no-status"]

    cmd, env = build_root.qemu_command(built, "pi5", ["-c", _CONSOLE_SCRIPT, *args])
    env["PYTHONPATH"] = os.pathsep.join([str(installed), str(built.site)])
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert p.returncode == 0, f"edgereg run on aarch64 exited {p.returncode}:\n{p.stderr[-4000:]}"
    dev = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]

    host_env = {**os.environ, "PYTHONPATH": str(installed), "TF_CPP_MIN_LOG_LEVEL": "2"}
    h = subprocess.run(
        [sys.executable, "-c", _CONSOLE_SCRIPT, *args],
        env=host_env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert h.returncode == 0, h.stderr[-4000:]
    host = [json.loads(ln) for ln in h.stdout.splitlines() if ln.startswith("{")]

    assert [r["frame"] for r in dev] == [0, 1, 2], p.stdout[-2000:]
    assert [Path(r["file"]).name for r in dev] == ["f0.png", "f1.png", "f2.png"]
    for d, hr in zip(dev, host, strict=True):
        res = d["result"]
        assert res["task"] == "point"
        pts = np.asarray(res["points"], dtype=np.float64)
        assert pts.shape == (1, 2) and ((pts >= 0) & (pts <= 1)).all()
        # points and points_px are rounded apart (POINT_DECIMALS, PX_DECIMALS): allow both.
        px_tol = 0.5 * 10.0**-POINT_DECIMALS * 64 + 0.5 * 10.0**-PX_DECIMALS + 1e-9
        np.testing.assert_allclose(res["points_px"], pts * [64, 48], rtol=0, atol=px_tol)
        # Same model, same frame: within two int8 output steps of the x86-64 result.
        np.testing.assert_allclose(pts, hr["result"]["points"], rtol=0, atol=2 / 256 + 1e-6)
