#!/usr/bin/env bash
# Regenerates the golden files with the pinned oracle (see requirements.txt):
#   run.sh [generate] [args]  rewrites tests/fixtures/qwen25vl/ (checkpoints and references);
#   run.sh greedy             adds <fixture>/greedy.json (transformers' greedy decoding).
# Creates tools/golden/.venv on first use (torch from PyPI: a large download, CPU is all we use).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet -r "$here/requirements.txt"
script=generate.py
case "${1:-}" in
  generate) shift ;;
  greedy) script=greedy.py; shift ;;
esac
"$venv/bin/python" "$here/$script" "$@"
