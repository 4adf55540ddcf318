"""Tiny, seeded, random-weight diffusers editing pipelines saved to folders, for CPU tests.

Modelled on the `get_dummy_components()` of diffusers' own pipeline tests, except that nothing comes from the
Hugging Face hub: the tokenizers are built here from byte-level vocabularies (CLIP, Qwen2) and a character
vocabulary (T5). Every component is created right after `torch.manual_seed(0)`, in float32, so a folder built
twice holds the same weights. `build(name, root)` builds `root/name` once; the builders take a folder.

Sizes are as small as the pipelines allow (hidden sizes 8-32, one or two layers), so a two-image, two-step
edit of a 32x32 image (64x64 for Flux2Klein, whose minimum side is 64) takes well under a second on one CPU
thread. The Qwen-Image-Edit pipelines still resize their conditioning image to about 1 MP whatever the input
size (seconds per call here); the editor's `condition_area` option shrinks it.

The Qwen pipelines' `processor/` folder has the stock layout, but the stock Qwen2VLProcessor needs torchvision;
without it load them with `processor=load_processor(folder / "processor")` from
`refine_agent.tools.local.vlm_processor`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tests.model_folders import build_once

CLIP_MAX_LENGTH = 77
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                       "<|image_pad|>", "<|video_pad|>")
# Qwen3's chat template, cut down to what Flux2Klein uses: plain messages, the generation prompt and the empty
# think block that `enable_thinking=False` adds.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif -%}"
    "{%- endif -%}"
)
# Qwen-Image-Edit resizes its conditioning image before this processor sees it; small pixel bounds keep the
# tiny vision tower's token count at a few per image whatever that size is.
QWEN_VL_MIN_PIXELS = 28 * 28
QWEN_VL_MAX_PIXELS = 56 * 56
CLIP_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


# -- tokenizers ------------------------------------------------------------------------------------------------


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, in byte order (what byte-level BPE vocabularies use)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def clip_tokenizer() -> Any:
    """A CLIP tokenizer over single bytes: each byte, each byte ending a word (`</w>`), and the two specials."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_MAX_LENGTH)


def qwen_tokenizer() -> Any:
    """A Qwen2 byte-level BPE tokenizer (no merges) with the special tokens the Qwen prompt templates use."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab = {symbol: i for i, symbol in enumerate(_byte_symbols())}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=32768)
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    tokenizer.add_tokens([AddedToken("<think>", special=False), AddedToken("</think>", special=False)])
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def t5_tokenizer() -> Any:
    """A T5 (Unigram) tokenizer whose pieces are the word boundary and the printable ASCII characters."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(chr(c), -2.0) for c in range(ord("!"), ord("~") + 1)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


# -- shared components -----------------------------------------------------------------------------------------


def _clip_text_encoder(tokenizer: Any, *, with_projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CLIP_MAX_LENGTH,
        projection_dim=32,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        eos_token_id=eos,  # not 2: the pooled output is read at the first end-of-text token
        pad_token_id=eos,
    )
    torch.manual_seed(0)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def _sd_vae() -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=32,
    )


def _euler_scheduler() -> Any:
    # Deterministic steps (no churn noise), so a batch and single calls agree given the same generators.
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  steps_offset=1, timestep_spacing="leading")


def _ip2p_unet(*, cross_attention_dim: int = 32, sdxl: bool = False) -> Any:
    from diffusers import UNet2DConditionModel

    extra: dict[str, Any] = {}
    if sdxl:  # SDXL's added conditioning: pooled text embeds + 6 size/crop ids of `addition_time_embed_dim` each
        extra = {"addition_embed_type": "text_time", "addition_time_embed_dim": 8,
                 "projection_class_embeddings_input_dim": 6 * 8 + 32, "use_linear_projection": True}
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=8,  # noisy latents + image latents
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        cross_attention_dim=cross_attention_dim,
        **extra,
    )


