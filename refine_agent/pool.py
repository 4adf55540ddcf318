"""Loaded models shared by every tool that names the same weights.

A local model used as judge, critic and evaluation judge must be loaded once: on a GPU each load is its own
copy of the weights. Tools look their backend up in the process-wide pool (``model_pool()``) under a
``ModelKey`` (what defines the weights: path, revision, dtype, device, and the kind of backend) instead of
loading their own. The first caller loads it; concurrent callers, in threads or tasks, wait for that one
load; later callers get the same object. API backends may pool their clients the same way.

Tools sharing a model should also share its concurrency limit: return the key from ``limiter_key()`` (see
``protocols.ToolHooks``), and the runtime gives them one limiter.

The pool holds arbitrary objects and imports nothing heavy. ``close()``/``aclose()`` closes every loaded
object (its ``aclose()`` or ``close()``, if any) and empties the pool; it stays usable afterwards.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["ModelKey", "ModelPool", "model_pool"]


@dataclass(frozen=True)
class ModelKey:
    """What defines a loaded model. Give canonical values (e.g. a resolved path, ``"bfloat16"``, ``"cuda:0"``):
    two keys name the same model only if every field is equal."""

    path: str
    revision: str | None = None
    dtype: str | None = None
    device: str | None = None
    kind: str = ""  # the backend that loads it (e.g. "transformers"): one path may be loaded two ways


class _Abandoned(Exception):
    """The task loading a model was cancelled before it finished: a waiter loads it itself."""


class ModelPool:
    """Objects loaded once per key and shared. Thread-safe and async-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[Any, Future[Any]] = {}

    # -- lookup --------------------------------------------------------------------------------------------
    def _slot(self, key: Any) -> tuple[Future[Any], bool]:
        """The key's slot, and whether the caller must load it (it is the first to ask)."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None:
                return slot, False
            slot = Future()
            self._slots[key] = slot
            return slot, True

    def _failed(self, key: Any, slot: Future[Any], exc: BaseException) -> None:
        # A failed load is not kept: the next caller tries again (the file may be back, the GPU freer).
        with self._lock:
            if self._slots.get(key) is slot:
                del self._slots[key]
        slot.set_exception(exc)

    def _load(self, key: Any, slot: Future[Any], loader: Callable[[], T]) -> None:
        try:
            value = loader()
        except BaseException as exc:  # the waiters get the loader's error too
            self._failed(key, slot, exc)
        else:
            slot.set_result(value)

    def get(self, key: Any, loader: Callable[[], T]) -> T:
        """The object under ``key``, loaded by ``loader()`` in this thread if no one has loaded it yet.
        A caller that finds a load in progress (another thread's) waits for it."""
        while True:
            slot, mine = self._slot(key)
            if mine:
                self._load(key, slot, loader)
            try:
                return slot.result()
            except _Abandoned:
                continue

    async def aget(self, key: Any, loader: Callable[[], T] | Callable[[], Awaitable[T]]) -> T:
        """The object under ``key``, loaded once. A plain ``loader`` runs in a worker thread (loading weights
        blocks), an async one in this task. Waiters share the one load; a waiter's cancellation never
        cancels it, and a load whose task is cancelled is taken over by the next waiter."""
        while True:
            slot, mine = self._slot(key)
            if mine:
                if inspect.iscoroutinefunction(loader):
                    try:
                        value = await loader()
                    except asyncio.CancelledError:
                        self._failed(key, slot, _Abandoned())
                        raise
                    except BaseException as exc:
                        self._failed(key, slot, exc)
                    else:
                        slot.set_result(value)
                else:  # the thread finishes the load even if this task is cancelled, so no one is left waiting
                    await asyncio.shield(asyncio.to_thread(self._load, key, slot, loader))  # type: ignore[arg-type]
            try:
                return await asyncio.shield(asyncio.wrap_future(slot))
            except _Abandoned:
                continue

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is loaded (not loading, not failed)."""
        with self._lock:
            slot = self._slots.get(key)
        return slot is not None and slot.done() and slot.exception() is None

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for s in self._slots.values() if s.done() and s.exception() is None)

    # -- closing -------------------------------------------------------------------------------------------
    def _take(self, key: Any = None, every: bool = True) -> list[Any]:
        """Remove loaded objects (all, or ``key``'s) from the pool; each object once, in load order."""
        with self._lock:
            keys = list(self._slots) if every else [key] if key in self._slots else []
            taken = [self._slots[k] for k in keys if self._slots[k].done()]
            for k in keys:
                if self._slots[k].done():
                    del self._slots[k]
        values: list[Any] = []
        for slot in taken:
            if slot.exception() is None and all(slot.result() is not v for v in values):
                values.append(slot.result())
        return values

    async def aclose(self) -> None:
        """Close every loaded object (``aclose()``, else ``close()``) and empty the pool. Loads still in
        progress are left to finish; call it once no tool is loading, at the end of a run."""
        await _close_all(self._take())

    def close(self) -> None:
        """``aclose()`` for code without an event loop: an object's ``aclose()`` runs in a fresh loop."""
        asyncio.run(_close_all(self._take()))

    async def drop(self, key: Any) -> None:
        """Close and remove one loaded object, e.g. to free a GPU for another model."""
        await _close_all(self._take(key, every=False))


async def _close_all(values: list[Any]) -> None:
    errors: list[BaseException] = []
    for value in values:  # every object gets its close, whatever an earlier one raised
        try:
            closer = getattr(value, "aclose", None)
            if callable(closer):
                result = closer()
            else:
                closer = getattr(value, "close", None)
                result = closer() if callable(closer) else None
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


_POOL = ModelPool()


def model_pool() -> ModelPool:
    """The process-wide pool every tool uses."""
    return _POOL
