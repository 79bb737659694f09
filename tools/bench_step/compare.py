"""Runs `spotlight debug bench-step` and the PyTorch peer (bench_step.py) on the same folder,
alternately, several rounds, and prints each phase's median over the rounds and the ratio
Spotlight / PyTorch. Alternating in one run keeps both under the same machine load (absolute
times on shared machines drift; the ratio is the number to report).

    tools/bench_step/compare.sh --model DIR [--rounds 3] [--steps 5] [--spotlight PATH]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PHASES = {
    # spotlight key -> transformers key
    "score_image": "score_image",
    "score_perturbed": "score_perturbed",
    "loss_backward": "loss_backward",
    "optimizer": "optimizer",
    "step": "step",
}


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--spotlight", default=os.path.join(HERE, "..", "..", "target", "release", "spotlight"))
    ap.add_argument("--extra", default="", help="more flags for bench-step, e.g. --reference-ops")
    args = ap.parse_args()
    ours, theirs = [], []
    report = None
    for _ in range(args.rounds):
        report = run_json([args.spotlight, "debug", "bench-step", "--model", args.model,
                           "--steps", str(args.steps), "--json", *args.extra.split()])
        ours.append(report["median_seconds"])
        theirs.append(run_json([sys.executable, os.path.join(HERE, "bench_step.py"), "--model",
                                args.model, "--steps", str(args.steps), "--json"])["median_seconds"])
    flops = report["flops_per_step"]
    print(f"{args.rounds} rounds x {args.steps} steps, fused kernels: {report['fused_kernels']}")
    print(f"{'phase':<16} {'spotlight s':>12} {'pytorch s':>10} {'ratio':>7}")
    for ours_key, their_key in PHASES.items():
        a = statistics.median(r[ours_key] for r in ours)
        b = statistics.median(r[their_key] for r in theirs)
        print(f"{ours_key:<16} {a:>12.3f} {b:>10.3f} {a / b:>7.2f}")
    a = statistics.median(r["step"] for r in ours)
    b = statistics.median(r["step"] for r in theirs)
    print(f"model GFLOP/s per step: spotlight {flops / a / 1e9:.1f}, pytorch {flops / b / 1e9:.1f}")


if __name__ == "__main__":
    main()
