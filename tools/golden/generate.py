"""Golden files for Spotlight's Qwen2.5-VL (src/model): tiny random checkpoints + transformers' outputs.

Why: transformers' Qwen2.5-VL is the numerical truth the Rust model must match. No real checkpoint
or tokenizer can be downloaded here, so this script *builds* tiny ones (random weights, a small
byte-level BPE tokenizer trained on a few sentences, carrying Qwen's special tokens) in the layout
of real hub checkpoints, and records what transformers computes from them:

- per fixture folder: config.json (hub layout: flat text keys, rope_scaling.mrope_section),
  weights (single file or sharded with an index), tokenizer.json / tokenizer_config.json,
  the chat template (chat_template.json, chat_template.jinja or inside tokenizer_config.json),
  preprocessor_config.json;
- references.safetensors: full-sequence logits of prompt+response for every case, response
  log-probs at two temperatures, the vision tower's output, the slow (PIL) processor's
  pixel_values for every image;
- cases.json: the prompts, responses, token ids, grids and which tensors belong to which case.

Run: tools/golden/run.sh (creates tools/golden/.venv with the pinned requirements).
Output: tests/fixtures/qwen25vl/. Deterministic (seeded); rerunning rewrites the same files up to
torch's CPU kernels.
"""

import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2TokenizerFast,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "qwen25vl")

# Qwen2's pre-tokenizer split pattern (as in the real tokenizer.json).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# The chat template of Qwen/Qwen2.5-VL-7B-Instruct (chat_template.json), verbatim.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The answer is 5. A red square on a blue background.",
    "Describe the picture in one sentence. What colour is the shape?",
    "You are a helpful assistant. Think step by step, then give the final answer in \\boxed{}.",
    "There are three circles and two triangles; the total is 5 shapes.",
    "The image shows a gradient from dark to light with some noise.",
    "What is 2+3? Answer briefly. The sum of 12 and 30 is 42.",
    "user assistant system image picture grader careful",
]
BPE_VOCAB = 400
MODEL_VOCAB = 448  # larger than the tokenizer, as in real Qwen checkpoints (padded embedding rows)

IMAGES = {
    # name: (height, width) -- 56x56 and 84x112 need no resize; 70x100 does (and 70/28 = 2.5 is
    # a tie that Python's round() sends to even); 150x200 exceeds a small max_pixels; 30x40 is
    # below min_pixels and is upscaled.
    "square56.png": (56, 56),
    "wide84x112.png": (84, 112),
    "resize70x100.png": (70, 100),
    "large150x200.png": (150, 200),
    "small30x40.png": (30, 40),
}

FIXTURES = [
    {
        "name": "tiny",
        "seed": 1,
        "text": dict(hidden=64, heads=4, kv_heads=2, layers=2, inter=128, mrope=[2, 3, 3], theta=1000000.0),
        "vision": dict(hidden=32, heads=2, depth=4, inter=64, window=56, fullatt=[1, 3]),
        "tied": False,
        "shards": 1,
        "template_in": "chat_template.json",
        "pre": {"min_pixels": 3136, "max_pixels": 12845056},
    },
    {
        "name": "tied",
        "seed": 2,
        "text": dict(hidden=48, heads=3, kv_heads=1, layers=2, inter=96, mrope=[2, 2, 4], theta=10000.0),
        "vision": dict(hidden=48, heads=4, depth=3, inter=80, window=112, fullatt=[2]),
        "tied": True,
        "shards": 1,
        "template_in": "tokenizer_config.json",
        "pre": {"min_pixels": 3136, "max_pixels": 16000},
        # the only fixture whose max_pixels makes large150x200 shrink: processed here only, to
        # keep the committed references small
        "extra_images": ["large150x200.png"],
    },
    {
        "name": "sharded",
        "seed": 3,
        "text": dict(hidden=64, heads=4, kv_heads=4, layers=2, inter=96, mrope=[4, 2, 2], theta=1000000.0),
        "vision": dict(hidden=32, heads=2, depth=2, inter=48, window=56, fullatt=[1]),
        "tied": False,
        "shards": 2,
        "template_in": "chat_template.jinja",
        "pre": {"size": {"shortest_edge": 3136, "longest_edge": 12845056}},
    },
    {
        # odd head counts and widths (6 text heads of 16, 3 vision heads of 16), three layers
        # each side, an unpadded vocabulary size, transformers-5 processor keys: the shape on
        # which `debug bench-step` once failed ("sequence 7 has 5 image tokens, its images
        # need 4")
        "name": "odd",
        "seed": 4,
        "text": dict(hidden=96, heads=6, kv_heads=2, layers=3, inter=160, mrope=[2, 3, 3], theta=1000000.0),
        "vision": dict(hidden=48, heads=3, depth=3, inter=96, window=56, fullatt=[1]),
        "tied": False,
        "shards": 1,
        "template_in": "chat_template.json",
        "pre": {"size": {"shortest_edge": 3136, "longest_edge": 12845056}},
        "vocab": 486,
    },
]

