"""One adapter per editing pipeline class: how our edit request maps onto that pipeline's own arguments, and
what the pipeline can and cannot do.

The class comes from ``model_index.json``'s ``_class_name`` (or the user's import path), never from the
model's name. Pipelines that cannot edit (text-to-image, img2img, inpaint, video) are refused with the list
of supported classes.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np

from refine_agent.errors import ConfigError

from .settings import GENERATION_OPTIONS, DiffusersOptions, Generation

DEFAULT_BATCH = 4


class EditAdapter:
    """How to call one pipeline class for a batch of edits that share their ``Generation`` settings."""

    class_name: ClassVar[str]
    takes: ClassVar[frozenset[str]]  # the generation options its pipeline takes
    defaults: ClassVar[dict[str, Any]] = {}  # model-card settings applied when the user gives none
    max_batch: ClassVar[int] = 64  # edits one call can take
    multiple: ClassVar[int] = 8  # output sides are multiples of this (the VAE's, and packing's, factor)
    sizes_output: ClassVar[bool] = True  # takes height and width (else its output is the input's size)
    takes_mask: ClassVar[bool] = False  # gets the request's mask (white: may change)
    uses_qwen_processor: ClassVar[bool] = False

    def check(self, options: DiffusersOptions) -> None:
        """Refuse, at start-up, options this pipeline does not take."""
        given = [n for n in GENERATION_OPTIONS if getattr(options, n) is not None]
        refused = [n for n in given if n not in self.takes]
        if refused:
            takes = ", ".join(sorted(self.takes)) or "none"
            raise ConfigError(f"the diffusers editor for {self.class_name} does not take {', '.join(refused)} "
                              f"(it takes: {takes})")

    def default_batch(self) -> int:
        return min(DEFAULT_BATCH, self.max_batch)

    def output_size(self, gen: Generation) -> tuple[int, int] | None:
        """(width, height) to ask for, or None to let the pipeline choose (``output_size=native``)."""
        if gen.output_size == "native" or not self.sizes_output:
            return None
        m = self.multiple
        w, h = gen.input_size
        return max(m, w // m * m), max(m, h // m * m)

    def settings(self, gen: Generation) -> dict[str, Any]:
        """The generation options for the call: the user's, else the adapter's defaults."""
        return {**{k: v for k, v in self.defaults.items() if k in self.takes}, **gen.given()}

    def kwargs(self, gen: Generation, prompts: list[str], images: list[Any], generators: list[Any],
               masks: list[Any] | None = None) -> dict[str, Any]:
        """The pipeline call's keyword arguments for one batch (lists, one entry per edit). ``masks`` (white:
        may change) reach only pipelines that take one (a custom pipeline that maps ``mask``)."""
        settings = self.settings(gen)
        kw: dict[str, Any] = {"prompt": prompts, "image": images, "generator": generators, "output_type": "np"}
        # condition_area is no argument: the service applies it around the call (qwen_area.py)
        kw.update({k: v for k, v in settings.items() if k not in ("negative_prompt", "condition_area")})
        if "negative_prompt" in settings:  # a list: some pipelines do not repeat a single string for a batch
            kw["negative_prompt"] = [settings["negative_prompt"]] * len(prompts)
        size = self.output_size(gen)
        if size is not None:
            kw["width"], kw["height"] = size
        return kw

    def pipeline_class(self) -> type:
        import diffusers

        cls = getattr(diffusers, self.class_name, None)
        if cls is None:
            raise ConfigError(f"this diffusers ({diffusers.__version__}) has no {self.class_name}; upgrade it: "
                              "pip install -U diffusers")
        return cls  # type: ignore[no-any-return]


class InstructPix2Pix(EditAdapter):
    class_name = "StableDiffusionInstructPix2PixPipeline"
    takes = frozenset({"num_inference_steps", "guidance_scale", "image_guidance_scale", "negative_prompt"})
    sizes_output = False  # it generates at the input's size (rounded down to a multiple of 8)


class SDXLInstructPix2Pix(EditAdapter):
    class_name = "StableDiffusionXLInstructPix2PixPipeline"
    takes = InstructPix2Pix.takes  # and height/width: without them it makes 1024x1024


class QwenImageEdit(EditAdapter):
    class_name = "QwenImageEditPipeline"
    takes = frozenset({"num_inference_steps", "true_cfg_scale", "negative_prompt", "condition_area"})
    # The model card's setting: true CFG (4.0, the pipeline's default) only works with a negative prompt.
    defaults = {"negative_prompt": " "}
    multiple = 16
    uses_qwen_processor = True

    def check(self, options: DiffusersOptions) -> None:
        super().check(options)
        if options.true_cfg_scale is not None and options.true_cfg_scale > 1 and options.negative_prompt == "":
            raise ConfigError(f"{self.class_name}: true_cfg_scale applies only with a non-empty negative_prompt "
                              "(leave negative_prompt unset for the model card's ' ')")



class QwenImageEditPlus(QwenImageEdit):
    """The 2509/2511 checkpoints: several reference images for one prompt, so one edit per call."""

    class_name = "QwenImageEditPlusPipeline"
    max_batch = 1

    def kwargs(self, gen: Generation, prompts: list[str], images: list[Any], generators: list[Any],
               masks: list[Any] | None = None) -> dict[str, Any]:
        kw = super().kwargs(gen, prompts, images, generators)
        kw["prompt"], kw["image"] = prompts[0], [images[0]]  # image: its list of references
        if "negative_prompt" in kw:
            kw["negative_prompt"] = kw["negative_prompt"][0]
        return kw


class FluxKontext(EditAdapter):
    class_name = "FluxKontextPipeline"
    takes = frozenset({"num_inference_steps", "guidance_scale", "true_cfg_scale", "negative_prompt", "max_area"})
    multiple = 16

    def check(self, options: DiffusersOptions) -> None:
        super().check(options)
        if options.max_area is not None and options.output_size == "keep":
            raise ConfigError("FluxKontextPipeline: max_area sets the size for output_size=native; with "
                              "output_size=keep the input's size is used")

    def kwargs(self, gen: Generation, prompts: list[str], images: list[Any], generators: list[Any],
               masks: list[Any] | None = None) -> dict[str, Any]:
        kw = super().kwargs(gen, prompts, images, generators)
        if "width" in kw:  # keep: max_area would override height and width, and auto-resize the input
            kw["max_area"] = kw["width"] * kw["height"]
            kw["_auto_resize"] = False
        return kw


class Flux2Klein(EditAdapter):
    class_name = "Flux2KleinPipeline"
    takes = frozenset({"num_inference_steps", "guidance_scale"})
    max_batch = 1  # its image argument is a list of references for one prompt
    multiple = 16

    def kwargs(self, gen: Generation, prompts: list[str], images: list[Any], generators: list[Any],
               masks: list[Any] | None = None) -> dict[str, Any]:
        kw = super().kwargs(gen, prompts, images, generators)
        kw["prompt"], kw["image"], kw["generator"] = prompts[0], images[0], generators[0]
        return kw


ADAPTERS: dict[str, type[EditAdapter]] = {a.class_name: a for a in (
    InstructPix2Pix, SDXLInstructPix2Pix, QwenImageEdit, QwenImageEditPlus, FluxKontext, Flux2Klein)}

OUR_ARGUMENTS = ("prompt", "image", "generator", "output_type", "height", "width", "mask", *GENERATION_OPTIONS)


class CustomPipeline(EditAdapter):
    """A pipeline diffusers does not ship (e.g. UltraEdit's SD3 InstructPix2Pix), called through its own
    argument names: ``options.arguments`` maps ours onto them; names its ``__call__`` has map to themselves."""

    def __init__(self, cls: type, options: DiffusersOptions) -> None:
        self.cls = cls
        self.class_name = cls.__name__  # type: ignore[misc]
        signature = inspect.signature(cls.__call__)
        params = {n for n in signature.parameters if n != "self"}
        unknown = sorted(set(options.arguments) - set(OUR_ARGUMENTS))
        if unknown:
            raise ConfigError(f"arguments maps unknown names {', '.join(unknown)}; map any of: "
                              f"{', '.join(OUR_ARGUMENTS)}")
        missing = sorted(v for v in options.arguments.values() if v not in params)
        if missing:
            raise ConfigError(f"{self.class_name}.__call__ has no argument {', '.join(missing)} (it takes: "
                              f"{', '.join(sorted(params))})")
        self.names = {ours: options.arguments.get(ours, ours) for ours in OUR_ARGUMENTS
                      if options.arguments.get(ours, ours) in params}
        for needed in ("prompt", "image", "generator"):
            if needed not in self.names:
                raise ConfigError(f"{self.class_name}.__call__ has no argument for our '{needed}': map it with "
                                  f"-E arguments='{{\"{needed}\": \"its_name\"}}'")
        self.takes = frozenset(n for n in GENERATION_OPTIONS if n in self.names)  # type: ignore[misc]
        self.sizes_output = "height" in self.names and "width" in self.names  # type: ignore[misc]
        self.takes_mask = "mask" in self.names  # type: ignore[misc]

    def default_batch(self) -> int:
        return 1  # unknown code: lists of prompts may not be supported; raise max_batch_size if they are

    def kwargs(self, gen: Generation, prompts: list[str], images: list[Any], generators: list[Any],
               masks: list[Any] | None = None) -> dict[str, Any]:
        ours = super().kwargs(gen, prompts, images, generators)
        if "output_type" not in self.names:
            ours.pop("output_type")
        if "mask" in self.names:  # e.g. UltraEdit's mask_img; no mask: all white, a free-form edit
            ours["mask"] = [m if m is not None else _white(i) for m, i in zip(masks or [None] * len(images), images,
                                                                           strict=True)]
        return {self.names[k]: v for k, v in ours.items() if k in self.names}

    def pipeline_class(self) -> type:
        return self.cls


def _white(image: Any) -> Any:
    from PIL import Image as PILImage

    return PILImage.new("RGB", image.size, (255, 255, 255))


def adapter_for(class_name: str) -> EditAdapter:
    """The adapter for a pipeline class named in model_index.json; a clear error for any other class."""
    adapter = ADAPTERS.get(class_name)
    if adapter is None:
        supported = ", ".join(sorted(ADAPTERS))
        raise ConfigError(f"{class_name} is not an editing pipeline the diffusers editor supports (supported: "
                          f"{supported}; for another editing pipeline give -E pipeline=pkg.module:Class)")
    return adapter()


def to_arrays(images: Any) -> list[np.ndarray]:
    """A pipeline's ``.images`` (a float array, a list of PIL images, or a tensor) as float32 HxWx3 in [0, 1]."""
    if hasattr(images, "detach"):  # a torch tensor, NCHW or NHWC
        images = images.detach().float().cpu().numpy()
        if images.ndim == 4 and images.shape[1] in (1, 3, 4) and images.shape[-1] not in (1, 3, 4):
            images = images.transpose(0, 2, 3, 1)
    out: list[np.ndarray] = []
    for image in images:
        if hasattr(image, "convert"):  # PIL
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        else:
            array = np.asarray(image, dtype=np.float32)
            if array.ndim == 2:
                array = np.repeat(array[..., None], 3, axis=-1)
            array = array[..., :3]
        out.append(np.clip(array, 0.0, 1.0))
    return out
