"""The content-addressed cache of tool results.

A key is the sha256 of the tool's identity (name + semantic params), the operation, the input image
hashes, the text and the seed. ``Cache`` is the interface; ``MemoryCache`` keeps results in this process.
The run directory's on-disk cache implements the same two methods.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any, Protocol


class Cache(Protocol):
    async def get(self, key: str) -> Any | None: ...

    async def put(self, key: str, value: Any) -> None: ...


def cache_key(identity: dict[str, Any], op: str, *, images: list[str], text: str, seed: int,
              extra: dict[str, Any] | None = None) -> str:
    """A stable key: the same tool, params, inputs and seed always map to the same key."""
    payload = {
        "tool": identity,
        "op": op,
        "images": images,
        "text": text,
        "seed": seed,
        "extra": extra or {},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _copy(value: Any) -> Any:
    # Results are pydantic models; hand out copies so two rounds never share one mutable record.
    copy = getattr(value, "model_copy", None)
    return copy(deep=True) if callable(copy) else value


class MemoryCache:
    """An LRU cache in memory. Images inside results are immutable, so copies stay cheap."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> Any | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return _copy(value)

    async def put(self, key: str, value: Any) -> None:
        self._data[key] = _copy(value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
