#!/usr/bin/env bash
# Regenerates the golden files with the pinned oracle (see requirements.txt):
#   run.sh [generate] [args]  rewrites tests/fixtures/qwen25vl/ (checkpoints and references);
#   run.sh greedy             adds <fixture>/greedy.json (transformers' greedy decoding).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
script=generate.py
case "${1:-}" in
  generate) shift ;;
  greedy) script=greedy.py; shift ;;
esac
exec "$here/venv.sh" "$here/$script" "$@"
