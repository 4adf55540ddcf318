"""The one way files are written: atomically and durably.

``write_atomic`` writes a temp file beside the target, fsyncs it, renames it over the target and fsyncs the
folder, so a killed process or a power loss leaves either the old file or the new one, never half a file.
The run store, ``write_json`` (run.json, summaries, trajectories, ledgers) and ``Image.save`` all use it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that it survives a crash: temp file, fsync, rename, fsync the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """JSON as we write it everywhere (indented, UTF-8, a final newline), atomically and durably."""
    return write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["write_atomic", "write_json"]
