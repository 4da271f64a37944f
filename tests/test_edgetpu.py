"""Edge TPU analysis on REAL converted files, and the compiler invocation/log parsing.

The real ``edgetpu_compiler`` is x86-64 Linux only and not installable here, so the
compiler tests put a STAND-IN script named ``edgetpu_compiler`` on PATH. It records its
argument list, prints a log in the real compiler's format (as printed by version 16 with
``--show_operations``) and writes the output file; it is a test double, not the compiler.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from convert.edgetpu import analyse, compile_model, parse_compiler_log
from edge_runtime.metadata import read_spec
from edge_runtime.spec import ModelSpec

pytestmark = pytest.mark.slow
SIZE = 32
SPEC = ModelSpec(task="point", input_height=SIZE, input_width=SIZE, num_keypoints=1)


def _convert(model, variant: str, io: str) -> bytes:
    from convert.export import (
        VARIANTS,
        ConvertContext,
        convert_variant,
        export_saved_model,
        static_batch_model,
    )
    from convert.quantize import pin_input_range, representative_dataset

    rng = np.random.default_rng(0)
    imgs = rng.uniform(0, 255, (8, SIZE, SIZE, 3)).astype(np.float32)
    pin_input_range(imgs)
    ctx = ConvertContext(SPEC, io, representative_dataset(imgs))
    with tempfile.TemporaryDirectory() as d:
        export_saved_model(static_batch_model(model, SPEC), Path(d) / "sm")
        return convert_variant(Path(d) / "sm", VARIANTS[variant], ctx)


def _mobilenetv2_like():
    """Inverted residual blocks with ReLU6, like MobileNetV2: all Edge TPU ops."""
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((SIZE, SIZE, 3))
    x = L.Rescaling(1 / 127.5, -1)(inp)
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    y = L.Conv2D(16, 1, activation="relu6")(x)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
    y = L.Conv2D(8, 1)(y)
    x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(2, activation="sigmoid")(x))


def _mobilenetv3small():
    """A real Keras MobileNetV3Small (non-minimalistic: hard-swish), random weights."""
    import keras

    inp = keras.Input((SIZE, SIZE, 3))
    base = keras.applications.MobileNetV3Small(
        input_shape=(SIZE, SIZE, 3), include_top=False, weights=None, minimalistic=False
    )
    x = keras.layers.GlobalAveragePooling2D()(base(inp))
    return keras.Model(inp, keras.layers.Dense(2, activation="sigmoid")(x))


@pytest.fixture(scope="module")
def compatible() -> bytes:
    return _convert(_mobilenetv2_like(), "int8", "uint8")


def test_compatible_int8_model(compatible):
    a = analyse(compatible)
    assert a.compatible, a.summary()
    assert a.first_cpu_op is None and not a.float_tensors and not a.dynamic_tensors
    assert a.ops_on_tpu == len(a.ops) and a.ops_on_cpu == 0
    names = {o.name for o in a.ops}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"} <= names


def test_float_io_int8_has_only_boundary_ops_on_cpu():
    data = _convert(_mobilenetv2_like(), "int8", "float")
    a = analyse(data)
    assert [b.split()[1] for b in a.boundary_ops] == ["QUANTIZE", "DEQUANTIZE"]
    assert a.compatible
    assert any("--io uint8" in s for s in a.suggestions)


def test_mobilenetv3_hard_swish_is_first_cpu_op():
    a = analyse(_convert(_mobilenetv3small(), "int8", "uint8"))
    assert not a.compatible
    assert a.first_cpu_op is not None and a.first_cpu_op.name == "HARD_SWISH"
    assert "HARD_SWISH" in a.unsupported_ops
    # everything from the first CPU op on runs on the CPU
    assert a.ops_on_cpu == len(a.ops) - a.first_cpu_op.index
    assert a.ops_on_tpu < 10
    assert any("minimalistic MobileNetV3" in s and "MobileNetV2" in s for s in a.suggestions)
    assert "HARD_SWISH" in a.summary()


def test_float_model_lists_float_tensors():
    a = analyse(_convert(_mobilenetv2_like(), "fp32", "float"))
    assert not a.compatible
    assert a.float_tensors and all(t == "FLOAT32" for _, t in a.float_tensors)
    assert a.first_cpu_op is not None and a.first_cpu_op.index == 0
    assert any("full-integer" in s for s in a.suggestions)


# --------------------------------------------------------------------------- compiler
_LOG = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 245 ms.

Input model: {inp}
Input size: 11.20KiB
Output model: {out}
Output size: 64.46KiB
On-chip memory used for caching model parameters: 9.75KiB
On-chip memory remaining for caching model parameters: 7.95MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 9
Operation log: {log}

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 7
Number of operations that will run on CPU: 2

Operator                       Count      Status

CONV_2D                        3          Mapped to Edge TPU
DEPTHWISE_CONV_2D              1          Mapped to Edge TPU
ADD                            1          Mapped to Edge TPU
MEAN                           1          Mapped to Edge TPU
FULLY_CONNECTED                1          Mapped to Edge TPU
LOGISTIC                       1          Operation is otherwise supported, but not mapped due to some unspecified limitation
HARD_SWISH                     1          Operation not supported
Compilation child process completed within timeout period.
Compilation succeeded!
"""


