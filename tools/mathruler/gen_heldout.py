"""Generate held-out verifier cases written for Spotlight (not from any dataset) and label
them with the paper's grader (PAPO-Eval space strip + mathruler 0.1.0). Output JSONL:
id, response, ground_truth, papo_eval_correct. Run with the venv from bench_mathruler.sh.

    python gen_heldout.py OUT.jsonl [N] [SEED]
"""
import json
import random
import re
import signal
import sys

from mathruler.grader import extract_boxed_content, grade_answer

out_path = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 11)


def frac(a, b, style):
    return {0: f"\\frac{{{a}}}{{{b}}}", 1: f"\\dfrac{{{a}}}{{{b}}}", 2: f"{a}/{b}", 3: f"\\tfrac{a}{b}" if a < 10 and b < 10 else f"\\frac{{{a}}}{{{b}}}"}[style]


def num():
    return rng.choice([rng.randint(-20, 200), rng.randint(1, 9) * 1000 + rng.randint(0, 999)])


def pair():
    k = rng.randrange(20)
    a, b = rng.randint(1, 12), rng.randint(2, 12)
    if k == 0:
        x = num()
        return str(x), rng.choice([str(x), f"{x}.0", f"{x:,}", str(x + rng.choice([0, 1])), f"{x}\\%", f"\\text{{{x}}}"])
    if k == 1:
        return frac(a, b, rng.randrange(4)), rng.choice([frac(a, b, rng.randrange(4)), frac(2 * a, 2 * b, 0), str(round(a / b, rng.choice([2, 3, 6]))), f"{a/b}", f"{a}/{b}"])
    if k == 2:
        c = rng.choice([2, 3, 5, 6, 7])
        return f"{a}\\sqrt{{{c}}}", rng.choice([f"{a}\\sqrt{{{c}}}", f"\\sqrt{{{a*a*c}}}", f"{a}\\sqrt{c}", f"{a} \\cdot \\sqrt{{{c}}}", f"\\sqrt{{{c}}} \\times {a}", f"{round(a * c ** 0.5, 3)}", f"{a+1}\\sqrt{{{c}}}"])
    if k == 3:
        return f"\\frac{{{a}\\pi}}{{{b}}}", rng.choice([f"\\frac{{{a}\\pi}}{{{b}}}", f"\\frac{{{a}}}{{{b}}}\\pi", f"{a}\\pi/{b}", f"\\frac{{\\pi {a}}}{{{b}}}", f"{round(a*3.14159/b,3)}", f"\\frac{{{a}\\pi}}{{{b+1}}}"])
    if k == 4:
        l, r = rng.choice("([") , rng.choice(")]")
        lo, hi = -a, b
        g = f"{l}{lo}, {hi}{r}"
        return g, rng.choice([g, f"\\left{l} {lo},{hi} \\right{r}", f"({lo}, {hi})", f"[{lo}, {hi}]", f"{l}{lo}, {hi+1}{r}", f"{l}{hi}, {lo}{r}", f"{l}{lo}, \\infty)", f"(-\\infty, {hi}{r}"])
    if k == 5:
        g = f"({a}, {b})"
        return g, rng.choice([g, f"({b}, {a})", f"\\left( {a}, {b} \\right)", f"{a}, {b}", f"(x, y) = ({a}, {b})", f"({a},{b},0)"])
    if k == 6:
        return f"{a*10}^\\circ", rng.choice([f"{a*10}^\\circ", f"{a*10}", f"{a*10} degrees", f"{a*10}^{{\\circ}}", f"{a*10+5}^\\circ"])
    if k == 7:
        u = rng.choice(["cm", "meters", "inches", "hours", "days", "\\text{ cm}", "\\mbox{ cm}", "\\text{cm}^2", "feet", "dollars"])
        return str(a * b), rng.choice([f"{a*b} {u}", f"{a*b}{u}", f"\\${a*b}", f"{a*b}\\ {u}", f"{a*b+1} {u}"])
    if k == 8:
        w = rng.choice(["Yes", "no", "even", "\\text{odd}", "Monday", "blue", "triangle", "A", "C", "(B)", "None"])
        return w, rng.choice([w, w.lower(), w.upper(), f"\\text{{{w}}}", f"\\textbf{{{w}}}", "D", f"{w}."])
    if k == 9:
        v = rng.choice("xyzabn")
        e1 = f"{a}{v}^2 + {b}{v} - {a+b}"
        return e1, rng.choice([e1, f"{b}{v} + {a}{v}^2 - {a+b}", f"{a}{v}^2+{b}{v}-{a+b+1}", f"({v}-1)({a}{v}+{a+b})", f"{v}({a}{v}+{b}) - {a+b}"])
    if k == 10:
        return f"{a}.{b}", rng.choice([f"{a}.{b}", f"{a}.{b}0", f"{a}.{b+1}", f"{a}.{b}\\%", f"\\frac{{{a*10+b if b<10 else a}}}{{10}}"])
    if k == 11:
        return f"\\{{{a}, {b}\\}}", rng.choice([f"\\{{{a}, {b}\\}}", f"{a}, {b}", f"{b}, {a}", f"{a} \\text{{ and }} {b}", f"{a} and {b}", f"\\{{{b}, {a}\\}}"])
    if k == 12:
        return f"{a}\\frac{{1}}{{{b}}}", rng.choice([f"{a}\\frac{{1}}{{{b}}}", f"{a} \\frac{{1}}{{{b}}}", f"\\frac{{{a*b+1}}}{{{b}}}", f"{a} 1/{b}", f"{a+1/b}"])
    if k == 13:
        return f"{a}\\%", rng.choice([f"{a}\\%", f"{a}", f"{a}%", f"{a/100}", f"{a} percent"])
    if k == 14:
        return f"\\frac{{\\sqrt{{{a}}}}}{{{b}}}", rng.choice([f"\\frac{{\\sqrt{{{a}}}}}{{{b}}}", f"\\frac{{1}}{{{b}}}\\sqrt{{{a}}}", f"\\sqrt{{{a}}}/{b}", f"\\frac{{\\sqrt{{{a*4}}}}}{{{2*b}}}", f"\\frac{{{a}}}{{{b}\\sqrt{{{a}}}}}"])
    if k == 15:
        return f"{a}^{b % 4 + 1}", rng.choice([f"{a**(b%4+1)}", f"{a}^{b % 4 + 1}", f"{a}^{{{b % 4 + 1}}}", f"{a}**{b % 4 + 1}"])
    if k == 16:
        return f"y = {a}x + {b}", rng.choice([f"y = {a}x + {b}", f"y={a}x+{b}", f"{a}x + {b}", f"y = {b} + {a}x"])
    if k == 17:
        return f"x = {a}", rng.choice([f"x = {a}", f"{a}", f"x={a}", f"a = {a}", f"x = {a+1}"])
    if k == 18:
        return f"{a} \\text{{ or }} -{a}", rng.choice([f"\\pm {a}", f"{a}, -{a}", f"-{a}, {a}", f"{a} \\text{{ or }} -{a}", f"{a} or -{a}"])
    return f"\\begin{{pmatrix}} {a} \\\\ {b} \\end{{pmatrix}}", rng.choice([f"\\begin{{pmatrix}} {a} \\\\ {b} \\end{{pmatrix}}", f"\\begin{{pmatrix}}{a}\\\\{b}\\end{{pmatrix}}", f"({a}, {b})", f"\\begin{{bmatrix}} {a} \\\\ {b} \\end{{bmatrix}}"])


