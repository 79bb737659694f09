#!/usr/bin/env bash
# Times transformers' generate on a checkpoint folder (the peer of `cargo bench --bench generate`).
#   tools/bench_generate/run.sh --model DIR [--batch 1,8,32] [--new-tokens 32]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../golden/venv.sh" "$here/bench_generate.py" "$@"
