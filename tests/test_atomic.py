from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from edge_runtime.atomic import atomic_path, atomic_write_json, atomic_write_text
from edge_runtime.errors import OutputError


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": 1})
    atomic_write_json(p, {"x": 2})
    assert p.read_text().strip().endswith("}") and '"x": 2' in p.read_text()
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]


def test_artifacts_get_the_usual_mode_not_0600(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "r.txt", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_failure_inside_keeps_old_file(tmp_path):
    p = tmp_path / "m.txt"
    atomic_write_text(p, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["m.txt"]


def test_disk_full_is_a_clear_error_and_keeps_old_file(tmp_path):
    """A real file-size limit (RLIMIT_FSIZE) in a subprocess stands in for a full disk."""
    p = tmp_path / "big.bin"
    atomic_write_text(p, "old")
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        "from edge_runtime.atomic import atomic_write_bytes\n"
        "from edge_runtime.errors import OutputError\n"
        "try:\n"
        f"    atomic_write_bytes({str(p)!r}, b'x' * 100000)\n"
        "except OutputError as e:\n"
        "    print('OUTPUTERROR', e); sys.exit(8)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 8, out.stdout + out.stderr
    assert "big.bin" in out.stdout and "previous file" in out.stdout
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["big.bin"]
    assert resource.getrlimit(resource.RLIMIT_FSIZE)  # the limit applied only to the child


def test_unwritable_dir_is_output_error(tmp_path):
    target = tmp_path / "file_not_dir"
    target.write_text("")
    with pytest.raises(OutputError, match="file_not_dir"):
        atomic_write_text(target / "x.txt", "y")
