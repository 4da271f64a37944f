"""Shared fixtures. Tests use real parts: real TensorFlow, LiteRT, OpenCV and subprocesses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def run_cli(tmp_path):
    """Run ``edgereg ARGS...`` in a real subprocess; returns CompletedProcess."""
    import subprocess

    def _run(*args: str, check: bool = False, timeout: float = 900, env: dict | None = None):
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "edgereg", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            cwd=tmp_path,
            env=full_env,
        )

    return _run
