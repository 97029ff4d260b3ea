#!/usr/bin/env bash
# Install tricks (editable) with the given extras, e.g. `scripts/setup.sh dev`.
# torch: keep a torch that is already installed (e.g. a CUDA build); otherwise take the CPU
# build torch==2.13.0 (an unpinned torch would pull a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
EXTRAS="${1:-all}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[${EXTRAS}]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
