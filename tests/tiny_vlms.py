"""Tiny, seeded, random-weight vision-language models saved to folders, for CPU tests of an in-process VLM judge.

Modelled on the `*ModelTester` configs of transformers' own Qwen2.5-VL and Qwen3-VL tests, except that nothing
comes from the Hugging Face hub: the byte-level Qwen2 tokenizer, the chat template and the image processor
config are written here. Each folder has the layout of the real hub repos (config.json, model.safetensors,
generation_config.json, tokenizer.json, tokenizer_config.json, chat_template.jinja, preprocessor_config.json,
video_preprocessor_config.json), so `AutoModelForImageTextToText.from_pretrained(folder)` loads the model. The
stock processors also build a video processor, which needs torchvision; without it load the processor with
`load_processor(folder)` from `refine_agent.tools.local.vlm_processor`.

Every model is created right after `torch.manual_seed(0)`, in float32, so a folder built twice holds the same
weights. Sizes are the model testers' (hidden 32-64, two layers, a two-block vision tower) and the image
processor's pixel bounds are small (an image becomes 4-16 tokens), so a two-image prompt of ~100 text tokens
generates 32 new tokens in well under a second on one CPU thread. `build(name, root)` builds `root/name` once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tests.model_folders import build_once

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                       "<|image_pad|>", "<|video_pad|>")
# Ordinary added tokens, as in the real Qwen tokenizers (decoded even with skip_special_tokens).
QWEN_THINK_TOKENS = ("<think>", "</think>")
# A few merges so that tokenization is BPE, not just bytes (Ġ is the byte-level stand-in for a space).
QWEN_MERGES = ("Ġ t", "h e", "Ġt he", "i n", "e r", "a n", "o n", "Ġ a", "r e", "Ġ i")

# The Qwen2.5-VL-Instruct chat template: a default system prompt, content lists of image/video/text parts, each
# image as <|vision_start|><|image_pad|><|vision_end|> (the processor expands the pad to the image's tokens).
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The Qwen3-VL-Instruct chat template without its tool-calling branches: no default system prompt, and text
# parts may sit in system messages too.
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}{%- set video_count = namespace(value=0) -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Picture ' ~ image_count.value ~ ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif content['type'] == 'video' or 'video' in content -%}"
    "{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Video ' ~ video_count.value ~ ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in content -%}{{- content['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


# -- tokenizer and processor files -----------------------------------------------------------------------------


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, in byte order (what byte-level BPE vocabularies use)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def qwen_vl_tokenizer(chat_template: str = QWEN25_VL_CHAT_TEMPLATE) -> Any:
    """A byte-level BPE Qwen2 tokenizer (256 bytes, a few merges) with the Qwen-VL special and think tokens.

    `<|endoftext|>` pads (left, for batched generation) and `<|im_end|>` ends a turn, as in the Instruct models.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab = {symbol: i for i, symbol in enumerate(_byte_symbols())}
    for merge in QWEN_MERGES:
        vocab["".join(merge.split(" "))] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in QWEN_MERGES], model_max_length=32768,
                               pad_token="<|endoftext|>", padding_side="left")
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    tokenizer.eos_token = "<|im_end|>"  # set after adding, so the special tokens get the real models' id order
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in QWEN_THINK_TOKENS])
    tokenizer.chat_template = chat_template
    return tokenizer


def _token_ids(tokenizer: Any) -> dict[str, int]:
    return {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}


def _write_processor_files(folder: Path, *, tokenizer: Any, processor_class: str, video_processor_type: str,
                           patch_size: int, min_pixels: int, max_pixels: int, image_mean: list[float],
                           image_std: list[float]) -> None:
    """The processor files of the real hub repos: tokenizer, chat template, image and video processor configs.

    Written by hand because the stock processor cannot be built (so not saved) without torchvision.
    """
    tokenizer.save_pretrained(folder)  # tokenizer.json, tokenizer_config.json, chat_template.jinja
    vision = {"min_pixels": min_pixels, "max_pixels": max_pixels, "patch_size": patch_size, "temporal_patch_size": 2,
              "merge_size": 2, "image_mean": image_mean, "image_std": image_std, "processor_class": processor_class}
    files = {
        "preprocessor_config.json": {**vision, "image_processor_type": "Qwen2VLImageProcessor"},
        "video_preprocessor_config.json": {**vision, "video_processor_type": video_processor_type},
    }
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    # Tokenizer files name the processor class too, as save_pretrained of the stock processor writes them.
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["processor_class"] = processor_class
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _save_model(model: Any, folder: Path, tokenizer: Any) -> None:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,  # the real ones sample; tests want greedy unless they ask otherwise
    )
    model.save_pretrained(folder)


