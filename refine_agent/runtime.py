"""The one wrapper around every tool call: cache, limiter, timeout, classified retries, accounting, events.

Tools stay small: they do their work and raise typed errors. Concurrency limits, retries with backoff and
caching live here, once.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt

from .budget import BudgetTracker
from .cache import Cache, MemoryCache
from .errors import PermanentToolError, ToolCallFailed, ToolError, TransientToolError, describe
from .protocols import Tool, tool_capacity, tool_limiter_key
from .types import CallRecord, ControllerDecision, Critique, EditResult, ToolKind, Usage, Verdict

T = TypeVar("T")
RESULT_TYPES: dict[str, type] = {"editor": EditResult, "judge": Verdict, "critic": Critique,
                                 "controller": ControllerDecision}
_ATTEMPT: ContextVar[int] = ContextVar("refine_agent_attempt", default=1)
_METER: ContextVar[list[Usage] | None] = ContextVar("refine_agent_meter", default=None)


def current_attempt() -> int:
    """The attempt number (1, 2, ...) of the tool call running in this task.

    Tools that simulate or seed per attempt read it instead of keeping counters, so their behaviour does
    not depend on what ran before or alongside them.
    """
    return _ATTEMPT.get()


def bill(usage: Usage) -> None:
    """Report usage a tool was billed for inside the current call, as soon as the bill is known.

    A tool's result reports the usage of the attempt that succeeded. What an attempt that then failed was
    already billed for (the first of two requests, a timed-out judgment's finished repeats) would be lost;
    the runtime adds it from these reports, so cost is never under-counted.
    """
    meter = _METER.get()
    if meter is not None:
        meter.append(usage)


@contextmanager
def call_scope(attempt: int) -> Iterator[list[Usage]]:
    """Run one attempt of a tool call outside the runtime that made it (in a Ray actor, on its behalf): inside,
    ``current_attempt()`` is ``attempt`` and what ``bill()`` reports is collected in the yielded list, for the
    caller to bill where the runtime is."""
    meter: list[Usage] = []
    attempt_token, meter_token = _ATTEMPT.set(attempt), _METER.set(meter)
    try:
        yield meter
    finally:
        _METER.reset(meter_token)
        _ATTEMPT.reset(attempt_token)


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter, for transient errors only, and a finite number of attempts."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=4, ge=1, le=20, description="attempts per call, the first included")
    initial_wait: float = Field(default=0.5, ge=0, description="seconds before the first retry")
    max_wait: float = Field(default=30.0, ge=0, description="cap on one backoff wait")
    jitter: float = Field(default=0.5, ge=0, description="random seconds added to each wait")
    max_retry_after: float = Field(default=120.0, ge=0, description="cap on a server's Retry-After")


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: float | None = Field(default=600.0, gt=0, description="per attempt; None: no timeout")
    cache: bool = Field(default=True, description="reuse results of identical calls")


class ToolTimeout(TransientToolError):
    """A call that ran past the runtime's per-call timeout."""


@dataclass
class RuntimeEvent:
    phase: str  # "start" | "end" | "retry" | "cache_hit" | "fail"
    kind: ToolKind
    tool: str
    seconds: float = 0.0
    attempt: int = 0
    error: str | None = None


@dataclass
class RuntimeStats:
    calls: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    in_flight: int = 0
    cost_usd: float = 0.0


# the tool (kept alive, so its id stays unique; None for a limiter shared by key) and its semaphore
_Limit = tuple[object, asyncio.Semaphore]


@dataclass
class _Timing:
    queued: float = 0.0  # waiting for a capacity slot
    service: float = 0.0  # holding one
    lost: Usage = field(default_factory=Usage)  # billed to attempts that failed


@dataclass
class CallOutcome(Generic[T]):
    value: T
    record: CallRecord


def is_transient(tool: object, exc: BaseException) -> bool:
    """Retry only what may succeed next time. Unknown exceptions are permanent: never retry everything.
    Cancellation and other BaseExceptions are never retried, whatever a tool's hook says."""
    if not isinstance(exc, Exception):
        return False
    hook = getattr(tool, "is_transient", None)
    if callable(hook):
        verdict = hook(exc)
        if verdict is not None:
            return bool(verdict)
    if isinstance(exc, ToolError):
        return exc.transient
    return isinstance(exc, (TimeoutError, ConnectionError))


class Runtime:
    """Runs tool calls. Share one Runtime among concurrent ``refine()`` calls so limits are global."""

    def __init__(self, config: RuntimeConfig | None = None, *, cache: Cache | None = None,
                 sleep: Callable[[float], Awaitable[Any]] | None = None, rng_seed: int | None = None) -> None:
        self.config = config or RuntimeConfig()
        self.cache: Cache | None = cache if cache is not None else (MemoryCache() if self.config.cache else None)
        self.stats = RuntimeStats()
        # Semaphores belong to an event loop, so limiters are kept per loop (a Runtime may serve several).
        self._limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _Limit]] = (
            weakref.WeakKeyDictionary())
        self._listeners: list[Callable[[RuntimeEvent], None]] = []
        self._sleep = sleep or asyncio.sleep
        self._jitter_rng = random.Random(rng_seed)

    # -- events -----------------------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[RuntimeEvent], None]) -> None:
        self._listeners.append(listener)

    def _emit(self, event: RuntimeEvent) -> None:
        for listener in self._listeners:
            listener(event)

    # -- limiter ----------------------------------------------------------------------------------------
    def limiter(self, tool: object) -> asyncio.Semaphore:
        """One semaphore per tool instance (and event loop), sized by the tool's capacity.

        Tools whose ``limiter_key()`` returns the same key share one semaphore, and so one capacity: e.g. a
        judge and a critic on one loaded model. It is sized by the capacity of the first of them to call;
        such tools report the capacity of what they share.
        """
        per_loop = self._limiters.setdefault(asyncio.get_running_loop(), {})
        shared = tool_limiter_key(tool)
        # a shared limiter belongs to its key (owner None); one's own to the instance (ids are reused)
        key: Hashable = ("limiter_key", shared) if shared is not None else id(tool)
        owner = None if shared is not None else tool
        entry = per_loop.get(key)
        if entry is None or entry[0] is not owner:
            entry = (owner, asyncio.Semaphore(tool_capacity(tool)))
            per_loop[key] = entry
        return entry[1]

    # -- retries ----------------------------------------------------------------------------------------
    def _wait(self, state: RetryCallState) -> float:
        policy = self.config.retry
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, (int, float)) and retry_after >= 0:
            return min(float(retry_after), policy.max_retry_after)
        backoff = policy.initial_wait * (2 ** max(0, state.attempt_number - 1))
        return min(policy.max_wait, backoff) + self._jitter_rng.uniform(0, policy.jitter)

    async def _attempt(self, tool: Tool, invoke: Callable[[], Awaitable[T]], timing: _Timing) -> T:
        timeout = self.config.timeout_s
        asked = time.perf_counter()
        async with self.limiter(tool):
            granted = time.perf_counter()
            timing.queued += granted - asked
            meter: list[Usage] = []
            token = _METER.set(meter)
            try:
                try:
                    if timeout is None:
                        return await invoke()
                    return await asyncio.wait_for(invoke(), timeout)
                except asyncio.TimeoutError:
                    raise ToolTimeout(f"no answer within {timeout:g}s") from None
            except BaseException:
                timing.lost = sum(meter, timing.lost)
                raise
            finally:
                _METER.reset(token)
                timing.service += time.perf_counter() - granted

    # -- the call ---------------------------------------------------------------------------------------
    async def call(self, kind: ToolKind, tool: Tool, invoke: Callable[[], Awaitable[T]], *,
                   key: str | None = None, tracker: BudgetTracker | None = None,
                   timed: bool = False) -> CallOutcome[T]:
        """Run ``invoke`` (one call of ``tool``) with cache, limiter, timeout and retries.

        Returns the value and its CallRecord; raises ToolCallFailed when the call fails for good. Either
        way the call is charged to ``tracker`` and counted in ``stats`` before this returns. ``timed`` (for
        refinement rounds, not round 0) means no retry starts whose backoff wait would end past the
        tracker's ``max_seconds``: the attempt that started finishes, so the round is recorded whole.
        """
        name = getattr(tool, "name", type(tool).__name__)
        if key is not None and self.cache is not None:
            hit = await self.cache.get(key)
            if hit is not None:
                usage = getattr(hit, "usage", None) or Usage()
                record = CallRecord(kind=kind, tool=name, seconds=0.0, attempts=0, cached=True, usage=usage)
                self._account(kind, record, tracker)
                self.stats.cache_hits += 1
                self._emit(RuntimeEvent("cache_hit", kind, name))
                return CallOutcome(hit, record)

        attempts = 0
        timing = _Timing()
        expected = RESULT_TYPES.get(kind)
        start = time.perf_counter()
        self.stats.in_flight += 1
        self._emit(RuntimeEvent("start", kind, name))

        def before_sleep(state: RetryCallState) -> None:
            self.stats.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            self._emit(RuntimeEvent("retry", kind, name, attempt=state.attempt_number,
                                    error=describe(exc) if exc else None))

        async def checked() -> T:  # inside the attempt, so what a wrong-typed result was billed is kept
            value = await invoke()
            if expected is not None and not isinstance(value, expected):
                raise PermanentToolError(f"{kind} '{name}' returned a {type(value).__name__}, "
                                         f"not a {expected.__name__}")
            return value

        planned = [0.0]  # the next backoff wait, decided with the retry so the deadline can veto it

        def retry(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if exc is None or not is_transient(tool, exc):
                return False
            planned[0] = self._wait(state)
            limit = tracker.budget.max_seconds if timed and tracker is not None else None
            return limit is None or tracker.elapsed + planned[0] < limit  # type: ignore[union-attr]

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.retry.max_attempts),
            wait=lambda state: planned[0],
            retry=retry,
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    token = _ATTEMPT.set(attempts)
                    try:
                        value = await self._attempt(tool, checked, timing)
                    finally:
                        _ATTEMPT.reset(token)
        except Exception as exc:
            seconds = time.perf_counter() - start
            record = CallRecord(kind=kind, tool=name, seconds=seconds, attempts=attempts, error=describe(exc),
                                usage=timing.lost, service_s=timing.service, queued_s=timing.queued)
            self._account(kind, record, tracker)
            self.stats.failures += 1
            self._emit(RuntimeEvent("fail", kind, name, seconds=seconds, attempt=attempts,
                                    error=record.error))
            raise ToolCallFailed(kind, name, exc, attempts, record) from exc
        finally:
            self.stats.in_flight -= 1

        seconds = time.perf_counter() - start
        usage = (getattr(value, "usage", None) or Usage()) + timing.lost
        record = CallRecord(kind=kind, tool=name, seconds=seconds, attempts=attempts, usage=usage,
                            service_s=timing.service, queued_s=timing.queued)
        self._account(kind, record, tracker)
        if key is not None and self.cache is not None:
            await self.cache.put(key, value)
        self._emit(RuntimeEvent("end", kind, name, seconds=seconds, attempt=attempts))
        return CallOutcome(value, record)

    def _account(self, kind: ToolKind, record: CallRecord, tracker: BudgetTracker | None) -> None:
        self.stats.calls[kind] = self.stats.calls.get(kind, 0) + 1
        if not record.cached:
            self.stats.cost_usd += record.usage.cost_usd
        if tracker is not None:
            tracker.charge(kind, record.usage, cached=record.cached, attempts=max(1, record.attempts),
                           failed=record.error is not None)
