"""The real ``edgereg`` command in a subprocess: the one helper the CLI tests share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: This checkout first on the path; TensorFlow's C++ logging off (tests read stderr).
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


def edgereg(*args: object, cwd: Path, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """``edgereg ARGS...`` run to its end in ``cwd``; its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "edgereg", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=ENV,
        **kw,
    )
