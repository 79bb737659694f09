# Spotlight's tasks. `just --list` shows them.
set shell := ["bash", "-euo", "pipefail", "-c"]

# Benchmark files to evaluate on: `bundled` (the generated files in benchmarks/data),
# `hf` (the Hugging Face cache, offline), or a folder such as ../shared/benchmarks-sample.
data := "bundled"

default:
    @just --list

# Cargo profile of the binary the recipes run (CI's smoke run uses `dev`, whose
# dependencies are optimised too, to avoid a second full build).
profile := "release"
spotlight := "cargo run --quiet --profile " + profile + " --"

# An OpenAI-compatible endpoint (vLLM, SGLang) and its served model name, to evaluate a
# real model: `just eval-all endpoint=http://localhost:8000 served=Qwen/Qwen2.5-VL-7B-Instruct`.
endpoint := ""
served := ""
run := "runs/eval-all"

# With `endpoint=` this evaluates the served model on all eight benchmarks (avg@8, the
# authors' settings) and writes reports/<run>.md. Without it — until the embedded model can
# sample (issue 5) — it ingests and validates the eight benchmarks and prints the table.
# The main job: evaluate on the eight benchmarks (see above for what runs without a model).
eval-all data=data:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -n "{{endpoint}}" ]; then
        resume=""; [ -f "{{run}}/run.json" ] && resume="--resume"
        {{spotlight}} eval --endpoint "{{endpoint}}" --served-model "{{served}}" --bench all --k 8 --data "{{data}}" --out "{{run}}" $resume
        exit 0
    fi
    echo "NOTE: no model is evaluated (the embedded sampling backend is not built yet; pass endpoint=URL served=NAME for a served model): this ingests and validates the eight benchmarks."
    {{spotlight}} bench list --data "{{data}}"
    {{spotlight}} bench validate --all --data "{{data}}"
    if [ "{{data}}" = "bundled" ] && [ -d ../shared/benchmarks-sample ]; then
        echo; echo "Real sample files found in ../shared/benchmarks-sample:"
        {{spotlight}} bench validate --all --data ../shared/benchmarks-sample
    fi

# Format check, clippy with warnings denied, all tests.
test:
    cargo fmt --check
    cargo clippy --all-targets --locked -- -D warnings
    cargo test --locked

# Regenerate the bundled benchmark files (deterministic: same seed, same bytes).
synth:
    {{spotlight}} synth benchmarks --out benchmarks/data
    {{spotlight}} synth perception --train 0 --test 64 --out benchmarks/data/synth-perception
    rm -f benchmarks/data/synth-perception/train.parquet

# Ingest throughput on a generated 200 MB file, Rust (criterion) and pyarrow side by side.
bench-ingest:
    cargo bench --bench ingest
    python3 tools/ingest_pyarrow.py "${CARGO_TARGET_DIR:-target}/bench-data/large.parquet"