# -- builders --------------------------------------------------------------------------------------------------

# Pixel bounds: a multiple of (patch * merge)^2, so an image becomes 4 (min) to 16 (max) tokens.
QWEN25_VL_PATCH = 14
QWEN25_VL_MIN_PIXELS = 56 * 56
QWEN25_VL_MAX_PIXELS = 112 * 112
QWEN3_VL_PATCH = 16
QWEN3_VL_MIN_PIXELS = 64 * 64
QWEN3_VL_MAX_PIXELS = 128 * 128
# Weights drawn with std 0.5, not 0.02: with 0.02 the logits are nearly flat and greedy decoding repeats one
# token whatever the prompt; with 0.5 the generated tokens vary and depend on the text and the images.
INIT_STD = 0.5
CLIP_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


def build_qwen25_vl(folder: Path) -> Path:
    """Qwen2_5_VLForConditionalGeneration with its Qwen2_5_VLProcessor files (hidden 32, 2 layers, 4 heads)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    folder = Path(folder)
    tokenizer = qwen_vl_tokenizer(QWEN25_VL_CHAT_TEMPLATE)
    ids = _token_ids(tokenizer)
    hidden, heads = 32, 4
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer) + 13,  # padded past the tokenizer, like the real models (151936 > 151665)
            "hidden_size": hidden,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "max_window_layers": 2,
            "initializer_range": INIT_STD,
            # Temporal, height and width sections of the rotary half-dimension: sums to head_dim / 2 = 4.
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 1, 1]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 32,
            "num_heads": 4,
            "hidden_act": "silu",
            "patch_size": QWEN25_VL_PATCH,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 2 * QWEN25_VL_PATCH * 2,  # window attention over 2x2 merged tokens
            "fullatt_block_indexes": [1],
            "out_hidden_size": hidden,
            "initializer_range": INIT_STD,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,  # as the small (3B) real model
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    _save_model(model, folder, tokenizer)
    _write_processor_files(folder, tokenizer=tokenizer, processor_class="Qwen2_5_VLProcessor",
                           video_processor_type="Qwen2VLVideoProcessor", patch_size=QWEN25_VL_PATCH,
                           min_pixels=QWEN25_VL_MIN_PIXELS, max_pixels=QWEN25_VL_MAX_PIXELS,
                           image_mean=CLIP_IMAGE_MEAN, image_std=CLIP_IMAGE_STD)
    return folder


def build_qwen3_vl(folder: Path) -> Path:
    """Qwen3VLForConditionalGeneration with its Qwen3VLProcessor files (hidden 64, 2 layers, deepstack)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    folder = Path(folder)
    tokenizer = qwen_vl_tokenizer(QWEN3_VL_CHAT_TEMPLATE)
    ids = _token_ids(tokenizer)
    hidden, heads, head_dim = 64, 4, 16
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer) + 13,  # padded past the tokenizer, like the real models
            "hidden_size": hidden,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "head_dim": head_dim,
            "max_position_embeddings": 4096,
            "initializer_range": INIT_STD,
            # Interleaved temporal/height/width sections of the rotary half-dimension: sums to head_dim / 2 = 8.
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [4, 2, 2],
                                "mrope_interleaved": True},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 32,
            "num_heads": 4,
            "hidden_act": "gelu_pytorch_tanh",
            "patch_size": QWEN3_VL_PATCH,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 64,  # an 8x8 grid of learned positions, interpolated per image
            "deepstack_visual_indexes": [0, 1],  # both blocks' features also feed the two text layers
            "out_hidden_size": hidden,
            "initializer_range": INIT_STD,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,  # as the small (2B, 4B) real models
    )
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(config).eval()
    _save_model(model, folder, tokenizer)
    # Qwen3-VL normalises with mean = std = 0.5, not CLIP's statistics.
    _write_processor_files(folder, tokenizer=tokenizer, processor_class="Qwen3VLProcessor",
                           video_processor_type="Qwen3VLVideoProcessor", patch_size=QWEN3_VL_PATCH,
                           min_pixels=QWEN3_VL_MIN_PIXELS, max_pixels=QWEN3_VL_MAX_PIXELS,
                           image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return folder


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "qwen25_vl": build_qwen25_vl,
    "qwen3_vl": build_qwen3_vl,
}


def build(name: str, root: Path) -> Path:
    """`root/name`, built by `BUILDERS[name]` once (see `tests.model_folders.build_once`)."""
    return build_once(root, name, BUILDERS[name], "config.json")
