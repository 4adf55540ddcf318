"""A diffusers pipeline class that diffusers itself does not know, for tests of loading pipelines by import path.

`TinyRenamedInstructPipeline` stands in for community pipelines such as UltraEdit's
`StableDiffusion3InstructPix2PixPipeline`: users load them with `pkg.module:ClassName`, the folder's
model_index.json names a class diffusers cannot resolve, and `__call__` uses its own argument names
(`text`, `input_image`, `steps`, `cfg`, `image_cfg`) instead of diffusers' `prompt`, `image`, ...
The denoising itself is InstructPix2Pix's: text + image classifier-free guidance over concatenated latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer


@dataclass
class TinyRenamedInstructOutput(BaseOutput):
    images: list[PIL.Image.Image] | object  # PIL list, or an array/tensor for output_type "np"/"pt"


class TinyRenamedInstructPipeline(DiffusionPipeline):
    """InstructPix2Pix-style editor whose call signature deliberately differs from diffusers' pipelines."""

    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
    ) -> None:
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        # do_resize=False: the output must keep the input's size exactly, so odd sizes are refused, not rounded.
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_resize=False)

    def _encode_text(self, prompts: list[str], device: torch.device) -> torch.Tensor:
        """Embeddings for [instructions, empty, empty]: the three InstructPix2Pix guidance branches."""
        tokens = self.tokenizer(
            prompts + [""] * len(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        embeds = self.text_encoder(tokens.input_ids.to(device))[0]
        cond, uncond = embeds.chunk(2)
        return torch.cat([cond, uncond, uncond])

    @torch.no_grad()
    def __call__(
        self,
        text: str | list[str],
        input_image: PIL.Image.Image | list[PIL.Image.Image],
        steps: int = 20,
        cfg: float = 7.5,
        image_cfg: float = 1.5,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
    ) -> TinyRenamedInstructOutput:
        prompts = [text] if isinstance(text, str) else list(text)
        images = [input_image] if isinstance(input_image, PIL.Image.Image) else list(input_image)
        if len(prompts) != len(images):
            raise ValueError(f"got {len(prompts)} instructions for {len(images)} images")
        width, height = images[0].size
        if any(im.size != (width, height) for im in images):
            raise ValueError("all images of one call must have the same size")
        if width % self.vae_scale_factor or height % self.vae_scale_factor:
            raise ValueError(f"image size {width}x{height} is not a multiple of {self.vae_scale_factor}")

        device = self._execution_device
        dtype = self.unet.dtype
        n = len(prompts)
        prompt_embeds = self._encode_text(prompts, device).to(dtype)

        # Image latents are unscaled and taken at the distribution's mode, as in InstructPix2Pix.
        pixels = self.image_processor.preprocess(images).to(device=device, dtype=self.vae.dtype)
        image_latents = self.vae.encode(pixels).latent_dist.mode().to(dtype)
        image_latents = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)])

        shape = (n, self.vae.config.latent_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        self.scheduler.set_timesteps(steps, device=device)
        latents = latents * self.scheduler.init_noise_sigma

        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = self.scheduler.scale_model_input(torch.cat([latents] * 3), t)
            model_input = torch.cat([model_input, image_latents], dim=1)
            noise = self.unet(model_input, t, encoder_hidden_states=prompt_embeds, return_dict=False)[0]
            noise_text, noise_image, noise_none = noise.chunk(3)
            noise = noise_none + cfg * (noise_text - noise_image) + image_cfg * (noise_image - noise_none)
            latents = self.scheduler.step(noise, t, latents, return_dict=False)[0]

        decoded = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor, return_dict=False)[0]
        out = self.image_processor.postprocess(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        return TinyRenamedInstructOutput(images=out)



class OutOfMemoryAbove2(TinyRenamedInstructPipeline):
    """Behaves as a GPU that fits at most two edits per call, and no image over 80x80: above that it raises
    torch's out-of-memory error, as a real device would."""

    def __call__(
        self,
        text: str | list[str],
        input_image: PIL.Image.Image | list[PIL.Image.Image],
        steps: int = 20,
        cfg: float = 7.5,
        image_cfg: float = 1.5,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
    ) -> TinyRenamedInstructOutput:
        images = [input_image] if isinstance(input_image, PIL.Image.Image) else list(input_image)
        if len(images) > 2 or any(i.width * i.height > 80 * 80 for i in images):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().__call__(text, input_image, steps, cfg, image_cfg, generator, output_type)


class MaskedRenamedPipeline(TinyRenamedInstructPipeline):
    """Like UltraEdit's with-mask SD3 pipeline: takes ``mask_img`` (white: may change) and keeps the input's
    pixels where the mask is black."""

    def __call__(
        self,
        text: str | list[str],
        input_image: PIL.Image.Image | list[PIL.Image.Image],
        mask_img: PIL.Image.Image | list[PIL.Image.Image],
        steps: int = 20,
        cfg: float = 7.5,
        image_cfg: float = 1.5,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> TinyRenamedInstructOutput:
        import numpy as np

        images = [input_image] if isinstance(input_image, PIL.Image.Image) else list(input_image)
        masks = [mask_img] if isinstance(mask_img, PIL.Image.Image) else list(mask_img)
        edited = super().__call__(text, images, steps, cfg, image_cfg, generator, "np").images
        out = []
        for result, image, mask in zip(edited, images, masks, strict=True):
            keep = np.asarray(mask.convert("L"), dtype=np.float32)[..., None] / 255.0
            out.append(keep * result + (1 - keep) * np.asarray(image, dtype=np.float32) / 255.0)
        return TinyRenamedInstructOutput(images=np.stack(out))
