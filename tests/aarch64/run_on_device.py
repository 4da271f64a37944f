"""Run the device runtime on one model and one frame; print what happened as JSON.

The same script runs natively on the x86-64 host and, under qemu-aarch64, in the arm64
Debian root (see ``build_root.py``), so the two reports can be compared field by field.
It needs only the base install (numpy, OpenCV, ai-edge-litert) and ``edge_runtime``.

Usage: ``python run_on_device.py MODEL FRAME`` (FRAME: an image file the camera could
have written). Report fields:

* ``machine``, ``cpuinfo_parts``, ``cpuinfo_model``, ``cpu_count``: what the process sees.
* ``input_q``: the quantized model input made from FRAME by the runtime's preprocessing.
* ``ref``: reference-kernel runs (``BUILTIN_REF``, every intermediate tensor kept) on
  ``input_q`` and on a fixed pseudo-random int8 tensor: output bytes and a SHA-256 per
  tensor, so any arithmetic difference anywhere in the graph shows.
* ``default``: the normal (optimized, XNNPACK) path on FRAME and its decoded result,
  through ``edge_runtime.predictor.Predictor`` when that module exists.
* ``heavy_modules``: TensorFlow/Keras modules that got imported (must be none).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

THREADS = 4  # a Pi 4 / Pi 5 has four cores
FIXED_SEED = 1234


def _cpuinfo() -> tuple[list[str], str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return [], ""
    parts, model = [], ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "CPU part":
            parts.append(value.strip())
        elif key.strip() in ("Model", "model name") and not model:
            model = value.strip()
    return parts, model


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float input -> the input tensor's dtype with its own scale and zero point."""
    dtype = detail["dtype"]
    scale, zero = detail["quantization"]
    if dtype == np.float32 or not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def _dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if q.dtype == np.float32 or not scale:
        return q.astype(np.float32)
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32)


def _ref_run(model: str, x: np.ndarray) -> dict:
    """Reference kernels, every tensor kept: output bytes and one hash per tensor."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_path=model,
        num_threads=1,
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(inp["index"], x)
    it.invoke()
    tensors = {}
    for d in it.get_tensor_details():
        if not d["name"]:  # a kernel's scratch buffer: its contents are not defined
            continue
        try:
            value = it.get_tensor(d["index"])
        except ValueError:  # a tensor without data (e.g. an optional, absent bias)
            continue
        tensors[str(d["index"])] = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
    y = it.get_tensor(out["index"])
    return {
        "output_dtype": str(y.dtype),
        "output": y.reshape(-1).tolist(),
        "output_float": _dequantize(y, out).reshape(-1).tolist(),
        "tensor_sha256": tensors,
    }


def _default_run(model: str, frame_path: str, spec) -> dict:
    """The normal path on the frame: Predictor when it exists, else the same steps by hand."""
    from edge_runtime.images import read_image

    rgb = read_image(frame_path)
    h, w = rgb.shape[:2]
    if importlib.util.find_spec("edge_runtime.predictor") is not None:
        from edge_runtime.predictor import Predictor

        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        with Predictor.create_from_model_path(model, num_threads=THREADS) as p:
            r = p.predict(bgr)
        return {
            "via": "edge_runtime.predictor.Predictor",
            "raw": np.asarray(r.raw, dtype=np.float32).reshape(-1).tolist(),
            "points": None if r.points is None else np.asarray(r.points).tolist(),
            "points_px": None if r.points_px is None else np.asarray(r.points_px).tolist(),
            "frame_size": [w, h],
        }
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=model, num_threads=THREADS)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(inp["index"], _model_input(rgb, spec, inp))
    it.invoke()
    raw = _dequantize(it.get_tensor(out["index"]), out).reshape(-1)
    points = spec.decode_output(raw)
    return {
        "via": "ai_edge_litert.interpreter.Interpreter (no Predictor yet)",
        "raw": raw.tolist(),
        "points": points.tolist(),
        "points_px": (points * np.array([w, h], dtype=np.float32)).tolist(),
        "frame_size": [w, h],
    }


def _model_input(rgb: np.ndarray, spec, detail: dict) -> np.ndarray:
    """The runtime's preprocessing: resize with the shared function, then quantize."""
    from edge_runtime.preprocess import resize_to_input

    x = resize_to_input(rgb, spec.input_height, spec.input_width, spec.interpolation)
    if spec.color_order == "BGR":
        x = x[:, :, ::-1]
    return _quantize(x.astype(np.float32)[None], detail)


def main(argv: list[str]) -> int:
    model, frame = argv[1], argv[2]
    from ai_edge_litert.interpreter import Interpreter

    from edge_runtime.images import read_image
    from edge_runtime.metadata import read_spec

    spec = read_spec(model)
    if spec is None:
        raise SystemExit(f"{model}: no embedded spec")
    probe = Interpreter(model_path=model)
    probe.allocate_tensors()
    inp = probe.get_input_details()[0]
    x = _model_input(read_image(frame), spec, inp)
    fixed = np.random.Generator(np.random.PCG64(FIXED_SEED)).integers(
        -128, 128, size=tuple(inp["shape"]), dtype=np.int16
    )
    fixed = fixed.astype(inp["dtype"]) if inp["dtype"] == np.int8 else fixed.astype(np.float32)
    parts, model_name = _cpuinfo()
    report = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpuinfo_parts": parts,
        "cpuinfo_model": model_name,
        "spec_task": spec.task,
        "input_dtype": str(x.dtype),
        "input_q": x.reshape(-1).tolist(),
        "ref": {"frame": _ref_run(model, x), "fixed": _ref_run(model, fixed)},
        "default": _default_run(model, frame, spec),
        "versions": {
            "numpy": np.__version__,
            "cv2": __import__("cv2").__version__,
            "ai_edge_litert": _dist_version("ai-edge-litert"),
        },
    }
    report["heavy_modules"] = sorted(
        m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras")
    )
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return ""


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
