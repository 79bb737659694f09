#!/usr/bin/env python3
"""Golden cases for `spotlight debug tas-layout` (tests/fixtures/tas_layout/cases.jsonl).

Two independent sources, neither of them Spotlight:
- the length balancing is verl's own `get_seqlen_balanced_partitions`, loaded from the pinned
  verl wheel (verl==0.9.1 on PyPI, sha256 below). Its Karmarkar-Karp code is the same,
  statement for statement, as the copy in VPPO-RL's `verl/utils/seqlen_balancing.py` (checked
  by AST comparison, docstrings and type hints aside). Only `seqlen_balancing.py` is loaded,
  with its torch / DataProto imports stubbed: the two functions used touch neither.
- the TAS scales are a transcription (our own code, written from reading it) of VPPO-RL's
  `verl/workers/actor/dp_actor.py::update_policy`: per-worker mini-batches by `split`, the
  score range over the worker's mini-batch (quantile 0 and 1, no all-reduce), `mu` per
  micro-batch, in float64 instead of the reference's float32.
The data path around them follows VPPO-RL's `ray_trainer.py::_balance_batch` (reorder by the
concatenated partitions, then equal contiguous chunks per worker).

Usage: python3 tools/golden/tas_layout.py [OUT.jsonl]   (stdlib only; downloads the wheel once)
"""
import hashlib
import importlib.util
import json
import os
import random
import subprocess
import sys
import types
import zipfile

VERL_VERSION = "0.9.1"
VERL_WHEEL = f"verl-{VERL_VERSION}-py3-none-any.whl"
VERL_SHA256 = "db6e6f2a8d9d5808d9ec32d357a42319fdc6967df688ff9d9810050f49bfdd14"
HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, ".cache")
ROOT = os.path.dirname(os.path.dirname(HERE))


