#!/usr/bin/env bash
# Times transformers' generate on a checkpoint folder (the peer of `cargo bench --bench generate`).
#   tools/bench_generate/run.sh --model DIR [--batch 1,8,32] [--new-tokens 32]
# Creates tools/bench_generate/.venv with the oracle's pinned versions on first use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet -r "$here/../golden/requirements.txt"
"$venv/bin/python" "$here/bench_generate.py" "$@"