CASES = [
    # (case name, system or None, image or None, prompt, response)
    ("text", None, None, "What is 2+3? Answer briefly.", "The answer is 5."),
    ("system", "You are a careful grader.", None, "Is 12 plus 30 equal to 42?", "Yes, the sum is 42."),
    ("square", None, "square56.png", "Describe the picture.", "A red square on a blue background."),
    ("wide", None, "wide84x112.png", "What colour is the shape?", "The shape is red."),
    ("resized", None, "resize70x100.png", "How many shapes are there?", "There are 5 shapes."),
]
TEMPERATURES = [1.0, 0.7]


def make_images():
    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    rng = np.random.default_rng(1234)
    for name, (h, w) in IMAGES.items():
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        r = 255 * (xx / max(w - 1, 1))
        g = 255 * (yy / max(h - 1, 1))
        b = 127 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
        img = np.stack([r, g, b], axis=-1) + rng.normal(0, 25, size=(h, w, 3))
        # a hard-edged square, so bicubic over/undershoot and clipping are exercised
        img[h // 4 : h // 2, w // 4 : w // 2] = [250, 5, 5]
        img = np.clip(np.round(img), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(OUT, "images", name))


def train_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def hub_config(fx, tok):
    t, v = fx["text"], fx["vision"]
    ids = {s: tok.token_to_id(s) for s in SPECIAL_TOKENS}
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "hidden_act": "silu",
        "hidden_size": t["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": t["inter"],
        "max_position_embeddings": 4096,
        "max_window_layers": t["layers"],
        "model_type": "qwen2_5_vl",
        "num_attention_heads": t["heads"],
        "num_hidden_layers": t["layers"],
        "num_key_value_heads": t["kv_heads"],
        "rms_norm_eps": 1e-06,
        "rope_theta": t["theta"],
        "sliding_window": 4096,
        "tie_word_embeddings": fx["tied"],
        "torch_dtype": "float32",
        "transformers_version": "4.41.2",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "depth": v["depth"],
            "hidden_act": "silu",
            "hidden_size": v["hidden"],
            "intermediate_size": v["inter"],
            "num_heads": v["heads"],
            "in_chans": 3,
            "out_hidden_size": t["hidden"],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "window_size": v["window"],
            "fullatt_block_indexes": v["fullatt"],
            "tokens_per_second": 2,
            "temporal_patch_size": 2,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": t["mrope"]},
        "vocab_size": fx.get("vocab", MODEL_VOCAB),
    }


def tf5_config(hub):
    """The same model in transformers-5's layout (text_config + rope_parameters), for the parser test."""
    text_keys = [
        "attention_dropout", "bos_token_id", "eos_token_id", "hidden_act", "hidden_size",
        "initializer_range", "intermediate_size", "max_position_embeddings", "max_window_layers",
        "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "rms_norm_eps",
        "sliding_window", "use_cache", "use_sliding_window", "vocab_size",
    ]  # fmt: skip
    text = {k: hub[k] for k in text_keys}
    text["model_type"] = "qwen2_5_vl_text"
    text["dtype"] = "float32"
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": hub["rope_theta"],
        "mrope_section": hub["rope_scaling"]["mrope_section"],
    }
    vision = dict(hub["vision_config"])
    vision.pop("in_chans")
    vision.pop("spatial_patch_size")
    vision["in_channels"] = 3
    vision["model_type"] = "qwen2_5_vl"
    vision["initializer_range"] = 0.02
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "dtype": "float32",
        "image_token_id": hub["image_token_id"],
        "video_token_id": hub["video_token_id"],
        "vision_start_token_id": hub["vision_start_token_id"],
        "vision_end_token_id": hub["vision_end_token_id"],
        "tie_word_embeddings": hub["tie_word_embeddings"],
        "text_config": text,
        "vision_config": vision,
        "transformers_version": "5.0.0",
    }