def load_verl_balancing():
    wheel = os.path.join(CACHE, VERL_WHEEL)
    if not os.path.exists(wheel):
        os.makedirs(CACHE, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"verl=={VERL_VERSION}", "--no-deps",
             "-q", "-d", CACHE],
            check=True,
        )
    digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
    if digest != VERL_SHA256:
        sys.exit(f"{wheel}: sha256 {digest}, expected {VERL_SHA256}")
    source = zipfile.ZipFile(wheel).read("verl/utils/seqlen_balancing.py").decode()
    # Stubs for the module's imports; the balancing functions use none of them.
    for name in ["torch", "torch.distributed", "verl", "verl.protocol", "verl.utils",
                 "verl.utils.tensordict_utils", "verl.utils.device"]:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["torch"].distributed = sys.modules["torch.distributed"]
    sys.modules["torch"].Tensor = object
    sys.modules["verl.protocol"].DataProto = object
    sys.modules["verl.utils"].tensordict_utils = sys.modules["verl.utils.tensordict_utils"]
    sys.modules["verl.utils.device"].get_device_name = lambda: "cpu"
    spec = importlib.util.spec_from_loader("verl_seqlen_balancing", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{VERL_WHEEL}/verl/utils/seqlen_balancing.py", "exec"), module.__dict__)
    return module.get_seqlen_balanced_partitions


def split(rows, size):
    """torch / DataProto `split(size)`: contiguous chunks, the last one shorter."""
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def reference_case(inputs, balanced_partitions):
    n = len(inputs["groups"])
    w = inputs["world_size"]
    g = n // len({json.dumps(x) for x in inputs["groups"]})
    seqlens = [p + r for p, r in zip(inputs["prompt_lengths"], inputs["response_lengths"])]
    # ray_trainer._balance_batch: reorder by the partitions, then DataProto.chunk(world_size).
    if inputs["balance"]:
        order = [j for part in balanced_partitions(seqlens, k_partitions=w, equal_size=True)
                 for j in part]
    else:
        order = list(range(n))
    assert n % w == 0
    workers = split(order, n // w)
    per_device = inputs["global_batch_size"] * g // w
    micro_size = inputs["micro_batch_size_per_device"]
    beta_min = inputs["beta_min"]
    dep = inputs["token_dependency"]
    lengths = inputs["response_lengths"]
    score = [sum(dep[i]) / max(1, lengths[i]) for i in range(n)]
    device, mini_batch, micro_batch, scale = [0] * n, [0] * n, [0] * n, [1.0] * n
    for d, rows in enumerate(workers):
        # dp_actor.update_policy: mini_batches = data.split(global_batch_size_per_device)
        for k, mini in enumerate(split(rows, per_device)):
            valid = [score[i] for i in mini if lengths[i] > 0]
            lo = hi = None
            if len(valid) > 1:
                lo, hi = min(valid), max(valid)  # torch.quantile(valid, 0.0) / (valid, 1.0)
            for m, micro in enumerate(split(mini, micro_size)):
                for i in micro:
                    device[i], mini_batch[i], micro_batch[i] = d, k, m
                if lo is None or not (hi - lo) > 1e-6:
                    continue
                valid_micro = [i for i in micro if lengths[i] > 0]
                if not valid_micro:
                    continue
                normalized = [min(max((score[i] - lo) / (hi - lo), 0.0), 1.0) for i in valid_micro]
                mu = sum(normalized) / len(normalized)
                target_max = beta_min + (1.0 - beta_min) / (mu + 1e-8)
                for i, x in zip(valid_micro, normalized):
                    scale[i] = beta_min + x * (target_max - beta_min)
    return {"device": device, "mini_batch": mini_batch, "micro_batch": micro_batch,
            "advantage_scale": scale}


def make_inputs(rng, prompts, g, world_size, global_batch_size, micro, *, balance=True,
                prompt_len=(200, 1200), response_len=(1, 40), dependency=None, beta_min=0.9,
                digits=4):
    """Rows prompt-major (a prompt's G responses adjacent), as the rollout delivers them.
    `dependency(p)` gives the (low, high) range of S for prompt p."""
    groups, prompt_lengths, response_lengths, token_dependency = [], [], [], []
    for p in range(prompts):
        plen = rng.randint(*prompt_len)
        lo, hi = dependency(p) if dependency else (0.0, rng.choice([0.3, 1.0, 3.0]))
        for _ in range(g):
            rlen = rng.randint(*response_len)
            groups.append(f"q{p}")
            prompt_lengths.append(plen)
            response_lengths.append(rlen)
            token_dependency.append([round(rng.uniform(lo, hi), digits) for _ in range(rlen)])
    return {"world_size": world_size, "global_batch_size": global_batch_size,
            "micro_batch_size_per_device": micro, "beta_min": beta_min, "balance": balance,
            "groups": groups, "prompt_lengths": prompt_lengths,
            "response_lengths": response_lengths, "token_dependency": token_dependency}


def cases():
    rng = random.Random(20251009)
    yield "small-w2", make_inputs(rng, 4, 4, 2, 2, 2)
    yield "small-w2-unbalanced", make_inputs(rng, 4, 4, 2, 2, 2, balance=False)
    yield "world1", make_inputs(rng, 3, 4, 1, 3, 12)
    # Equal prompt lengths and two response lengths: the balancing decides between ties.
    yield "ties", make_inputs(rng, 8, 4, 4, 4, 2, prompt_len=(500, 500), response_len=(3, 4))
    yield "ties-w8", make_inputs(rng, 16, 8, 8, 8, 4, prompt_len=(64, 64), response_len=(2, 3))
    # Two kinds of prompt: even ones depend on the image (S in [0.5, 2]), odd ones barely
    # (S in [0, 0.1]); in mixed micro-batches TAS moves weight to the even ones.
    yield "two-kinds", make_inputs(rng, 16, 8, 4, 8, 8,
                                   dependency=lambda p: (0.5, 2.0) if p % 2 == 0 else (0.0, 0.1))
    # Empty responses (scale 1), and beta_min 0.8 as in the reference's config default.
    inputs = make_inputs(rng, 4, 4, 2, 4, 4, response_len=(0, 3), beta_min=0.8)
    yield "empty-responses", inputs
    # Every trajectory has the same dependency: the range is below 1e-6, every scale is 1.
    flat = make_inputs(rng, 4, 4, 2, 2, 4, dependency=lambda p: (0.25, 0.25))
    yield "flat", flat
    # The published 7B shape: 384 prompts x 8, 8 workers, mini-batch 128 prompts, micro 16.
    yield "published-7b", make_inputs(rng, 384, 8, 8, 128, 16, prompt_len=(300, 1500),
                                      response_len=(1, 12), digits=3)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, "tests/fixtures/tas_layout/cases.jsonl")
    balanced_partitions = load_verl_balancing()
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        for case_id, inputs in cases():
            expected = {"id": case_id, **reference_case(inputs, balanced_partitions)}
            f.write(json.dumps({"id": case_id, "inputs": inputs, "expected": expected},
                               separators=(",", ":")) + "\n")
    os.replace(out + ".tmp", out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
