"""Times transformers' `generate` on a checkpoint folder: the Python peer of
`cargo bench --bench generate` (benches/generate.rs), same folder, same shapes.

One chat prompt with a 64x64 image, `batch` copies sampled together (do_sample, temperature 1,
top-p 1, top-k off), exactly `new_tokens` new tokens each (EOS ignored). Prints one JSON line per
batch size with the median seconds of `repeats` runs and tokens/s.
"""

import argparse
import json
import os
import statistics
import time

import torch
from PIL import Image, ImageDraw
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration


def image64():
    """The same drawing as benches/generate.rs makes."""
    im = Image.new("RGB", (64, 64), (240, 240, 240))
    d = ImageDraw.Draw(im)
    d.rectangle([8, 8, 30, 40], fill=(200, 30, 30))
    d.ellipse([34, 20, 60, 50], fill=(30, 30, 200))
    return im


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", default="1,8,32")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    for batch in [int(b) for b in args.batch.split(",")]:
        inputs = processor(text=[text] * batch, images=[image64()] * batch, return_tensors="pt")
        times = []
        for r in range(args.repeats + 1):
            torch.manual_seed(r)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = model.generate(
                    **inputs, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                    max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                )
            dt = time.perf_counter() - t0
            assert out.shape[1] - inputs["input_ids"].shape[1] == args.new_tokens
            if r > 0:  # the first run warms up
                times.append(dt)
        med = statistics.median(times)
        print(json.dumps({"impl": "transformers", "batch": batch, "new_tokens": args.new_tokens,
                          "median_s": med, "tokens_per_s": batch * args.new_tokens / med}))


if __name__ == "__main__":
    main()
