"""A Qwen2-VL processor that works without torchvision, for the Qwen-Image-Edit pipelines.

The Qwen-Image-Edit pipelines load a `Qwen2VLProcessor` from their `processor/` folder. In transformers 5 the
stock processor also builds a video processor, which needs torchvision, and `Qwen2VLProcessor.__init__`
refuses to be built without one. The pipelines only ever pass images, so an image-only processor (the saved
tokenizer plus the PIL image processor) is all they need; pass it as `processor=` to `from_pretrained`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any


@functools.cache
def needs_image_only_processor() -> bool:
    """True when torchvision cannot be imported, so the stock Qwen2VLProcessor cannot be loaded."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # not installed, or installed but broken (e.g. built for another torch)
        return True
    return False


@functools.cache
def _image_only_class() -> type:
    """A Qwen2VLProcessor subclass whose only sub-processors are the image processor and the tokenizer.

    ProcessorMixin takes its sub-processors from `__init__`'s parameter names, so dropping `video_processor`
    from the signature is what stops it looking up the torchvision-only video processor class.
    """
    from transformers import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                     **kwargs: Any) -> None:
            # What Qwen2VLProcessor.__init__ sets before calling ProcessorMixin.__init__ with a video processor.
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

    return ImageOnlyQwen2VLProcessor


def image_only_processor(folder: Path) -> Any:
    """A Qwen2VLProcessor for `folder/processor` built from its tokenizer and PIL image processor, no video.

    `folder` is the pipeline folder (the one with model_index.json). The image processor is configured from
    `processor/preprocessor_config.json` (or the image-processor part of `processor_config.json`).
    """
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

    processor_dir = Path(folder) / "processor"
    if not processor_dir.is_dir():
        raise FileNotFoundError(f"{processor_dir} does not exist: not a Qwen-Image-Edit pipeline folder?")
    tokenizer = AutoTokenizer.from_pretrained(processor_dir, local_files_only=True)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(processor_dir, local_files_only=True)
    template_file = processor_dir / "chat_template.jinja"
    chat_template = template_file.read_text(encoding="utf-8") if template_file.is_file() else None
    return _image_only_class()(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)
