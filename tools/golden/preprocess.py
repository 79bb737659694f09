"""Golden files for `spotlight model preprocess` and the two reference image pipelines.

Writes tests/fixtures/preprocess/: synthetic images in the PIL modes that behave differently
(RGB, RGBA, LA, L, 1-bit, palette) at awkward sizes, and for each (image, pipeline) case what
the reference computes:

- `train`: EasyR1's `process_image` (VPPO-RL's training data; transcribed below from
  verl/utils/dataset.py, 15 lines) at the published bounds [200704, 1003520] or at small
  bounds, then the checkpoint's processor;
- `eval`: LLaMA-Factory's Qwen2-VL `_preprocess_image` (PAPO-Eval's evaluation; transcribed
  below from src/llamafactory/data/mm_plugin.py: BasePlugin then Qwen2VLPlugin) at
  image_max_pixels 768*768, image_min_pixels 32*32, then the processor.

The resizing is done by Pillow itself and the processor is transformers' own slow
`Qwen2VLImageProcessor` (pinned in requirements-preprocess.txt; no torch needed), so only the
two short size rules are a transcription. When torch and torchvision are importable
(requirements-preprocess-fast.txt), every case is also run through
`Qwen2VLImageProcessorFast` on the CPU (what VPPO-RL's `use_fast=True` loads), recorded under
`fast`. Each case records the pre-resized size, the
processor's grid, the processor's resized image (recovered exactly from `pixel_values`, which
are an affine function of it) as PNG, and for the small cases `pixel_values` themselves.

    python3 -m venv /tmp/pp && /tmp/pp/bin/pip install -r tools/golden/requirements-preprocess.txt
    /tmp/pp/bin/python tools/golden/preprocess.py
"""

import hashlib
import json
import math
import os
import sys

import numpy as np
import PIL
import transformers
from PIL import Image
from safetensors.numpy import save_file
from transformers import Qwen2VLImageProcessor

try:
    import torch
    import torchvision
    from transformers import Qwen2VLImageProcessorFast
except ImportError:  # the slow processor alone
    torch = None

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "preprocess")

# Qwen2.5-VL-7B-Instruct's preprocessor_config.json (hub values).
PROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}


def easyr1_process_image(image, min_pixels, max_pixels):
    # transcription of EasyR1 / VPPO-RL verl/utils/dataset.py::process_image
    if max_pixels is not None and (image.width * image.height) > max_pixels:
        resize_factor = math.sqrt(max_pixels / (image.width * image.height))
        width, height = int(image.width * resize_factor), int(image.height * resize_factor)
        image = image.resize((width, height))
    if min_pixels is not None and (image.width * image.height) < min_pixels:
        resize_factor = math.sqrt(min_pixels / (image.width * image.height))
        width, height = int(image.width * resize_factor), int(image.height * resize_factor)
        image = image.resize((width, height))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def llamafactory_qwen2vl(image, image_max_pixels=768 * 768, image_min_pixels=32 * 32):
    # transcription of LLaMA-Factory BasePlugin._preprocess_image + Qwen2VLPlugin._preprocess_image
    if (image.width * image.height) > image_max_pixels:
        resize_factor = math.sqrt(image_max_pixels / (image.width * image.height))
        width, height = int(image.width * resize_factor), int(image.height * resize_factor)
        image = image.resize((width, height))
    if (image.width * image.height) < image_min_pixels:
        resize_factor = math.sqrt(image_min_pixels / (image.width * image.height))
        width, height = int(image.width * resize_factor), int(image.height * resize_factor)
        image = image.resize((width, height))
    if image.mode != "RGB":
        image = image.convert("RGB")
    if min(image.width, image.height) < 28:
        width, height = max(image.width, 28), max(image.height, 28)
        image = image.resize((width, height))
    if image.width / image.height > 200:
        width, height = image.height * 180, image.height
        image = image.resize((width, height))
    if image.height / image.width > 200:
        width, height = image.width, image.width * 180
        image = image.resize((width, height))
    return image