def _ip2p_components() -> dict[str, Any]:
    tokenizer = clip_tokenizer()
    return {"vae": _sd_vae(), "text_encoder": _clip_text_encoder(tokenizer), "tokenizer": tokenizer,
            "unet": _ip2p_unet(), "scheduler": _euler_scheduler()}


# -- builders --------------------------------------------------------------------------------------------------


def build_ip2p(folder: Path) -> Path:
    """StableDiffusionInstructPix2PixPipeline without safety checker; vae scale factor 2."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline(**_ip2p_components(), safety_checker=None, feature_extractor=None,
                                                  image_encoder=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def build_sdxl_ip2p(folder: Path) -> Path:
    """StableDiffusionXLInstructPix2PixPipeline: two CLIP encoders (the second with projection); scale factor 2."""
    from diffusers import StableDiffusionXLInstructPix2PixPipeline

    tokenizer = clip_tokenizer()
    pipe = StableDiffusionXLInstructPix2PixPipeline(
        vae=_sd_vae(),
        text_encoder=_clip_text_encoder(tokenizer),
        text_encoder_2=_clip_text_encoder(tokenizer, with_projection=True),
        tokenizer=tokenizer,
        tokenizer_2=clip_tokenizer(),
        unet=_ip2p_unet(cross_attention_dim=64, sdxl=True),  # both encoders' hidden states, concatenated
        scheduler=_euler_scheduler(),
        add_watermarker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def _qwen_vl_text_encoder(tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"rope_type": "default", "mrope_section": [1, 1, 2]},  # sums to head_dim / 2
            "rope_theta": 1000000.0,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": 16, "fullatt_block_indexes": [1]},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config)


def _write_qwen_processor_files(processor_dir: Path) -> None:
    """The processor/ layout of the real Qwen-Image-Edit repos: tokenizer, image and video processor configs.

    The video config is only read by the stock Qwen2VLProcessor (with torchvision); without torchvision use
    `load_processor` from `refine_agent.tools.local.vlm_processor`.
    """
    processor_dir.mkdir(parents=True, exist_ok=True)
    qwen_tokenizer().save_pretrained(processor_dir)
    vision = {"min_pixels": QWEN_VL_MIN_PIXELS, "max_pixels": QWEN_VL_MAX_PIXELS, "patch_size": 14,
              "temporal_patch_size": 2, "merge_size": 2, "image_mean": CLIP_IMAGE_MEAN, "image_std": CLIP_IMAGE_STD,
              "processor_class": "Qwen2VLProcessor"}
    files = {
        "processor_config.json": {"processor_class": "Qwen2VLProcessor"},
        "preprocessor_config.json": {**vision, "image_processor_type": "Qwen2VLImageProcessor"},
        "video_preprocessor_config.json": {**vision, "video_processor_type": "Qwen2VLVideoProcessor"},
    }
    for name, content in files.items():
        (processor_dir / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def _build_qwen_edit(folder: Path, pipeline_class_name: str) -> Path:
    import diffusers
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from refine_agent.tools.local.vlm_processor import load_processor

    # The stock Qwen2VLProcessor cannot be built without torchvision, so write its files first and build the
    # pipeline around the image-only processor read back from them.
    _write_qwen_processor_files(folder / "processor")
    processor = load_processor(folder / "processor")
    tokenizer = qwen_tokenizer()
    text_encoder = _qwen_vl_text_encoder(tokenizer)
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,  # z_dim 4 x 2x2 patch
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,  # the text encoder's hidden size
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(0)
    z_dim = 4
    # Three downsamples like the real VAE (scale factor 8, sizes rounded to 16 px); base_dim 8 instead of 96.
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=z_dim, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True, True], latents_mean=[0.0] * z_dim,
                                 latents_std=[1.0] * z_dim)
    pipe = getattr(diffusers, pipeline_class_name)(
        transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder=text_encoder,
        tokenizer=tokenizer, processor=processor,
    )
    pipe.save_pretrained(folder)
    # save_pretrained rewrote processor/ and recorded the image-only class: restore the stock layout.
    shutil.rmtree(folder / "processor")
    _write_qwen_processor_files(folder / "processor")
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text(encoding="utf-8"))
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def build_qwen_edit(folder: Path) -> Path:
    """QwenImageEditPipeline; load it with `processor=load_processor(folder / "processor")` without torchvision."""
    return _build_qwen_edit(folder, "QwenImageEditPipeline")


def build_qwen_edit_plus(folder: Path) -> Path:
    """QwenImageEditPlusPipeline (same components as qwen_edit; the pipeline takes one prompt per call)."""
    return _build_qwen_edit(folder, "QwenImageEditPlusPipeline")


def build_flux_kontext(folder: Path) -> Path:
    """FluxKontextPipeline: CLIP + T5 encoders, guidance-embedding transformer, 1-channel VAE (scale factor 8)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,  # 1 latent channel x 2x2 packing
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # T5's d_model
        pooled_projection_dim=32,  # CLIP's hidden size
        guidance_embeds=True,  # as FLUX.1-Kontext-dev, so guidance_scale reaches the model
        axes_dims_rope=(4, 4, 8),
    )
    clip = clip_tokenizer()
    text_encoder = _clip_text_encoder(clip)
    t5 = t5_tokenizer()
    t5_config = T5Config(vocab_size=len(t5), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                         relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    text_encoder_2 = T5EncoderModel(t5_config)
    torch.manual_seed(0)
    # Four blocks: a scale factor of 8 as the real VAE, so a 192x192 scene is 144 packed tokens, not 9,216.
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4, 4, 4, 4),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=1, latent_channels=1, norm_num_groups=1, use_quant_conv=False,
                        use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    pipe = FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder, tokenizer=clip,
        text_encoder_2=text_encoder_2, tokenizer_2=t5, transformer=transformer, image_encoder=None,
        feature_extractor=None,
    )
    pipe.save_pretrained(folder)
    return folder