def wrap(ans):
    k = rng.randrange(6)
    if k == 0:
        return f"So the final answer is $\\boxed{{{ans}}}$."
    if k == 1:
        return f"<think>Let me compute. a / b < c and d > e.</think> The answer is \\boxed{{{ans}}}"
    if k == 2:
        return f"We get \\boxed{{0}} first, then correct it: \\boxed{{{ans}}}."
    if k == 3:
        return f"The answer is {ans}."
    if k == 4:
        return f"\\[ \\boxed{{ {ans} }} \\]"
    return f"Thus $x = \\boxed{{{ans}}}$"


class Timeout(Exception):
    pass


def alarm(*_):
    raise Timeout()


signal.signal(signal.SIGALRM, alarm)
seen = set()
with open(out_path, "w") as f:
    i = 0
    while i < n:
        gt, ans = pair()
        resp = wrap(ans)
        if (resp, gt) in seen:
            continue
        seen.add((resp, gt))
        signal.alarm(5)
        try:
            papo = grade_answer(extract_boxed_content(re.sub(r"\s*(<|>|/)\s*", r"\1", resp)), gt)
        except Timeout:
            continue
        finally:
            signal.alarm(0)
        i += 1
        f.write(json.dumps({"id": f"sh{i:05d}", "response": resp, "ground_truth": gt, "papo_eval_correct": bool(papo)}) + "\n")
