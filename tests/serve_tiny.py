"""Run `transformers serve` (the OpenAI-compatible server that ships with transformers) where torchvision is
missing: ``python -m tests.serve_tiny [serve options] FOLDER``.

The stock server loads every model's processor with ``AutoProcessor.from_pretrained``, and in transformers 5
the Qwen-VL processors build a video processor that needs torchvision, so without it the server cannot load a
Qwen-VL folder at all. This launcher changes one thing: the server's processor loader
(``ModelManager._load_processor``) loads a local folder with ``load_processor`` from
``refine_agent.tools.local.vlm_processor`` (the same processor class, image-only), then runs the transformers
CLI's own ``serve`` command in this process. Everything else (FastAPI routes, request validation, the chat
template, generation, reasoning and finish-reason handling, the JSON it returns) is the real server code,
serving a real (tiny, random-weight) model. With torchvision installed ``load_processor`` is
``AutoProcessor.from_pretrained``, so the patch changes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def patch_processor_loading() -> None:
    """Make `transformers serve` load local folders' processors with the image-only loader."""
    from refine_agent.tools.local.vlm_processor import load_processor
    from transformers.cli.serving.model_manager import ModelManager
    from transformers.cli.serving.utils import split_revision

    stock = ModelManager._load_processor
    if getattr(stock, "_image_only", False):
        return

    def _load_processor(self: Any, model_id_and_revision: str, gguf_file: str | None = None) -> Any:
        model_id, _ = split_revision(model_id_and_revision)
        if gguf_file is None and Path(model_id).is_dir():
            return load_processor(Path(model_id))
        return stock(self, model_id_and_revision, gguf_file=gguf_file)

    _load_processor._image_only = True  # type: ignore[attr-defined]
    ModelManager._load_processor = _load_processor  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    """``transformers serve *argv`` in this process, after `patch_processor_loading`."""
    patch_processor_loading()
    from transformers.cli.transformers import app  # the `transformers` console script's typer app

    # app() rather than the console script's main(), which first asks the hub whether the CLI is up to date.
    app(["serve", *(sys.argv[1:] if argv is None else argv)], prog_name="transformers")


if __name__ == "__main__":
    main()
