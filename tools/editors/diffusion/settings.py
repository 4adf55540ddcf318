"""The diffusers editor's options, and the per-call generation settings that decide which requests may share
a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GENERATION_OPTIONS = ("num_inference_steps", "guidance_scale", "image_guidance_scale", "true_cfg_scale",
                      "negative_prompt", "max_area", "condition_area")
"""Options that reach the pipeline call. An adapter lists the ones its pipeline takes; any other one that is
set is refused at start-up."""


class DiffusersOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # -- which pipeline -------------------------------------------------------------------------------------
    revision: str | None = Field(default=None, description="revision of a Hugging Face cache repo")
    allow_download: bool = Field(default=False, description="let a repo id be downloaded from the Hugging Face "
                                 "hub when it is not in your cache (off: only local files are read)")
    pipeline: str | None = Field(default=None, description="a pipeline class by import path (pkg.module:Class), "
                                 "for pipelines that are not in diffusers, e.g. UltraEdit's SD3 InstructPix2Pix")
    custom_pipeline: str | None = Field(default=None, description="a local pipeline file (.py) or folder, loaded "
                                        "by diffusers' custom_pipeline; needs trust_remote_code=true")
    trust_remote_code: bool = Field(default=False, description="allow custom_pipeline to run its own code")
    arguments: dict[str, str] = Field(default_factory=dict, description="for a custom pipeline: our argument names "
                                      "(prompt, image, generator, num_inference_steps, guidance_scale, ...) mapped "
                                      "to the names its __call__ takes")
    # -- where and how it runs ------------------------------------------------------------------------------
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="auto", description="weights' dtype; auto: bfloat16 on a GPU that has it, else float16 on GPU, "
                                    "float32 on CPU")
    device: str | None = Field(default=None, description="one device, e.g. cuda:0 (default: cuda if there is "
                               "one, else cpu)")
    devices: list[str] | None = Field(default=None, description="several devices: one replica of the pipeline "
                                      "per device, each taking the next batch when it is free")
    offload: Literal["none", "model", "sequential"] = Field(default="none", description="CPU offload: model "
                                                            "(whole components, small slowdown) or sequential "
                                                            "(layer by layer: least memory, slow)")
    vae_tiling: bool = Field(default=False, description="decode in tiles (big images in less memory)")
    vae_slicing: bool = Field(default=False, description="decode a batch one image at a time")
    scheduler: str | None = Field(default=None, description="a diffusers scheduler class name, e.g. "
                                  "EulerAncestralDiscreteScheduler (default: the pipeline's own)")
    # -- generation (None: the pipeline's model-card default) -----------------------------------------------
    num_inference_steps: int | None = Field(default=None, ge=1, le=1000)
    guidance_scale: float | None = Field(default=None, ge=0)
    image_guidance_scale: float | None = Field(default=None, ge=0, description="InstructPix2Pix: how closely "
                                               "to keep the input image")
    true_cfg_scale: float | None = Field(default=None, ge=0, description="Qwen-Image-Edit, FLUX Kontext: true "
                                         "classifier-free guidance; applies only with a negative_prompt")
    negative_prompt: str | None = None
    max_area: int | None = Field(default=None, ge=64 * 64, description="FLUX Kontext: the output's area in "
                                 "pixels when output_size=native (default 1024*1024)")
    condition_area: int | None = Field(default=None, ge=64 * 64, description="Qwen-Image-Edit: the area the "
                                       "input image is resized to for conditioning (default 1024*1024, as "
                                       "trained; lower is faster and changes outputs)")
    output_size: Literal["keep", "native"] = Field(default="keep", description="keep: generate at the input's "
                                                   "size (rounded to what the model allows); native: at the "
                                                   "pipeline's own size (e.g. 1024x1024)")
    resize_to_source: bool = Field(default=True, description="resize the result to the input's exact size, so "
                                   "judges and masks line up")
    # -- batching -------------------------------------------------------------------------------------------
    max_batch_size: int | None = Field(default=None, ge=1, le=64, description="most edits in one pipeline call "
                                       "(default 4; 1 for pipelines that take one image per call); 1 gives "
                                       "bit-exact reruns")
    batch_wait_ms: float = Field(default=10.0, ge=0, le=10_000, description="how long a partial batch waits for "
                                 "more requests")

    @model_validator(mode="after")
    def _one_placement(self) -> DiffusersOptions:
        if self.device is not None and self.devices is not None:
            raise ValueError("give device or devices, not both")
        if self.devices is not None and (not self.devices or len(set(self.devices)) != len(self.devices)):
            raise ValueError("devices must list at least one device, each once")
        if self.custom_pipeline is not None and self.pipeline is not None:
            raise ValueError("give pipeline (an import path) or custom_pipeline (a file), not both")
        return self


RUNTIME_ONLY = frozenset({"device", "devices", "offload", "vae_slicing", "max_batch_size", "batch_wait_ms",
                          "allow_download", "trust_remote_code", "revision"})
"""Options that do not change outputs (beyond float precision): kept out of cache keys. ``revision`` is
covered by the folder's fingerprint."""


@dataclass(frozen=True)
class Generation:
    """Every per-call value of one edit: requests share a batch only when all of these are equal."""

    num_inference_steps: int | None
    guidance_scale: float | None
    image_guidance_scale: float | None
    true_cfg_scale: float | None
    negative_prompt: str | None
    max_area: int | None
    condition_area: int | None
    output_size: Literal["keep", "native"]
    input_size: tuple[int, int]  # (width, height): diffusers resizes a batch to its first image's size
    max_batch: int  # the asking editor's batching settings: editors sharing one pipeline may differ
    wait_s: float

    def given(self) -> dict[str, object]:
        """The generation options that are set (the adapter maps them onto its pipeline's arguments)."""
        return {name: getattr(self, name) for name in GENERATION_OPTIONS if getattr(self, name) is not None}
