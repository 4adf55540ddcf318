"""Run a coroutine for every item of a stream, a bounded number at a time, without losing any failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


async def for_each(items: Iterator[T], fn: Callable[[T], Awaitable[None]], limit: int) -> None:
    """Await ``fn(item)`` for every item, at most ``limit`` at once.

    Items are pulled in a worker thread (the iterator may read a database or files), only as fast as they
    are processed, so memory stays flat. The first exception cancels the rest and is raised. However it ends
    (a failure, the items raising, or the caller cancelled), no task of it is left running when it returns.

    Scheduling costs O(1) per item whatever ``limit`` is: a task starts per item under a semaphore and
    settles through a done-callback, so a limit far above the number of items starts no idle workers and
    no step waits on every task at once.
    """
    slots = asyncio.Semaphore(limit)
    pending: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    def settled(task: asyncio.Task[None]) -> None:
        pending.discard(task)
        slots.release()
        if task.cancelled() or task.exception() is None or failures:
            return
        failures.append(task.exception())  # type: ignore[arg-type]
        for other in pending:  # once per run: the first failure stops the rest
            other.cancel()

    try:
        while True:
            await slots.acquire()
            item = _END if failures else await asyncio.to_thread(next, items, _END)
            if item is _END or failures:
                break
            task = asyncio.create_task(fn(item))  # type: ignore[arg-type]
            pending.add(task)
            task.add_done_callback(settled)
        if pending:
            await asyncio.wait(set(pending))
        if failures:
            raise failures[0]
    finally:
        # The caller was cancelled (Ctrl-C) or the items raised: stop the rest, and return only once they have
        # finished their own cleanup, since the caller then closes the tools they use.
        left = list(pending)
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
