#!/usr/bin/env bash
# Runs a Python script with the pinned oracle (tools/golden/requirements.txt) in
# tools/golden/.venv, created on first use (torch from PyPI: a large download; CPU is all we use).
#   tools/golden/venv.sh SCRIPT.py [args]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet -r "$here/requirements.txt"
exec "$venv/bin/python" "$@"
