"""The dynamic batcher every batching backend uses (GPU editors, local VLMs, Ray actors).

Concurrent calls with the same batching key are gathered into one call of the model. A group of requests is
*ready* when it holds ``max_size`` requests or its first request has waited ``max_wait_s``; a free slot (a
replica of the model: ``max_batches`` of them) takes the ready group whose first request is oldest, so no key
starves another. While every slot is busy, groups keep filling, so a loaded model runs full batches.

Results are scattered back in order. A request cancelled before its batch starts is dropped from it. One
bad request never fails its neighbours: a model may answer a single failure in place, and a batch that fails
as a whole is split in halves and run again until the request that fails is alone.
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
class _Group(Generic[Req, Res]):
    """Requests waiting under one key, oldest first."""

    since: float  # when its first waiting request arrived (loop time)
    requests: list[Req] = field(default_factory=list)
    futures: list[asyncio.Future[Res]] = field(default_factory=list)

    def drop_cancelled(self) -> None:
        live = [(r, f) for r, f in zip(self.requests, self.futures, strict=True) if not f.done()]
        self.requests = [r for r, _ in live]
        self.futures = [f for _, f in live]


class Batcher(Generic[Req, Res]):
    """Gather concurrent ``submit`` calls into batches for ``run_batch``.

    ``key(request)`` decides which requests may share a batch (e.g. the same image size and generation
    settings). ``max_size`` is the largest batch and ``max_wait_s`` the longest wait; ``limit(key)`` and
    ``wait(key)``, if given, set them per key (callers sharing one model may ask for different batch sizes;
    a pipeline may take batch 1 only). ``max_batches`` is how many batches run at once: the model's replicas
    (one GPU: 1).
    """

    def __init__(self, run_batch: RunBatch[Req, Res], *, max_size: int = 8, max_wait_s: float = 0.01,
                 key: Callable[[Req], Hashable] | None = None, max_batches: int = 1,
                 limit: Callable[[Hashable], int] | None = None,
                 wait: Callable[[Hashable], float] | None = None) -> None:
        if max_size < 1 or max_wait_s < 0 or max_batches < 1:
            raise ValueError("max_size and max_batches must be >= 1 and max_wait_s >= 0")
        self.run_batch = run_batch
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.max_batches = max_batches
        self.key = key or (lambda _request: None)
        self.limit = limit
        self.wait = wait
        self._groups: dict[Hashable, _Group[Req, Res]] = {}
        self._busy = 0  # batches running now
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False
        self.batch_sizes: list[int] = []  # what ran, for tests and benchmarks

    def size_for(self, key: Hashable) -> int:
        """The largest batch for ``key``."""
        return max(1, min(self.max_size, self.limit(key))) if self.limit is not None else self.max_size

    def wait_for(self, key: Hashable) -> float:
        """How long a partial batch for ``key`` waits for more requests."""
        return max(0.0, self.wait(key)) if self.wait is not None else self.max_wait_s

    async def submit(self, request: Req) -> Res:
        if self._closed:
            raise RuntimeError("the batcher was closed")
        loop = asyncio.get_running_loop()
        key = self.key(request)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(since=loop.time())
        future: asyncio.Future[Res] = loop.create_future()
        group.requests.append(request)
        group.futures.append(future)
        self._dispatch()
        return await future

    # -- dispatch ------------------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Start ready groups on free slots, oldest first; arm the timer for the next group to become ready."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._busy < self.max_batches:
            ready = [(g.since, k) for k, g in self._groups.items() if self._ready(k, g, now)]
            if not ready:
                break
            _, key = min(ready, key=lambda item: item[0])
            self._start(key)
        self._arm(loop, now)

    def _ready(self, key: Hashable, group: _Group[Req, Res], now: float) -> bool:
        group.drop_cancelled()  # a cancelled request neither fills a batch nor keeps one waiting
        if not group.requests:
            return False
        return len(group.requests) >= self.size_for(key) or now - group.since >= self.wait_for(key)

    def _start(self, key: Hashable) -> None:
        group = self._groups[key]
        size = self.size_for(key)
        requests, futures = group.requests[:size], group.futures[:size]
        group.requests, group.futures = group.requests[size:], group.futures[size:]
        if group.requests:  # the rest waits as a new group, from now
            group.since = asyncio.get_running_loop().time()
        else:
            del self._groups[key]
        self._busy += 1
        task = asyncio.ensure_future(self._run(requests, futures))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._busy -= 1
        if not self._closed:
            self._dispatch()

    def _arm(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting = [g.since + self.wait_for(k) for k, g in self._groups.items() if g.requests]
        if waiting and self._busy < self.max_batches:
            delay = max(0.0, min(waiting) - now)
            self._timer = loop.call_later(delay, self._dispatch)
        # every slot busy: the next _finished dispatches

    # -- running -------------------------------------------------------------------------------------------
    async def _run(self, requests: list[Req], futures: list[asyncio.Future[Res]]) -> None:
        live = [(r, f) for r, f in zip(requests, futures, strict=True) if not f.done()]
        if live:
            await self._answer([r for r, _ in live], [f for _, f in live])

    async def _answer(self, requests: list[Req], futures: list[asyncio.Future[Res]]) -> None:
        self.batch_sizes.append(len(requests))
        if len(self.batch_sizes) > 100_000:  # a long-lived model: keep the recent history only
            del self.batch_sizes[:50_000]
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
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for group in self._groups.values():
            for future in group.futures:
                if not future.done():
                    future.set_exception(RuntimeError("the batcher was closed"))
        self._groups.clear()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def _settle(future: asyncio.Future[Res], result: Res | BaseException) -> None:
    if future.done():  # cancelled while its batch ran
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)

