#!/usr/bin/env bash
# Times the phases of one VPPO-shaped step in PyTorch/transformers on a checkpoint folder: the
# peer of `spotlight debug bench-step` (same folder, same shapes). Uses the pinned venv of
# tools/golden (created on first use).
#   tools/bench_step/run.sh --model DIR [--batch 32] [--seq 96] [--steps 5] [--json]
#   (DIR: e.g. spotlight synth model --preset bench --out DIR)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../golden/venv.sh" "$here/bench_step.py" "$@"
