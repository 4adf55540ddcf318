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
    are processed, so memory stays flat. The first exception cancels the rest and is raised.
    """
    pending: set[asyncio.Task[None]] = set()

    async def settle(when: str) -> None:
        nonlocal pending
        done, pending = await asyncio.wait(pending, return_when=when)
        for task in done:
            if task.exception() is not None:
                for other in pending:
                    other.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                raise task.exception()  # type: ignore[misc]

    try:
        while True:
            item = await asyncio.to_thread(next, items, _END)
            if item is _END:
                break
            if len(pending) >= limit:
                await settle(asyncio.FIRST_COMPLETED)
            pending.add(asyncio.create_task(fn(item)))  # type: ignore[arg-type]
        while pending:
            await settle(asyncio.FIRST_COMPLETED)
    finally:
        for task in pending:
            task.cancel()
