"""Times the phases of one VPPO-shaped training step in PyTorch/transformers: the Python peer of
`spotlight debug bench-step` (src/train/bench_step.rs), same checkpoint folder, same shapes.

Per step, as the Rust side: (1) the scoring pass with each row's image, with gradients (its
values, detached, are the rollout log-probs: on-policy); (2) patch-blackening (14 px, p = 0.5)
every row's image, preprocessing it and scoring without gradients; (3) TAS/TGF shaping, the
PPO loss with clip-higher and dual clip plus the entropy term, and backward; (4) AdamW. Only the
response positions go through the head, as in `Qwen25Vl::log_probs`. The objective arithmetic is
a compact version of the spec's (its cost is negligible next to the model's); the model passes
are transformers' own. Prints the median seconds of each phase over `--steps` steps after one
warm-up step.

The folder: `spotlight synth model --preset bench --out DIR` (4 layers, hidden 256).
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
from PIL import Image
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

PROMPT_TEXT = "Describe the image."  # as src/train/bench_step.rs


def blacken(img, rng, patch=14, p=0.5):
    a = np.array(img)
    h, w = a.shape[:2]
    for y in range(0, h, patch):
        for x in range(0, w, patch):
            if rng.random() < p:
                a[y : y + patch, x : x + patch] = 0
    return Image.fromarray(a)


def vppo_loss(lp, old, aug, mask, adv, clip_low=0.2, clip_high=0.28, clip_dual=3.0, rho=0.4,
              beta_min=0.9, entropy_coef=0.06):
    count = mask.sum()
    dep = (old - aug).abs() * mask  # token dependency (its cost, not the spec's exact formula)
    s = dep.sum(1) / mask.sum(1).clamp(min=1)
    scale = beta_min + (1 - beta_min) * (s - s.min()) / (s.max() - s.min() + 1e-12)
    k = max(1, int(rho * mask.shape[1]))
    thresh = dep.topk(k, dim=1).values[:, -1:]
    token_mask = (dep >= thresh).float() * mask
    a = (adv * scale)[:, None]
    log_ratio = (lp - old).clamp(-20, 20)
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1 - clip_low, 1 + clip_high)
    higher = torch.maximum(-a * ratio, -a * clipped)
    lower = torch.minimum(higher, -a * clip_dual)
    per_token = torch.where(a < 0, lower, higher) * token_mask
    pg = per_token.sum() / (count + 1e-8)
    entropy_term = -(lp * mask).sum() / (count + 1e-8)
    return pg + entropy_coef * entropy_term


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=96)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32)
    model.train()
    processor = AutoProcessor.from_pretrained(args.model)
    b, size = args.batch, args.image_size
    images = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(b)]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT_TEXT}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text] * b, images=images, return_tensors="pt")
    prompt_len = inputs["input_ids"].shape[1]
    if prompt_len >= args.seq:
        sys.exit(f"--seq {args.seq} leaves no room after the {prompt_len}-token prompt")
    resp_len = args.seq - prompt_len
    ordinary = min(processor.tokenizer.vocab_size, model.config.vocab_size)
    responses = torch.from_numpy(rng.integers(0, ordinary, (b, resp_len))).long()
    ids = torch.cat([inputs["input_ids"], responses], 1)
    attn = torch.ones_like(ids)
    grid = inputs["image_grid_thw"]
    adv = torch.from_numpy(rng.uniform(-2, 2, b)).float()
    mask = torch.ones(b, resp_len)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def log_probs(pixel_values):
        hidden = model.model(input_ids=ids, attention_mask=attn, pixel_values=pixel_values,
                             image_grid_thw=grid).last_hidden_state
        logits = model.lm_head(hidden[:, prompt_len - 1 : args.seq - 1]).float()
        return logits.log_softmax(-1).gather(-1, responses[..., None]).squeeze(-1)

    times = {k: [] for k in ("score_image", "score_perturbed", "loss_backward", "optimizer", "step")}
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        lp = log_probs(inputs["pixel_values"])
        old = lp.detach()
        t1 = time.perf_counter()
        with torch.no_grad():
            perturbed = [blacken(im, rng) for im in images]
            pv = processor.image_processor(images=perturbed, return_tensors="pt")["pixel_values"]
            aug = log_probs(pv)
        t2 = time.perf_counter()
        loss = vppo_loss(lp, old, aug, mask, adv)
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if step > 0:
            for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                times[k].append(v)
    med = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "impl": "transformers", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "batch": b, "seq": args.seq, "prompt_tokens": prompt_len, "response_tokens": resp_len,
        "image_patches": int(grid[0].prod()), "parameters": sum(p.numel() for p in model.parameters()),
        "median_seconds": med,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['parameters']} parameters, batch {b} x seq {args.seq} ({prompt_len} prompt + "
              f"{resp_len} response tokens, {report['image_patches']} patches per image), {args.steps} steps")
        print("median seconds:")
        for k, v in med.items():
            print(f"  {k:<18} {v:.4f}")


if __name__ == "__main__":
    main()
