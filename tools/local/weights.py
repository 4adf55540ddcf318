"""Where local weights are: a folder, or a repo id already in the user's Hugging Face cache.

Nothing is downloaded unless the user opts in (``allow_download``): model weights are large, and a run
should use exactly the files the user has.
"""

from __future__ import annotations

import re
from pathlib import Path

from refine_agent.errors import ConfigError

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
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ConfigError(f"{what}: cannot download {spec}: {first}") from None
        raise ConfigError(f"{what}: {spec} is not a local folder and not in your Hugging Face cache; download "
                          "it yourself (hf download), give its folder, or set allow_download=true") from None
