#!/usr/bin/env bash
# Spotlight's `debug bench-step` and the PyTorch peer on the same folder, alternated in one run;
# prints each phase's median and the ratio. Build first: cargo build --release.
#   tools/bench_step/compare.sh --model DIR [--rounds 3] [--steps 5] [--extra --reference-ops]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../golden/venv.sh" "$here/compare.py" "$@"
