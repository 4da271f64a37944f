"""Run the output matrix's cases (tests/test_outputs_matrix.py) against another checkout.

Each case gets a fresh copy of the matrix's ``in/`` folder, runs the command with
``PYTHONPATH`` pointing at ``CHECKOUT`` (e.g. the code before a change, from
``git archive COMMIT | tar -x -C CHECKOUT``), and records its exit code and whether its
inputs changed. This is how docs/reliability.md's "before" figures were made:

    python scripts/matrix_against.py /tmp/old /tmp/matrix-old   # writes results.json

A command that runs longer than ``--timeout`` seconds is stopped ("timeout").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

import test_outputs_matrix as matrix  # noqa: E402


class _Factory:
    """What the ``world`` fixture needs from pytest's tmp_path_factory: one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def mktemp(self, name: str) -> Path:
        self.folder.mkdir(parents=True)
        return self.folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path, help="the code to run (its PYTHONPATH)")
    ap.add_argument("workdir", type=Path, help="a new folder for the worlds and results")
    ap.add_argument("--timeout", type=float, default=90.0)
    args = ap.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(args.checkout)}
    results = {}
    for i, (name, *_rest) in enumerate(matrix._cases(Path("in"))):
        top, d = matrix.world.__wrapped__(_Factory(args.workdir / f"w{i}"))
        _, cmd, _, _ = next(c for c in matrix._cases(d) if c[0] == name)
        before = matrix.snapshot(d)
        try:
            r = subprocess.run(
                [sys.executable, "-m", "edgereg", *map(str, cmd)],
                capture_output=True,
                text=True,
                cwd=top,
                env=env,
                timeout=args.timeout,
            )
            code: int | str = r.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        changed = set(matrix.snapshot(d).items()) ^ set(before.items())
        results[name] = {"exit": code, "inputs_changed": bool(changed)}
        print(f"{name}: exit {code}, inputs {'CHANGED' if changed else 'the same'}", flush=True)
    (args.workdir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    n = sum(v["inputs_changed"] for v in results.values())
    ok = sum(v["inputs_changed"] and v["exit"] == 0 for v in results.values())
    print(f"{n} of {len(results)} cases changed their inputs, {ok} of them with exit 0")


if __name__ == "__main__":
    main()
