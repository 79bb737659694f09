"""Golden file for `spotlight perception`'s single-case mode: token dependency S computed by
transformers on the tiny fixtures (tests/fixtures/qwen25vl/), independently of Spotlight.

For each fixture case with an image, the response is scored after the chat prompt with the
image (LLaMA-Factory's Qwen2-VL pre-resize as PAPO-Eval, then the fixture's slow processor) and
again with the measure's image or without it:

- `full_mask` with fill 128 (the reference's full masking) and 0: the pre-resized image
  replaced by one grey level, then the processor;
- `no_image`: the prompt without its image.

S per token is the k3 estimator of spec section 5 (`d = clamp(aug - old, -20, 20)`,
`S = clamp(exp(d) - d - 1, 0, 10)`), the trajectory value its mean. Writes
tests/fixtures/perception/cases.json. Run with the pinned oracle of requirements.txt:

    tools/golden/venv.sh tools/golden/perception.py
"""

import json
import math
import os
import sys

import torch
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2TokenizerFast
from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from generate import CHAT_TEMPLATE  # noqa: E402
from preprocess import llamafactory_qwen2vl  # noqa: E402

FIX = os.path.join(HERE, "..", "..", "tests", "fixtures", "qwen25vl")
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "perception")
FIXTURES = ["tiny", "odd"]


def k3(old, aug):
    d = max(-20.0, min(20.0, aug - old))
    return max(0.0, min(10.0, math.exp(d) - d - 1.0))


def response_logprobs(model, processor, messages, images, response_ids):
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=images, return_tensors="pt")
    prompt_ids = inputs["input_ids"][0].tolist()
    full = torch.tensor([prompt_ids + response_ids])
    kwargs = {}
    if images:
        kwargs = {"pixel_values": inputs["pixel_values"], "image_grid_thw": inputs["image_grid_thw"]}
    with torch.no_grad():
        logits = model(input_ids=full, **kwargs).logits[0].double()
    p = len(prompt_ids)
    logp = torch.log_softmax(logits[p - 1 : p - 1 + len(response_ids)], dim=-1)
    return [float(logp[j, t]) for j, t in enumerate(response_ids)]


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    out = []
    for name in FIXTURES:
        folder = os.path.join(FIX, name)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            folder, attn_implementation="eager", dtype=torch.float32
        ).eval()
        image_processor = Qwen2VLImageProcessor.from_pretrained(folder)
        tokenizer = Qwen2TokenizerFast.from_pretrained(folder)
        processor = Qwen2_5_VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(),
            chat_template=CHAT_TEMPLATE,
        )
        with open(os.path.join(folder, "cases.json")) as f:
            cases = json.load(f)["cases"]
        for case in cases:
            if not case["image"] or case["system"]:
                continue
            image = llamafactory_qwen2vl(Image.open(os.path.join(FIX, "images", case["image"])))
            response_ids = tokenizer(case["response"], add_special_tokens=False)["input_ids"]
            with_image = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": case["prompt"]}]}]
            text_only = [{"role": "user", "content": [{"type": "text", "text": case["prompt"]}]}]
            old = response_logprobs(model, processor, with_image, [image], response_ids)
            measures = [("full_mask", 128), ("full_mask", 0), ("no_image", None)]
            for measure, fill in measures:
                if measure == "full_mask":
                    masked = Image.new("RGB", image.size, (fill, fill, fill))
                    aug = response_logprobs(model, processor, with_image, [masked], response_ids)
                else:
                    aug = response_logprobs(model, processor, text_only, None, response_ids)
                s = [k3(o, a) for o, a in zip(old, aug)]
                out.append(
                    {
                        "fixture": name,
                        "case": case["case"],
                        "image": case["image"],
                        "prompt": case["prompt"],
                        "response": case["response"],
                        "measure": measure,
                        "fill": fill,
                        "response_ids": response_ids,
                        "logprobs": old,
                        "perturbed_logprobs": aug,
                        "token_dependency": s,
                        "trajectory_dependency": sum(s) / max(1, len(s)),
                    }
                )
    import transformers

    meta = {
        "generator": "tools/golden/perception.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cases": out,
    }
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{len(out)} cases -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
