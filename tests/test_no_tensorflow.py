"""The device side never imports TensorFlow: proven in fresh subprocesses."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "albumentations", "matplotlib", "torch")

PROBE = """
import sys, runpy
sys.argv = {argv!r}
try:
    runpy.run_module("edgereg", run_name="__main__")
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["edgereg", "--help"],
        ["edgereg", "run", "--help"],
        ["edgereg", "bench", "--help"],
        ["edgereg", "samples", "--help"],
        ["edgereg", "data", "--help"],
        ["edgereg", "train", "--help"],
        ["edgereg", "convert", "--help"],
        ["edgereg", "eval", "--help"],
        ["edgereg", "demo", "--help"],
    ],
)
def test_cli_help_imports_no_tensorflow(argv):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Usage:" in out.stdout, out.stdout + out.stderr
    heavy_line = [ln for ln in out.stderr.splitlines() if ln.startswith("HEAVY=")]
    assert heavy_line == ["HEAVY="], f"{argv} imported: {heavy_line}"


def test_edge_runtime_package_imports_no_tensorflow():
    code = (
        "import pkgutil, importlib, sys, edge_runtime\n"
        "for m in pkgutil.walk_packages(edge_runtime.__path__, 'edge_runtime.'):\n"
        "    importlib.import_module(m.name)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"edge_runtime imported {out.stdout.strip()}"


def test_edge_runtime_imports_nothing_from_train_or_convert():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "edge_runtime"
    offenders = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                if n.split(".")[0] in ("train", "convert", "edgereg", "tensorflow", "keras"):
                    offenders.append(f"{path.name}: {n}")
    assert offenders == []
