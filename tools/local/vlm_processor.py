"""Load a vision-language model's processor, image-only when torchvision is missing.

In transformers 5 the stock Qwen-VL processors (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) also build a video processor,
and the video processors need torchvision: without it `AutoProcessor.from_pretrained` fails with
"Qwen2VLVideoProcessor requires the Torchvision library" (raised by `AutoVideoProcessor` while the processor
loads its sub-processors), and the processor cannot be built with `video_processor=None` either. A judge only
passes images, so `load_processor` then builds the same processor class minus its video processor: the saved
tokenizer, the PIL image processor (`Qwen2VLImageProcessorPil`, which Qwen3-VL uses too) and the chat template.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger("refine_agent.local")

# Where a saved processor names its class, in the order AutoProcessor looks.
_CLASS_FILES = ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json",
                "tokenizer_config.json")


@functools.cache
def torchvision_available() -> bool:
    """True when torchvision imports, so the stock processors (with their video processors) can be built."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # not installed, or installed but broken (e.g. built for another torch)
        return False
    return True


def video_unavailable_reason() -> str | None:
    """Why video input cannot be processed here, or None when it can."""
    if torchvision_available():
        return None
    return "video input needs torchvision (transformers' video processors use it), which cannot be imported"


@functools.cache
def _warn_video_unavailable() -> None:
    # Cached: one warning per process, however many processors are loaded.
    logger.warning("%s; loading image-only processors", video_unavailable_reason())


def load_processor(path: Path, *, min_pixels: int | None = None, max_pixels: int | None = None) -> Any:
    """The processor saved in `path`, with the image processor's pixel bounds set where given.

    With torchvision this is `AutoProcessor.from_pretrained(path)`. Without it, a processor whose class has a
    video processor (the Qwen-VL ones) is rebuilt as a subclass without one (see `image_only_processor_class`);
    calling it with `videos=` raises. `min_pixels` / `max_pixels` bound the resized image area, so they set how
    many image tokens each image becomes.
    """
    from transformers import AutoProcessor

    path = Path(path)
    if torchvision_available():
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    else:
        processor_class = _saved_processor_class(path)
        if processor_class is None or "video_processor" not in processor_class.get_attributes():
            processor = AutoProcessor.from_pretrained(path, local_files_only=True)  # nothing needs torchvision
        else:
            _warn_video_unavailable()
            processor = _load_image_only(image_only_processor_class(processor_class), path)
    if min_pixels is not None or max_pixels is not None:
        _set_pixel_bounds(processor.image_processor, min_pixels, max_pixels)
    return processor


@functools.cache
def image_only_processor_class(base: type) -> type:
    """A subclass of the processor class `base` whose only sub-processors are its image processor and tokenizer.

    ProcessorMixin takes the sub-processors from `__init__`'s parameter names, so leaving `video_processor` out
    of the signature is what stops it looking one up. `base.__init__` still runs (it sets the image/video token
    ids, and Qwen3-VL's vision start/end ids) with `video_processor=None`; ProcessorMixin pairs its positional
    sub-processors with this class's two attribute names, so the trailing None is dropped.
    """
    from transformers.processing_utils import ProcessorMixin

    if not issubclass(base, ProcessorMixin) or "video_processor" not in base.get_attributes():
        raise TypeError(f"{base.__name__} has no video processor to leave out")

    def __init__(self: Any, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 **kwargs: Any) -> None:
        base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    def __call__(self: Any, *args: Any, videos: Any = None, **kwargs: Any) -> Any:
        if videos is not None:
            raise ValueError(f"{type(self).__name__} cannot process videos: {video_unavailable_reason()}")
        return base.__call__(self, *args, **kwargs)

    def to_dict(self: Any) -> dict[str, Any]:
        # Saved copies name the stock class, so they load as the full processor where torchvision exists.
        return {**base.to_dict(self), "processor_class": base.__name__}

    return type(f"ImageOnly{base.__name__}", (base,),
                {"__init__": __init__, "__call__": __call__, "to_dict": to_dict, "__module__": __name__,
                 "__doc__": f"{base.__name__} without a video processor (no torchvision here)."})


def _saved_processor_class(path: Path) -> type | None:
    """The processor class `path` names (as AutoProcessor finds it), else the one for its config's model type."""
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES, processor_class_from_name

    name = None
    for file_name in _CLASS_FILES:
        file = path / file_name
        if file.is_file() and (name := json.loads(file.read_text(encoding="utf-8")).get("processor_class")):
            break
    config_file = path / "config.json"
    if not name and config_file.is_file():
        name = PROCESSOR_MAPPING_NAMES.get(json.loads(config_file.read_text(encoding="utf-8")).get("model_type"))
    if not name:
        return None
    name = name.removeprefix("ImageOnly")  # a folder saved from an image-only processor by an older copy
    processor_class = processor_class_from_name(name)
    if processor_class is None:
        raise ValueError(f"{path}: unknown processor class {name!r}")
    return processor_class


def _load_image_only(processor_class: type, path: Path) -> Any:
    """`processor_class` built from `path`'s tokenizer, PIL image processor, chat template and processor config."""
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    # The PIL backend explicitly: transformers may think a broken torchvision install is usable.
    image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True, backend="pil")
    # The processor config's own settings and the chat template (chat_template.jinja, chat_template.json or
    # chat_templates/), resolved the way ProcessorMixin.from_pretrained does.
    processor_dict, _ = processor_class.get_processor_dict(path, local_files_only=True)
    return processor_class.from_args_and_dict([image_processor, tokenizer], processor_dict)


def _set_pixel_bounds(image_processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
    # Qwen2VLImageProcessor keeps the bounds as size={"shortest_edge": min_pixels, "longest_edge": max_pixels}.
    from transformers.image_utils import SizeDict

    size = image_processor.size
    image_processor.size = SizeDict(
        shortest_edge=min_pixels if min_pixels is not None else size.shortest_edge,
        longest_edge=max_pixels if max_pixels is not None else size.longest_edge,
    )
