"""Where local weights are: a folder, or a repo id already in the user's Hugging Face cache.

Nothing is downloaded unless the user opts in (``allow_download``): model weights are large, and a run
should use exactly the files the user has.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from refine_agent.errors import ConfigError, describe

LOADING = threading.Lock()
"""Held while any local model loads (diffusers pipelines, transformers models): both load on the meta device
by patching torch globally, so two loads in two threads corrupt each other ("Cannot copy out of meta tensor")."""

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_weights(spec: str, *, what: str, revision: str | None = None, allow_download: bool = False) -> Path:
    """The folder ``spec`` names; ``what`` is how errors name it (e.g. ``diffusers:PATH``)."""
    if not spec:
        raise ConfigError(f"{what} needs a folder: a local folder, or a repo id in your Hugging Face cache")
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{what}: {spec} is a file; give the model's folder")
        return path.resolve()
    if not _REPO_ID.match(spec):
        raise ConfigError(f"{what}: {spec}: no such folder (give a local folder, or a repo id such as "
                          "Qwen/Qwen2.5-VL-7B-Instruct that is in your Hugging Face cache)")
    try:
        from huggingface_hub import snapshot_download
    except ModuleNotFoundError:
        raise ConfigError(f"{what}: {spec}: no such folder, and huggingface_hub is not installed to look in the "
                          "Hugging Face cache: pip install 'refine-agent[local]'") from None
    try:
        return Path(snapshot_download(spec, revision=revision, local_files_only=not allow_download)).resolve()
    except Exception as exc:  # noqa: BLE001 (hub errors have many types; each becomes one line)
        if allow_download:
            raise ConfigError(f"{what}: cannot download {spec}: {describe(exc)}") from None
        raise ConfigError(f"{what}: {spec} is not a local folder and not in your Hugging Face cache; download "
                          "it yourself (hf download), give its folder, or set allow_download=true") from None


def resolve_dtype(name: str, devices: tuple[str, ...]) -> str:
    """The dtype ``auto`` means on these devices: bfloat16 on GPUs that have it, else float16; float16 on
    Apple GPUs; float32 on CPUs, where half precision is slow or unsupported."""
    if name != "auto":
        return name
    import torch

    kinds = {d.split(":")[0] for d in devices}
    if kinds == {"cuda"}:
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if kinds == {"mps"}:
        return "float16"
    return "float32"


def load_failure(exc: BaseException) -> str:
    """Why weights would not load, in one line: a damaged or missing weight file said plainly (diffusers and
    transformers word it several ways), else the exception's first line."""
    text = describe(exc)
    lowered = text.lower()
    if "unable to load weights from checkpoint" in lowered or "deserializ" in lowered or "SafetensorError" in text:
        file = re.search(r"'([^']+)'", text)
        which = f" {file.group(1)}" if file else ""
        return f"the weight file{which} is damaged or is not a weights file; download it again"
    if "no file named" in lowered:
        return f"a weight file is missing: {text.split(': ', 1)[-1]}"
    return text
