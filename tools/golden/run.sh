#!/usr/bin/env bash
# Regenerates tests/fixtures/qwen25vl/ with the pinned oracle (see requirements.txt).
# Creates tools/golden/.venv on first use (torch from PyPI: a large download, CPU is all we use).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet -r "$here/requirements.txt"
"$venv/bin/python" "$here/generate.py" "$@"
