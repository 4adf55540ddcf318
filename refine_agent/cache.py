"""The content-addressed cache of tool results.

A key is the sha256 of the tool's identity (name + semantic params), the operation, the input image
hashes, the text and the seed. ``Cache`` is the interface; ``MemoryCache`` keeps results in this process.
The run directory's on-disk cache implements the same two methods.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .types import JudgeRequest


class Cache(Protocol):
    async def get(self, key: str) -> Any | None: ...

    async def put(self, key: str, value: Any) -> None: ...


def canonical(value: Any) -> Any:
    """A JSON value that represents ``value`` exactly and the same way in every process.

    Images become their content hash, arrays a hash of their bytes, sets a sorted list and pydantic models
    their JSON dump. Anything else is refused: a key built from ``str()`` of an object would be unstable.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    sha = getattr(value, "sha256", None)
    if isinstance(sha, str):  # an Image
        return {"image": sha}
    if hasattr(value, "model_dump"):
        return canonical(value.model_dump(mode="json"))
    if hasattr(value, "dtype") and hasattr(value, "tobytes"):  # numpy scalars and arrays
        if getattr(value, "ndim", 1) == 0:
            return canonical(value.item())
        digest = hashlib.sha256(value.tobytes()).hexdigest()
        return {"ndarray": digest, "shape": list(value.shape), "dtype": str(value.dtype)}
    if hasattr(value, "value") and type(value).__module__ != "builtins":  # enums
        return canonical(value.value)
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"cannot build a cache key from a {type(value).__name__}; give JSON-like values")


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
    blob = json.dumps(canonical(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def judged_images(source: Any, edited: Any, mask: Any = None) -> list[str]:
    """The hashes of the images a judgment (and a critique) depends on: source, edited and the mask, if any."""
    return [source.sha256, edited.sha256] + ([mask.sha256] if mask is not None else [])


def judge_request_key(identity: dict[str, Any], req: JudgeRequest) -> str:
    """The one cache key of a judgment, used by the loop, the bench's evaluation judge and rejudge alike.

    It depends on the judge's identity, the judged images (source, edited and the judging mask, if any), the
    original instruction, the seed and the context (only when there is one), so a resumed run or a rejudge
    finds the judgments already made.
    """
    return cache_key(identity, "judge", images=judged_images(req.source, req.edited, req.mask),
                     text=req.instruction, seed=req.seed, extra={"context": req.context} if req.context else None)


def identity_hash(identity: dict[str, Any]) -> str:
    """A short hash of a tool's identity: the key of an evaluation judge's verdicts in a run's store."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _copy(value: Any) -> Any:
    # Results are pydantic models; hand out copies so two rounds never share one mutable record.
    copy = getattr(value, "model_copy", None)
    return copy(deep=True) if callable(copy) else value


def _nbytes(value: Any) -> int:
    """Roughly what a cached result holds in memory: its image's pixels (records themselves are small)."""
    image = getattr(value, "image", None)
    return int(getattr(getattr(image, "array", None), "nbytes", 0)) + 1024


class MemoryCache:
    """An LRU cache in memory, bounded in entries and in image bytes. Images are immutable, so the copies
    handed out share their pixels."""

    def __init__(self, max_entries: int = 4096, max_bytes: int = 1 << 30) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self.nbytes = 0
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
        self.nbytes -= self._sizes.pop(key, 0)
        self._data[key] = _copy(value)
        self._data.move_to_end(key)
        self._sizes[key] = _nbytes(value)
        self.nbytes += self._sizes[key]
        while len(self._data) > 1 and (len(self._data) > self.max_entries or self.nbytes > self.max_bytes):
            old, _ = self._data.popitem(last=False)
            self.nbytes -= self._sizes.pop(old)

    def __len__(self) -> int:
        return len(self._data)
