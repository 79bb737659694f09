"""Greedy decoding by transformers on the fixture checkpoints: the reference for
`spotlight::model::Qwen25Vl::generate` at temperature 0 (tests/model_generate.rs).

Reads the fixture folders and cases.json that generate.py wrote (it does not change them) and
writes <fixture>/greedy.json: per case, the prompt ids, transformers' greedy tokens and, per step,
the gap between the two largest raw logits. Random weights make near-ties; the Rust test compares
tokens up to the first step whose gap is under 1e-3 (where f32 rounding may legitimately pick the
other token) and records where that was.
"""

import json
import os
import sys

import torch
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "qwen25vl")
FIXTURES = ["tiny", "tied", "sharded", "odd"]
MAX_NEW_TOKENS = 24


def main():
    torch.manual_seed(0)
    # `--only NAME[,NAME]` writes those fixtures' greedy.json and leaves the others as they are
    only = set(sys.argv[sys.argv.index("--only") + 1].split(",")) if "--only" in sys.argv else None
    for name in FIXTURES:
        if only is not None and name not in only:
            continue
        folder = os.path.join(OUT, name)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            folder, attn_implementation="eager", dtype=torch.float32
        ).eval()
        image_processor = Qwen2VLImageProcessor.from_pretrained(folder)
        with open(os.path.join(folder, "cases.json")) as f:
            cases = json.load(f)["cases"]
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        out = {"fixture": name, "max_new_tokens": MAX_NEW_TOKENS, "eos_token_ids": eos, "cases": []}
        for case in cases:
            ids = torch.tensor([case["prompt_ids"]])
            kwargs = {}
            if case["image"]:
                img = Image.open(os.path.join(OUT, "images", case["image"]))
                px = image_processor(images=[img], return_tensors="pt")
                kwargs = {"pixel_values": px["pixel_values"], "image_grid_thw": px["image_grid_thw"]}
            with torch.no_grad():
                gen = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=False,
                    max_new_tokens=MAX_NEW_TOKENS,
                    eos_token_id=eos or None,
                    pad_token_id=eos[0] if eos else 0,
                    output_logits=True,
                    return_dict_in_generate=True,
                    **kwargs,
                )
            tokens = gen.sequences[0, ids.shape[1]:].tolist()
            gaps = []
            for step_logits in gen.logits:
                top = torch.topk(step_logits[0].float(), 2).values
                gaps.append(float(top[0] - top[1]))
            out["cases"].append(
                {"case": case["case"], "image": case["image"], "prompt_ids": case["prompt_ids"],
                 "tokens": tokens, "top2_gaps": gaps}
            )
        with open(os.path.join(folder, "greedy.json"), "w") as f:
            json.dump(out, f, indent=1)
        print(f"{name}: {len(out['cases'])} cases, eos {eos}", file=sys.stderr)


if __name__ == "__main__":
    main()