def randomize(model, seed, tied):
    """Weights with O(1) activations and logits spread over several nats (the 0.02 init gives
    near-uniform logits, which would make parity trivially easy). A tied embedding doubles as the
    head, so it is scaled like one: logits of a few nats, as in real models, not tens."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name or "ln_q" in name):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                scale = 1.5 / math.sqrt(p.shape[1]) if tied else 1.0
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (1.2 / math.sqrt(fan_in)))


def hub_name(name):
    """transformers-4.57 module names -> the names real hub checkpoints store."""
    if name.startswith("model.visual."):
        return "visual." + name[len("model.visual.") :]
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model.") :]
    return name


def save_weights(model, folder, tied, shards):
    sd = {hub_name(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if tied:
        sd.pop("lm_head.weight", None)
    names = sorted(sd)
    if shards == 1:
        save_file(sd, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
        return
    per = math.ceil(len(names) / shards)
    weight_map, total = {}, 0
    for i in range(shards):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k] for k in names[i * per : (i + 1) * per]}
        save_file(part, os.path.join(folder, fname), metadata={"format": "pt"})
        for k, v in part.items():
            weight_map[k] = fname
            total += v.numel() * v.element_size()
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def preprocessor_config(fx):
    cfg = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "Qwen2VLImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "merge_size": 2,
        "patch_size": 14,
        "processor_class": "Qwen2_5_VLProcessor",
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "temporal_patch_size": 2,
    }
    cfg.update(fx["pre"])
    return cfg


def build_fixture(fx, tok):
    folder = os.path.join(OUT, fx["name"])
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)

    # tokenizer files (transformers' own writer, as a real checkpoint has them)
    hf_tok = Qwen2TokenizerFast(
        tokenizer_object=tok.__class__.from_str(tok.to_str()),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        errors="replace",
    )
    hf_tok.save_pretrained(folder)
    for extra in ["vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json"]:
        p = os.path.join(folder, extra)
        if os.path.exists(p):
            os.remove(p)
    tc_path = os.path.join(folder, "tokenizer_config.json")
    with open(tc_path) as f:
        tc = json.load(f)
    tc.pop("chat_template", None)
    if fx["template_in"] == "tokenizer_config.json":
        tc["chat_template"] = CHAT_TEMPLATE
    elif fx["template_in"] == "chat_template.json":
        with open(os.path.join(folder, "chat_template.json"), "w") as f:
            json.dump({"chat_template": CHAT_TEMPLATE}, f, indent=2)
    else:
        with open(os.path.join(folder, "chat_template.jinja"), "w") as f:
            f.write(CHAT_TEMPLATE)
    with open(tc_path, "w") as f:
        json.dump(tc, f, indent=2)

    pre = preprocessor_config(fx)
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f, indent=2)

    hub = hub_config(fx, tok)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hub, f, indent=2)
    if fx["name"] == "tiny":
        with open(os.path.join(OUT, "config_tf5_layout.json"), "w") as f:
            json.dump(tf5_config(hub), f, indent=2)

    # random model from the hub config, written in the hub layout, then reloaded from disk so the
    # references come from exactly the files the Rust side reads
    config = Qwen2_5_VLConfig.from_pretrained(folder)
    torch.manual_seed(fx["seed"])
    model = Qwen2_5_VLForConditionalGeneration._from_config(config, attn_implementation="eager", dtype=torch.float32)
    randomize(model, fx["seed"], fx["tied"])
    save_weights(model, folder, fx["tied"], fx["shards"])
    del model
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        folder, attn_implementation="eager", dtype=torch.float32
    ).eval()
    if fx["tied"]:
        assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()

    image_processor = Qwen2VLImageProcessor.from_pretrained(folder)
    assert type(image_processor).__name__ == "Qwen2VLImageProcessor"  # the slow, PIL-based one
    tokenizer = Qwen2TokenizerFast.from_pretrained(folder)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )

    tensors, meta = {}, {"fixture": fx["name"], "cases": [], "images": []}

    # processor outputs for every image
    for name in IMAGES:
        if name == "large150x200.png" and name not in fx.get("extra_images", []):
            continue
        img = Image.open(os.path.join(OUT, "images", name))
        out = image_processor(images=[img], return_tensors="pt")
        key = "pixel_values." + name
        tensors[key] = out["pixel_values"].float().contiguous()
        meta["images"].append(
            {"image": name, "pixel_values": key, "grid_thw": out["image_grid_thw"][0].tolist(), "size_hw": list(IMAGES[name])}
        )

    for case, system, image_name, prompt, response in CASES:
        content = []
        if image_name is not None:
            content.append({"type": "image"})
        content.append({"type": "text", "text": prompt})
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images = [Image.open(os.path.join(OUT, "images", image_name))] if image_name else None
        inputs = processor(text=[text], images=images, return_tensors="pt")
        prompt_ids = inputs["input_ids"][0].tolist()
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        full = torch.tensor([prompt_ids + response_ids])
        kwargs = {}
        if image_name:
            kwargs = {"pixel_values": inputs["pixel_values"], "image_grid_thw": inputs["image_grid_thw"]}
        with torch.no_grad():
            logits = model(input_ids=full, **kwargs).logits[0].float()
            # transformers' own f32 rounding error (vs the same model in f64): the floor under
            # which no f32 implementation can be compared
            model64 = model.to(torch.float64)
            kw64 = {k: (v.double() if v.is_floating_point() else v) for k, v in kwargs.items()}
            noise = float((model64(input_ids=full, **kw64).logits[0] - logits.double()).abs().max())
            model.to(torch.float32)
            if image_name:
                feats = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
                tensors[f"vision.{case}"] = feats.float().contiguous()
            pos, _ = model.model.get_rope_index(full, inputs.get("image_grid_thw"), None, None, torch.ones_like(full))
        p, r = len(prompt_ids), len(response_ids)
        tensors[f"logits.{case}"] = logits.contiguous()
        entry = {
            "case": case,
            "system": system,
            "image": image_name,
            "prompt": prompt,
            "response": response,
            "rendered_prompt": text,
            "prompt_ids": prompt_ids,
            "response_ids": response_ids,
            "response_tokens": [tokenizer.decode([i]) for i in response_ids],
            "grid_thw": inputs["image_grid_thw"][0].tolist() if image_name else None,
            "position_ids": pos[:, 0, :].tolist(),
            "logits": f"logits.{case}",
            "vision": f"vision.{case}" if image_name else None,
            "logprobs": {},
            "reference_f32_vs_f64_max_abs_logit": noise,
        }
        for t in TEMPERATURES:
            lp = torch.log_softmax(logits[p - 1 : p + r - 1] / t, dim=-1)
            lp = lp.gather(1, torch.tensor(response_ids)[:, None])[:, 0]
            key = f"logprobs.{case}.t{t}"
            tensors[key] = lp.contiguous()
            entry["logprobs"][str(t)] = key
        meta["cases"].append(entry)

    save_file(tensors, os.path.join(folder, "references.safetensors"))
    with open(os.path.join(folder, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{fx['name']}: {n_params} parameters, {len(meta['cases'])} cases", file=sys.stderr)


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    make_images()
    tok = train_tokenizer()
    # `--only NAME[,NAME]` rebuilds those fixtures and leaves the others as they are
    only = None
    if "--only" in sys.argv:
        only = set(sys.argv[sys.argv.index("--only") + 1].split(","))
    for fx in FIXTURES:
        if only is None or fx["name"] in only:
            build_fixture(fx, tok)
    with open(os.path.join(OUT, "VERSIONS.txt"), "w") as f:
        import tokenizers
        import transformers
        import PIL

        f.write(f"torch {torch.__version__}\ntransformers {transformers.__version__}\n")
        f.write(f"tokenizers {tokenizers.__version__}\npillow {PIL.__version__}\nnumpy {np.__version__}\n")


if __name__ == "__main__":
    main()