def scene(w, h, seed):
    """A smooth picture with sharp edges: gradients, a few rectangles and a disc (compresses
    well as PNG, and exercises the resampling filter at edges)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack(
        [
            255 * x / max(w - 1, 1),
            255 * y / max(h - 1, 1),
            127 + 100 * np.sin((x + y) / max(w, h) * 6.0),
        ],
        axis=-1,
    )
    for _ in range(4):
        x0, y0 = rng.integers(0, max(w - 1, 1)), rng.integers(0, max(h - 1, 1))
        x1, y1 = x0 + rng.integers(1, max(w // 3, 2)), y0 + rng.integers(1, max(h // 3, 2))
        img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    cx, cy, r = w / 2, h / 2, min(w, h) / 4
    img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = [250, 250, 20]
    return np.clip(img.round(), 0, 255).astype(np.uint8)


def make_images():
    out = {}
    out["rgb_50x50"] = Image.fromarray(scene(50, 50, 1))
    out["rgb_447x449"] = Image.fromarray(scene(447, 449, 2))
    out["rgb_1600x800"] = Image.fromarray(scene(1600, 800, 3))
    out["rgb_5x7"] = Image.fromarray(scene(5, 7, 4))
    out["rgb_6000x28"] = Image.fromarray(scene(6000, 28, 5))
    out["rgb_27x5400"] = Image.fromarray(scene(27, 5400, 6))
    out["rgb_101x67"] = Image.fromarray(scene(101, 67, 7))
    # 126 / 28 = 4.5 and 70 / 28 = 2.5: smart_resize's round() ties, half to even
    out["rgb_126x70"] = Image.fromarray(scene(126, 70, 13))
    a = scene(120, 90, 8)
    alpha = np.tile(np.linspace(0, 255, 120).round().astype(np.uint8), (90, 1))
    alpha[:10] = 0
    out["rgba_120x90"] = Image.fromarray(np.dstack([a, alpha]))
    g = scene(64, 40, 9)[:, :, 0]
    out["la_64x40"] = Image.fromarray(np.dstack([g, alpha[:40, :64]]))
    out["l_33x27"] = Image.fromarray(scene(33, 27, 10)[:, :, 1])
    out["bilevel_40x30"] = Image.fromarray(scene(40, 30, 11)[:, :, 0] > 127).convert("1")
    out["p_300x200"] = Image.fromarray(scene(300, 200, 12)).quantize(colors=16, dither=0)
    return out


CASES = [
    # (image, pipeline, bounds for train)
    ("rgb_50x50", "train", (200704, 1003520)),
    ("rgb_447x449", "train", (200704, 1003520)),
    ("rgb_1600x800", "train", (200704, 1003520)),
    ("rgb_1600x800", "eval", None),
    ("rgb_5x7", "eval", None),
    ("rgb_6000x28", "eval", None),
    ("rgb_27x5400", "eval", None),
    ("rgb_101x67", "eval", None),
    ("rgb_126x70", "eval", None),
    ("rgb_101x67", "train", (8000, 12544)),
    ("rgba_120x90", "eval", None),
    ("rgba_120x90", "train", (20000, 40000)),
    ("la_64x40", "eval", None),
    ("la_64x40", "train", (3136, 12544)),
    ("l_33x27", "eval", None),
    ("l_33x27", "train", (3136, 12544)),
    ("bilevel_40x30", "eval", None),
    ("bilevel_40x30", "train", (3136, 12544)),
    ("p_300x200", "eval", None),
    ("p_300x200", "train", (3136, 12544)),
    ("p_300x200", "train", (200704, 1003520)),
]

# pixel_values are stored in full only below this many patches (the rest: the resized PNG)
FULL_PIXELS_MAX_PATCHES = 24


def recover_uint8(pv, grid, patch, merge, mean, std, fused):
    """The processor's resized image from its pixel_values (an affine image of uint8)."""
    t, gh, gw = grid
    arr = pv.astype(np.float64).reshape(gh // merge, gw // merge, merge, merge, 3, 2, patch, patch)[:, :, :, :, :, 0]
    chw = arr.transpose(4, 0, 2, 5, 1, 3, 6).reshape(3, gh * patch, gw * patch)
    rgb = chw * std[:, None, None] * 255.0 + mean[:, None, None] * 255.0
    recovered = np.rint(rgb)
    err = float(np.abs(rgb - recovered).max())
    assert err < 2e-3, f"pixel_values are not an affine image of uint8 ({err}, fused={fused})"
    return Image.fromarray(recovered.transpose(1, 2, 0).astype(np.uint8))


def main():
    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "resized"), exist_ok=True)
    images = make_images()
    for name, im in images.items():
        im.save(os.path.join(OUT, "images", f"{name}.png"))
    with open(os.path.join(OUT, "preprocessor_config.json"), "w") as f:
        json.dump(PROCESSOR, f, indent=2)
    settings = {k: v for k, v in PROCESSOR.items() if "class" not in k and "type" not in k}
    processor = Qwen2VLImageProcessor(**settings)
    fast = Qwen2VLImageProcessorFast(**settings) if torch is not None else None
    mean = np.array(PROCESSOR["image_mean"], dtype=np.float64)
    std = np.array(PROCESSOR["image_std"], dtype=np.float64)
    p, m = PROCESSOR["patch_size"], PROCESSOR["merge_size"]
    tensors, cases = {}, []
    for i, (name, pipeline, bounds) in enumerate(CASES):
        # reopen from the PNG, as a dataset delivers it (the mode is the file's)
        src = Image.open(os.path.join(OUT, "images", f"{name}.png"))
        src.load()
        if pipeline == "train":
            pre = easyr1_process_image(src, bounds[0], bounds[1])
        else:
            pre = llamafactory_qwen2vl(src)
        out = processor(images=[pre], return_tensors="np")
        pv = out["pixel_values"].astype(np.float64)
        t, gh, gw = (int(v) for v in out["image_grid_thw"][0])
        # undo patchify: (gh/m, gw/m, m, m, C, T, p, p) -> (C, gh*p, gw*p)
        arr = pv.reshape(gh // m, gw // m, m, m, 3, 2, p, p)[:, :, :, :, :, 0]
        chw = arr.transpose(4, 0, 2, 5, 1, 3, 6).reshape(3, gh * p, gw * p)
        rgb = (chw * std[:, None, None] + mean[:, None, None]) * 255.0
        recovered = np.rint(rgb)
        err = float(np.abs(rgb - recovered).max())
        assert err < 1e-3, f"{name}: pixel_values are not an affine image of uint8 ({err})"
        resized = Image.fromarray(recovered.transpose(1, 2, 0).astype(np.uint8))
        case_id = f"{name}-{pipeline}" + (f"-{bounds[0]}-{bounds[1]}" if bounds else "")
        resized_file = f"resized/{case_id}.png"
        resized.save(os.path.join(OUT, resized_file))
        case = {
            "id": case_id,
            "image": f"images/{name}.png",
            "mode": src.mode,
            "pipeline": pipeline,
            "pre_resized_wh": list(pre.size),
            "resized_hw": [gh * p, gw * p],
            "grid_thw": [t, gh, gw],
            "resized": resized_file,
            "pre_resized_sha256": hashlib.sha256(np.asarray(pre).tobytes()).hexdigest(),
        }
        if bounds:
            case["min_pixels"], case["max_pixels"] = bounds
        if t * gh * gw <= FULL_PIXELS_MAX_PATCHES:
            key = f"pixel_values_{i}"
            tensors[key] = out["pixel_values"].astype(np.float32)
            case["pixel_values"] = key
        if fast is not None:
            fo = fast(images=[pre], return_tensors="pt", device="cpu")
            fpv = fo["pixel_values"].numpy()
            fgrid = [int(v) for v in fo["image_grid_thw"][0]]
            assert fgrid == [t, gh, gw], f"{name}: fast grid {fgrid} vs slow {[t, gh, gw]}"
            fast_file = f"resized/{case_id}-fast.png"
            recover_uint8(fpv, fgrid, p, m, mean, std, True).save(os.path.join(OUT, fast_file))
            case["fast"] = {"resized": fast_file}
            if t * gh * gw <= FULL_PIXELS_MAX_PATCHES:
                key = f"pixel_values_fast_{i}"
                tensors[key] = fpv.astype(np.float32)
                case["fast"]["pixel_values"] = key
        cases.append(case)
    save_file(tensors, os.path.join(OUT, "pixel_values.safetensors"))
    meta = {
        "generator": "tools/golden/preprocess.py",
        "transformers": transformers.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "processor": "Qwen2VLImageProcessor (slow, PIL)",
        "fast_processor": None if torch is None else f"Qwen2VLImageProcessorFast (torch {torch.__version__}, torchvision {torchvision.__version__}, CPU {torch.backends.cpu.get_cpu_capability()})",
        "cases": cases,
    }
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{len(cases)} cases -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