def build_flux2_klein(folder: Path) -> Path:
    """Flux2KleinPipeline: Qwen3 encoder deep enough for the default `text_encoder_out_layers` (9, 18, 27)."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = qwen_tokenizer()
    hidden, out_layers = 16, 3
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=16,
                         num_hidden_layers=27, num_attention_heads=2, num_key_value_heads=2, head_dim=8,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    torch.manual_seed(0)
    text_encoder = Qwen3ForCausalLM(config)
    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=4,  # 1 latent channel x 2x2 packing
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=hidden * out_layers,  # the stacked hidden states of the three output layers
        timestep_guidance_channels=256,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )
    torch.manual_seed(0)
    # Two blocks (scale factor 2): its 64 px minimum image side then makes 16x16 = 256 tokens, not 1024.
    vae = AutoencoderKLFlux2(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4, 4),
                             down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                             layers_per_block=1, latent_channels=1, norm_num_groups=1, use_quant_conv=False,
                             use_post_quant_conv=False)
    pipe = Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder=text_encoder,
                              tokenizer=tokenizer, transformer=transformer, vae=vae)
    pipe.save_pretrained(folder)
    return folder


def build_custom(folder: Path) -> Path:
    """TinyRenamedInstructPipeline (tests.custom_pipelines), which diffusers cannot resolve by class name."""
    from tests.custom_pipelines import TinyRenamedInstructPipeline

    TinyRenamedInstructPipeline(**_ip2p_components()).save_pretrained(folder)
    return folder


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "ip2p": build_ip2p,
    "sdxl_ip2p": build_sdxl_ip2p,
    "qwen_edit": build_qwen_edit,
    "qwen_edit_plus": build_qwen_edit_plus,
    "flux_kontext": build_flux_kontext,
    "flux2_klein": build_flux2_klein,
    "custom": build_custom,
}


def build(name: str, root: Path) -> Path:
    """`root/name`, built by `BUILDERS[name]` once (see `tests.model_folders.build_once`)."""
    return build_once(root, name, BUILDERS[name], "model_index.json")