@pytest.fixture
def stand_in_compiler(tmp_path, monkeypatch):
    """A STAND-IN `edgetpu_compiler` on PATH (the real one cannot be installed here)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "argv.json"
    script = bindir / "edgetpu_compiler"
    script.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            f"""
            # STAND-IN for Coral's edgetpu_compiler: records argv, prints a real-format log.
            import json, os, shutil, sys
            args = sys.argv[1:]
            json.dump(sys.argv, open({str(record)!r}, "w"))
            out_dir = args[args.index("--out_dir") + 1]
            src = args[-1]
            stem = os.path.splitext(os.path.basename(src))[0]
            out = os.path.join(out_dir, stem + "_edgetpu.tflite")
            log = os.path.join(out_dir, stem + "_edgetpu.log")
            shutil.copyfile(src, out)
            text = {_LOG!r}.format(inp=src, out=out, log=log)
            open(log, "w").write("Edge TPU Compiler version 16.0.384591198\\n")
            print(text)
            """
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_parse_compiler_log():
    log = parse_compiler_log(_LOG.format(inp="a.tflite", out="a_edgetpu.tflite", log="a.log"))
    assert log["compiler_version"] == "16.0.384591198"
    assert log["on_chip_memory_used"] == "9.75KiB"
    assert log["on_chip_memory_used_bytes"] == int(9.75 * 1024)
    assert log["off_chip_memory_used_bytes"] == 0
    assert log["ops_on_tpu"] == 7 and log["ops_on_cpu"] == 2 and log["total_ops"] == 9
    ops = {r["operator"]: r for r in log["operations"]}
    assert ops["CONV_2D"]["count"] == 3 and ops["CONV_2D"]["on_tpu"]
    assert not ops["LOGISTIC"]["on_tpu"] and "unspecified limitation" in ops["LOGISTIC"]["status"]
    assert ops["HARD_SWISH"]["status"] == "Operation not supported"


def test_compile_with_stand_in(compatible, stand_in_compiler, tmp_path):
    from edge_runtime.metadata import embed_spec

    # a directory name a shell would mangle: the argument list must pass it untouched
    odd = tmp_path / "my run; echo pwned"
    odd.mkdir()
    src = odd / "model_int8.tflite"
    src.write_bytes(embed_spec(compatible, SPEC))
    res = compile_model(src, odd)
    assert res.ran
    argv = json.loads(stand_in_compiler.read_text())
    assert argv[1] == "--out_dir" and "--show_operations" in argv
    assert argv[-1] == str(src)
    assert res.output == odd / "model_int8_edgetpu.tflite" and res.output.is_file()
    assert read_spec(res.output) == SPEC
    assert res.log["ops_on_tpu"] == 7 and res.log["on_chip_memory_used"] == "9.75KiB"
    assert (odd / "model_int8_edgetpu.log").is_file()
    assert not (tmp_path / "pwned").exists()


def test_missing_compiler(monkeypatch, tmp_path, compatible):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    src = tmp_path / "model_int8.tflite"
    src.write_bytes(compatible)
    res = compile_model(src, tmp_path)
    assert not res.ran
    assert "not on PATH" in res.message and "x86-64" in res.message
    assert "apt" in res.message and "edgetpu-compiler" in res.message
    assert not (tmp_path / "model_int8_edgetpu.tflite").exists()


def test_cli_edgetpu_with_and_without_compiler(tmp_path, run_cli, stand_in_compiler):
    from test_convert import make_run

    run = make_run(tmp_path, n=8, n_val=2)
    env_path = os.environ["PATH"]
    r = run_cli(
        "convert",
        run,
        "--variants",
        "int8",
        "--io",
        "uint8",
        "--calib",
        "8",
        "--edgetpu",
        "--no-verify",
        env={"PATH": env_path},
    )
    assert r.returncode == 0, r.stderr
    assert "can map to the TPU" in r.stderr
    rep = json.loads((run / "export" / "report.json").read_text())
    assert rep["edgetpu"]["analysis"]["compatible"]
    assert rep["edgetpu"]["compiler"]["log"]["ops_on_tpu"] == 7
    assert (run / "export" / "model_int8_edgetpu.tflite").is_file()
    assert "model_int8_edgetpu.tflite" in (run / "export" / "report.md").read_text()

    # without the compiler: says so and how to install, still writes the analysis
    (run / "export" / "model_int8_edgetpu.tflite").unlink()
    no_compiler = os.pathsep.join(
        p for p in env_path.split(os.pathsep) if not (Path(p) / "edgetpu_compiler").exists()
    )
    r = run_cli(
        "convert",
        run,
        "--variants",
        "int8",
        "--io",
        "uint8",
        "--calib",
        "8",
        "--edgetpu",
        "--no-verify",
        env={"PATH": no_compiler},
    )
    assert r.returncode == 0, r.stderr
    assert "edgetpu_compiler is not on PATH" in r.stderr and "apt" in r.stderr
    rep = json.loads((run / "export" / "report.json").read_text())
    assert rep["edgetpu"]["compiler"]["ran"] is False
    assert rep["edgetpu"]["analysis"]["compatible"] is True
    assert not (run / "export" / "model_int8_edgetpu.tflite").exists()
