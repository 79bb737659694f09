# Spotlight's tasks. `just --list` shows them.
set shell := ["bash", "-euo", "pipefail", "-c"]

# Benchmark files to evaluate on: `bundled` (the generated files in benchmarks/data),
# `hf` (the Hugging Face cache, offline), or a folder such as ../shared/benchmarks-sample.
data := "bundled"

default:
    @just --list

# The main job. Until the evaluation runner lands (issue 7) this ingests and validates all
# eight benchmarks and prints the per-benchmark table; it does NOT evaluate a model yet.
eval-all data=data:
    cargo build --release --quiet
    @echo "NOTE: the evaluation runner is not built yet: this ingests and validates the eight benchmarks, it does not evaluate a model."
    ./target/release/spotlight bench list --data {{data}}
    ./target/release/spotlight bench validate --all --data {{data}}
    @if [ "{{data}}" = "bundled" ] && [ -d ../shared/benchmarks-sample ]; then \
        echo; echo "Real sample files found in ../shared/benchmarks-sample:"; \
        ./target/release/spotlight bench validate --all --data ../shared/benchmarks-sample; \
    fi

# Format check, clippy with warnings denied, all tests.
test:
    cargo fmt --check
    cargo clippy --all-targets --locked -- -D warnings
    cargo test --locked

# Regenerate the bundled benchmark files (deterministic: same seed, same bytes).
synth:
    cargo run --release --quiet -- synth benchmarks --out benchmarks/data
    cargo run --release --quiet -- synth perception --train 0 --test 64 --out benchmarks/data/synth-perception
    rm -f benchmarks/data/synth-perception/train.parquet

# Ingest throughput on a generated 200 MB file, Rust (criterion) and pyarrow side by side.
bench-ingest:
    cargo bench --bench ingest
    python3 tools/ingest_pyarrow.py target/bench-data/large.parquet
