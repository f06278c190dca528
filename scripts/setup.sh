#!/usr/bin/env bash
# Create .venv (if missing) and install spectral_peft with everything the studies and tests need.
#
#   bash scripts/setup.sh            # studies + tests + notebooks (the "dev" extra)
#   PYTHON=python3.11 bash scripts/setup.sh
#
# torch is pinned to 2.13.0 first: on these machines that CPU wheel is already on disk and
# installs in seconds, and the project's range (torch>=2.2) is then satisfied without pulling a
# multi-GB CUDA build. Re-running is cheap: pip only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
echo "spectral_peft environment ready in $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
