"""What a call to an actor needs besides the actor: which Ray errors mean the actor (not the request) failed, a
wake-up for the calls that wait for a free or restarted actor, and settling or cancelling a call's result."""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray import exceptions as rex

from refine_agent.errors import TransientToolError

# A call that failed because of where it ran, not what it asked: another actor may serve it.
ACTOR_LOST = (rex.RayActorError, rex.WorkerCrashedError, rex.NodeDiedError, rex.OutOfMemoryError,
              rex.LocalRayletDiedError)
TRANSIENT_FLAG = "_refine_transient"  # set on an error raised in an actor: the tool's own classification


class ActorLost(TransientToolError):
    """The actor serving a call died mid-call; the runtime retries the call on another actor."""


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


class Wakeup:
    """Wakes the calls that wait for an actor. Futures are made in the waiter's own event loop: a bench loads
    its tools in one loop and runs in another."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def fire(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, timeout: float | None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)


async def settle(ref: Any) -> None:
    try:
        await ref
    except Exception:  # a tool that cannot close, or an actor already gone: the kill follows anyway
        pass


def cancel(ref: Any) -> None:
    try:
        ray.cancel(ref)
    except Exception:  # the call already finished, or its actor is gone
        pass


