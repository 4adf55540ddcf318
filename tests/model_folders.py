"""Build a tiny model folder once per test session, safely when test workers build at the same time."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def build_once(root: Path, name: str, builder: Callable[[Path], Path], marker: str) -> Path:
    """`root/name`, built by `builder` unless it already holds `marker` (the file written last but one).

    Builds into a temporary sibling and renames it into place, so concurrent test workers never see half a
    folder (save_pretrained writes its index or config before the weights).
    """
    root = Path(root)
    folder = root / name
    if (folder / marker).exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        builder(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists() and not (folder / marker).exists():
        shutil.rmtree(folder, ignore_errors=True)  # debris of an interrupted build by other means
    try:
        tmp.rename(folder)
    except OSError:  # another worker finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / marker).exists():
            raise
    return folder
