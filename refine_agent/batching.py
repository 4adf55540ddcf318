"""The dynamic batcher every batching backend uses (GPU editors, local VLMs, Ray actors).

Concurrent calls with the same batching key are gathered, up to ``max_size`` or until ``max_wait_s`` has
passed since the first of them, into one call of the model; results are scattered back in order. A request
cancelled before its batch starts is dropped from it. One bad request never fails its neighbours: a model
may answer a single failure in place, and a batch that fails as a whole is split in halves and run again
until the request that fails is alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Req = TypeVar("Req")
Res = TypeVar("Res")

# The model's call: a result (or an exception, for that request alone) per request, in order.
RunBatch = Callable[[list[Req]], Awaitable[Sequence["Res | BaseException"]]]


@dataclass
class _Pending(Generic[Req, Res]):
    requests: list[Req] = field(default_factory=list)
    futures: list[asyncio.Future[Res]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Batcher(Generic[Req, Res]):
    """Gather concurrent ``submit`` calls into batches for ``run_batch``.

    ``key(request)`` decides which requests may share a batch (e.g. the same image size or generation
    settings); ``max_batches`` is how many batches run at once (a GPU model: 1).
    """

    def __init__(self, run_batch: RunBatch[Req, Res], *, max_size: int = 8, max_wait_s: float = 0.01,
                 key: Callable[[Req], Hashable] | None = None, max_batches: int = 1) -> None:
        if max_size < 1 or max_wait_s < 0 or max_batches < 1:
            raise ValueError("max_size and max_batches must be >= 1 and max_wait_s >= 0")
        self.run_batch = run_batch
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.key = key or (lambda _request: None)
        self._slots = asyncio.Semaphore(max_batches)
        self._pending: dict[Hashable, _Pending[Req, Res]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self.batch_sizes: list[int] = []  # what ran, for tests and benchmarks

    async def submit(self, request: Req) -> Res:
        key = self.key(request)
        pending = self._pending.setdefault(key, _Pending())
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        pending.requests.append(request)
        pending.futures.append(future)
        if len(pending.requests) >= self.max_size:
            self._flush(key)
        elif pending.timer is None:
            pending.timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._flush, key)
        return await future

    def _flush(self, key: Hashable) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        task = asyncio.ensure_future(self._run(pending.requests, pending.futures))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, requests: list[Req], futures: list[asyncio.Future[Res]]) -> None:
        async with self._slots:
            # a request cancelled while it waited is dropped here, before the model sees it
            live = [(r, f) for r, f in zip(requests, futures, strict=True) if not f.done()]
            if live:
                await self._answer([r for r, _ in live], [f for _, f in live])

    async def _answer(self, requests: list[Req], futures: list[asyncio.Future[Res]]) -> None:
        self.batch_sizes.append(len(requests))
        try:
            results = list(await self.run_batch(requests))
            if len(results) != len(requests):
                raise RuntimeError(f"the batch call returned {len(results)} results for {len(requests)} requests")
        except Exception as exc:  # noqa: BLE001 (the whole batch failed: find the request that did it)
            if len(requests) == 1:
                _settle(futures[0], exc)
                return
            half = len(requests) // 2
            await self._answer(requests[:half], futures[:half])
            await self._answer(requests[half:], futures[half:])
            return
        for future, result in zip(futures, results, strict=True):
            _settle(future, result)

    async def aclose(self) -> None:
        """Fail what waits, and wait for the batches already running."""
        for key in list(self._pending):
            pending = self._pending.pop(key)
            if pending.timer is not None:
                pending.timer.cancel()
            for future in pending.futures:
                if not future.done():
                    future.set_exception(RuntimeError("the batcher was closed"))
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def _settle(future: asyncio.Future[Res], result: Res | BaseException) -> None:
    if future.done():  # cancelled while its batch ran
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
