"""The systemd unit in docs/raspberry-pi.md: a unit systemd accepts, and a command line
`edgereg run` accepts."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "raspberry-pi.md"


def unit_text() -> str:
    blocks = re.findall(r"```ini\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "one systemd unit in docs/raspberry-pi.md"
    return blocks[0]


def unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read_string(unit_text())
    return cp


def test_unit_starts_at_boot_restarts_and_logs_to_the_journal():
    u = unit()
    assert u["Install"]["WantedBy"] == "multi-user.target"
    assert u["Service"]["Restart"] in ("always", "on-failure")
    for key in ("StandardOutput", "StandardError"):  # default: the journal
        assert u["Service"].get(key, "journal").startswith("journal")
    assert "network-online.target" in u["Unit"]["After"]


def test_unit_command_line_is_one_edgereg_run_accepts():
    from edgereg.cli import cli

    argv = shlex.split(unit()["Service"]["ExecStart"])
    assert Path(argv[0]).name == "edgereg" and argv[1] == "run"
    ctx = cli.make_context("edgereg", argv[1:], resilient_parsing=False)
    run = cli.get_command(ctx, "run")
    sub = run.make_context("run", argv[2:], parent=ctx)  # parses and checks every option
    assert sub.params["source"] == "0" and sub.params["status"] is False
    assert sub.params["mqtt_url"].startswith("mqtt://") and sub.params["json_out"]
    assert "password" not in " ".join(argv).lower()  # credentials stay in the env file


def test_unit_verifies_with_systemd_analyze(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze missing: scripts/ci-system-deps.sh installs systemd")
        pytest.skip("systemd-analyze not installed (apt install systemd)")
    here = Path(sys.executable).with_name("edgereg")
    exe = str(here) if here.exists() else shutil.which("edgereg") or "/bin/true"
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={exe}", unit_text(), flags=re.M)
    path = tmp_path / "edgereg.service"
    path.write_text(text)
    r = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr  # unknown keys warn here
