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

# What `eval-all` evaluates. Nothing set: the default model, a small random-weight
# Qwen2.5-VL checkpoint the project generates (deterministic) into `default_model`, with new
# tokens and image pixels capped so the run takes minutes on a laptop. `model=DIR`: a real
# checkpoint folder, embedded, at the authors' settings. `endpoint=URL served=NAME`: an
# OpenAI-compatible server (vLLM, SGLang, `spotlight serve`), e.g.
# `just eval-all endpoint=http://localhost:8000 served=Qwen/Qwen2.5-VL-7B-Instruct`.
model := ""
endpoint := ""
served := ""
default_model := "runs/default-model/tiny-random"
# Run folder; empty: runs/eval-all-<what is evaluated>. A run folder that exists is resumed.
run := ""
# Items per benchmark (empty: all); CI's smoke run uses a few.
limit := ""
k := "8"

# The main job: avg@k on the eight benchmarks (never the synthetic one), a progress bar per
# benchmark, the report in the paper's layout; prints the report's path.
eval-all data=data:
    #!/usr/bin/env bash
    set -euo pipefail
    extra=()
    [ -n "{{limit}}" ] && extra+=(--limit "{{limit}}")
    if [ -n "{{endpoint}}" ]; then
        [ -n "{{served}}" ] || { echo "endpoint= needs served=NAME (the model name the server serves)" >&2; exit 2; }
        run="{{run}}"; [ -n "$run" ] || run="runs/eval-all-$(basename "{{served}}")"
        backend=(--endpoint "{{endpoint}}" --served-model "{{served}}")
        note=""
    elif [ -n "{{model}}" ]; then
        run="{{run}}"; [ -n "$run" ] || run="runs/eval-all-$(basename "{{model}}")"
        backend=(--model "{{model}}")
        note=""
    else
        dir="{{default_model}}"
        if [ ! -f "$dir/config.json" ]; then
            echo "Generating the default model (random weights, seed 0) in $dir"
            {{spotlight}} synth model --preset tiny --seed 0 --out "$dir"
        fi
        run="{{run}}"; [ -n "$run" ] || run="runs/eval-all-default-model"
        backend=(--model "$dir")
        # a random model's answers are noise: cap the work, and say so in the report
        extra+=(--max-tokens 128 --max-pixels 12544)
        note="The evaluated model is Spotlight's default model ($dir, \`spotlight synth model --preset tiny --seed 0\`): a small Qwen2.5-VL-architecture checkpoint with RANDOM weights, not a trained model: its answers are noise, and its accuracy says nothing about any real model. New tokens are capped at 128 and images at 12544 pixels (112x112, the preset's own processor limit) to keep the run to minutes; the authors' settings are 2048 and 589824. Pass model=DIR or endpoint=URL served=NAME to evaluate a real model."
    fi
    resume=(); [ -f "$run/run.json" ] && resume=(--resume)
    {{spotlight}} eval "${backend[@]}" --bench all --k "{{k}}" --data "{{data}}" --out "$run" --note "$note" "${extra[@]}" "${resume[@]}"

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

# Token perception of a model on the bundled files, and a screenshot of its page rendered by
# headless Chromium (Debian's package, installed with apt when missing; not run in CI).
perception model="runs/default-model/tiny-random" bench="all" out="reports/perception/default-model/eight":
    {{spotlight}} perception --model "{{model}}" --bench "{{bench}}" --k 4 --limit 8 --max-tokens 64 --out "{{out}}"
    command -v chromium >/dev/null || sudo apt-get install -y chromium || apt-get install -y chromium
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,1600 \
        --screenshot="{{out}}/index.png" "file://$(realpath "{{out}}")/index.html"

# SFT of the tiny model on the synthetic perception task (recipes/sft/synth.toml), then the
# held-out avg@k with the images, with every image blacked out and with each item given another
# item's images: a model that reads the images falls to chance under both controls. Resumable
# (rerun the same command); about 30 minutes on 2 cores at the defaults.
sft-synth out="runs/sft-synth" train="6000" test="256" seed="1" k="4":
    #!/usr/bin/env bash
    set -euo pipefail
    out="{{out}}"
    start=$(date +%s)
    [ -f "$out/data/train.parquet" ] || {{spotlight}} synth perception --train "{{train}}" --test "{{test}}" --seed "{{seed}}" --out "$out/data"
    [ -f "$out/init/config.json" ] || {{spotlight}} synth model --preset tiny --seed 0 --out "$out/init"
    resume=(); [ -f "$out/sft/train_plan.json" ] && resume=(--resume)
    {{spotlight}} sft --config recipes/sft/synth.toml --init "$out/init" --data "$out/data/train.parquet" \
        --eval-data "$out/data/test.parquet" --out "$out/sft" --seed "{{seed}}" "${resume[@]}"
    for images in as-is black other-item; do
        run="$out/eval-$images"
        again=(); [ -f "$run/run.json" ] && again=(--resume)
        {{spotlight}} eval --model "$out/sft" --bench synth-perception --data "$out/data/test.parquet" \
            --k "{{k}}" --max-tokens 128 --images "$images" --seed "{{seed}}" --out "$run" --json "${again[@]}" >/dev/null
    done
    # exit 1 = a significant drop under a control, which is what a looking model shows
    rc=0; {{spotlight}} compare "$out/eval-as-is" "$out/eval-black" "$out/eval-other-item" --output "$out/compare.md" || rc=$?
    [ "$rc" -le 1 ] || exit "$rc"
    cat "$out/compare.md"
    echo "sft-synth: $(( ($(date +%s) - start) / 60 )) min; baseline: $out/eval-as-is (the model shown the images)"
