"""Time mathruler 0.1.0 (the paper's grader: PAPO-Eval space strip + last \\boxed{} +
grade_answer) on the same corpus Spotlight's `cargo bench --bench verify` uses, one core.

    python3 tools/mathruler/bench_mathruler.py [CASES.jsonl]

Installs its pinned dependencies into tools/mathruler/.venv on first use (re-executes
itself there). Cases marked "timeout" in papo_eval_correct are skipped (they hang or take
seconds in Python); the count is printed.
"""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".venv")
PY = os.path.join(VENV, "bin", "python")

if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
    if not os.path.exists(PY):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([PY, "-m", "pip", "install", "-q", "-r", os.path.join(HERE, "requirements.txt")])
    os.execv(PY, [PY, os.path.abspath(__file__)] + sys.argv[1:])

import re  # noqa: E402

from mathruler.grader import extract_boxed_content, grade_answer  # noqa: E402

default = os.path.join(HERE, "..", "..", "..", "shared", "verifier-corpus", "cases.jsonl")
path = sys.argv[1] if len(sys.argv) > 1 else default
rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
# Skip the rows the reference could not finish, and the adversarial ones whose
# PAPO regex is quadratic (they would dominate the timing).
skip = [r for r in rows if r.get("papo_eval_correct") == "timeout"]
rows = [r for r in rows if r.get("papo_eval_correct") != "timeout"]
# 9**9**9-style inputs hang mathruler: leave out anything with `**` in a box.
hang = [r for r in rows if "**" in r["response"]]
rows = [r for r in rows if "**" not in r["response"]]

def run(rows=rows):
    agree = 0
    for r in rows:
        resp = re.sub(r"\s*(<|>|/)\s*", r"\1", r["response"])
        v = grade_answer(extract_boxed_content(resp), r["ground_truth"])
        agree += v == r.get("papo_eval_correct", v)
    return agree

run()  # warm: imports, sympy caches
passes = 3
t = time.perf_counter()
for _ in range(passes):
    agree = run()
secs = time.perf_counter() - t
n = len(rows) * passes
print(f"mathruler 0.1.0 on {path}: {len(rows)} cases x {passes} passes in {secs:.3f} s = {n / secs:.0f} cases/s "
      f"(one core; skipped {len(skip)} timeout rows, {len(hang)} rows with **); agreement with papo column {agree}/{len(rows)}")

small = [r for r in rows if len(r["response"]) + len(r["ground_truth"]) < 10_000]
t = time.perf_counter()
for _ in range(passes):
    run(small)
secs = time.perf_counter() - t
print(f"mathruler 0.1.0, those under 10 kB: {len(small)} cases x {passes} passes in {secs:.3f} s = {len(small) * passes / secs:.0f} cases/s")
