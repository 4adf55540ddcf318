"""Find a diffusers pipeline folder and read what it is, without loading any weights.

A spec names a local folder or a repo id in the user's own Hugging Face cache. Nothing is downloaded unless
the user opts in (``allow_download``). ``model_index.json`` says the pipeline class; its hash, the component
configs and the weight files' names and sizes make the fingerprint that goes into cache keys and records.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refine_agent.errors import ConfigError, describe

_CONFIG_NAMES = ("config.json", "scheduler_config.json", "tokenizer_config.json", "preprocessor_config.json",
                 "processor_config.json", "generation_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")


@dataclass(frozen=True)
class PipelineFolder:
    """A pipeline folder as read from disk: where it is, its class, its components and its fingerprint."""

    path: Path
    class_name: str
    components: dict[str, Any] = field(hash=False)  # model_index.json's entries other than "_..." keys
    fingerprint: str = ""


def resolve(spec: str, *, revision: str | None = None, allow_download: bool = False) -> Path:
    """The folder a spec names: a local folder, else a repo id found in the Hugging Face cache."""
    from refine_agent.tools.local.weights import resolve_weights

    if not spec:
        raise ConfigError("the diffusers editor needs a pipeline folder: diffusers:PATH (a folder with "
                          "model_index.json) or diffusers:ORG/NAME (a repo in your Hugging Face cache)")
    return resolve_weights(spec, what="the diffusers editor", revision=revision, allow_download=allow_download)


def read(path: Path) -> PipelineFolder:
    """Read ``model_index.json`` and fingerprint the folder. Raises ConfigError with one line."""
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ConfigError(f"{path} is not a diffusers pipeline folder: it has no model_index.json")
    try:
        raw = index_file.read_bytes()
        index = json.loads(raw.decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{index_file} cannot be read as JSON ({describe(exc)}); the folder is damaged") from None
    if not isinstance(index, dict) or not isinstance(index.get("_class_name"), str):
        raise ConfigError(f"{index_file} has no '_class_name': it does not describe a diffusers pipeline")
    components = {k: v for k, v in index.items() if not k.startswith("_")}
    for name, value in components.items():
        if _is_component(value) and not (path / name).is_dir():
            raise ConfigError(f"{path} is incomplete: model_index.json names the component '{name}' but the "
                              f"folder {path / name} is missing")
    return PipelineFolder(path=path, class_name=index["_class_name"], components=components,
                          fingerprint=fingerprint(path, raw, components))


def _is_component(value: Any) -> bool:
    """A model_index entry that is a loaded component: [library, class], not [null, null] or a plain value."""
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)


def fingerprint(path: Path, index_bytes: bytes, components: dict[str, Any]) -> str:
    """sha256 over model_index.json, each component's config files, and its weight files' names and sizes.

    Weights are not read (they may be tens of GB); a changed config or a replaced weight file of another size
    changes the fingerprint."""
    digest = hashlib.sha256(index_bytes)
    for name in sorted(n for n, v in components.items() if _is_component(v)):
        folder = path / name
        for file in sorted(folder.rglob("*")):
            if not file.is_file():
                continue
            rel = file.relative_to(path).as_posix()
            if file.name in _CONFIG_NAMES:
                digest.update(f"\0{rel}\0".encode())
                digest.update(file.read_bytes())
            elif file.name.endswith(_WEIGHT_SUFFIXES):
                digest.update(f"\0{rel}\0{file.stat().st_size}".encode())
    return digest.hexdigest()[:16]
