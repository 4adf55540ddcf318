import asyncio

import pytest

from refine_agent.budget import Budget, BudgetTracker
from refine_agent.cache import MemoryCache, cache_key
from refine_agent.errors import PermanentToolError, ToolCallFailed, TransientToolError
from refine_agent.runtime import RetryPolicy, Runtime, RuntimeConfig, bill, is_transient
from refine_agent.types import EditResult, Usage

from .conftest import solid

FAST = RuntimeConfig(retry=RetryPolicy(max_attempts=4, initial_wait=0.0, max_wait=0.0, jitter=0.0))


class Flaky:
    """Fails with the given exceptions in order, then succeeds."""

    name = "flaky"
    capacity = 1

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def edit(self) -> EditResult:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return EditResult(image=solid(1), usage=Usage(cost_usd=0.25))


async def test_transient_errors_are_retried_then_succeed() -> None:
    tool = Flaky(TransientToolError("503"), TimeoutError(), ConnectionError())
    rt = Runtime(FAST)
    out = await rt.call("editor", tool, tool.edit)
    assert tool.calls == 4 and out.record.attempts == 4 and out.record.error is None
    assert rt.stats.retries == 3


async def test_retries_are_finite() -> None:
    tool = Flaky(*[TransientToolError("503")] * 10)
    with pytest.raises(ToolCallFailed, match="after 4 attempts") as info:
        await Runtime(FAST).call("editor", tool, tool.edit)
    assert tool.calls == 4 and info.value.attempts == 4


@pytest.mark.parametrize("exc", [PermanentToolError("401 bad key"), ValueError("bug"), KeyError("x")])
async def test_permanent_and_unknown_errors_are_never_retried(exc: Exception) -> None:
    tool = Flaky(exc)
    tracker = BudgetTracker(Budget())
    with pytest.raises(ToolCallFailed) as info:
        await Runtime(FAST).call("editor", tool, tool.edit, tracker=tracker)
    assert tool.calls == 1 and info.value.cause is exc
    assert tracker.usage.failed_calls == 1 and tracker.usage.calls["editor"] == 1


async def test_tool_hook_overrides_classification() -> None:
    class Hooked(Flaky):
        def is_transient(self, exc: BaseException) -> bool | None:
            return isinstance(exc, ValueError)

    tool = Hooked(ValueError("server said retry"))
    await Runtime(FAST).call("editor", tool, tool.edit)
    assert tool.calls == 2
    assert is_transient(tool, KeyError()) is False


async def test_retry_after_is_honoured_and_capped() -> None:
    waits: list[float] = []

    async def fake_sleep(s: float) -> None:
        waits.append(s)

    cfg = RuntimeConfig(retry=RetryPolicy(max_attempts=3, initial_wait=1.0, jitter=0.0, max_retry_after=5.0))
    tool = Flaky(TransientToolError("429", retry_after=2.5), TransientToolError("429", retry_after=999))
    await Runtime(cfg, sleep=fake_sleep).call("editor", tool, tool.edit)
    assert waits == [2.5, 5.0]


async def test_backoff_is_exponential_with_jitter() -> None:
    waits: list[float] = []

    async def fake_sleep(s: float) -> None:
        waits.append(s)

    cfg = RuntimeConfig(retry=RetryPolicy(max_attempts=5, initial_wait=1.0, max_wait=6.0, jitter=0.5))
    tool = Flaky(*[TransientToolError("x")] * 4)
    await Runtime(cfg, sleep=fake_sleep, rng_seed=1).call("editor", tool, tool.edit)
    base = [1.0, 2.0, 4.0, 6.0]
    assert all(b <= w <= b + 0.5 for w, b in zip(waits, base, strict=True))


async def test_timeout_is_transient_and_retried() -> None:
    class Slow:
        name = "slow"
        calls = 0

        async def edit(self) -> EditResult:
            self.calls += 1
            if self.calls == 1:
                await asyncio.sleep(5)
            return EditResult(image=solid(2))

    cfg = RuntimeConfig(timeout_s=0.05, retry=FAST.retry)
    tool = Slow()
    out = await Runtime(cfg).call("editor", tool, tool.edit)
    assert tool.calls == 2 and out.record.attempts == 2


async def test_limiter_caps_concurrency_per_tool_instance() -> None:
    class Counting:
        name = "counting"

        def __init__(self, capacity: int) -> None:
            self.capacity = capacity
            self.active = 0
            self.peak = 0

        async def edit(self) -> EditResult:
            self.active += 1
            self.peak = max(self.peak, self.active)
            await asyncio.sleep(0.01)
            self.active -= 1
            return EditResult(image=solid(3))

    rt = Runtime(FAST)
    a, b = Counting(2), Counting(5)
    await asyncio.gather(*[rt.call("editor", a, a.edit) for _ in range(10)],
                         *[rt.call("editor", b, b.edit) for _ in range(10)])
    assert a.peak == 2 and b.peak == 5


async def test_tools_with_one_limiter_key_share_one_limiter_and_capacity() -> None:
    """A judge and a critic on one loaded model: together they never exceed the model's capacity."""
    active = {"now": 0, "peak": 0}

    class OnModel:
        def __init__(self, name: str, key: str | None, capacity: int = 2) -> None:
            self.name, self.key, self.capacity = name, key, capacity

        def limiter_key(self) -> str | None:
            return self.key

        async def edit(self) -> EditResult:
            active["now"] += 1
            active["peak"] = max(active["peak"], active["now"])
            await asyncio.sleep(0.01)
            active["now"] -= 1
            return EditResult(image=solid(3))

    rt = Runtime(FAST)
    a, b = OnModel("judge", "model-x"), OnModel("critic", "model-x")
    assert rt.limiter(a) is rt.limiter(b)
    await asyncio.gather(*[rt.call("editor", t, t.edit) for t in (a, b) for _ in range(8)])
    assert active["peak"] == 2
    active["peak"] = 0
    c, d = OnModel("judge", None), OnModel("critic", None)  # no key: a limiter each, as before
    assert rt.limiter(c) is not rt.limiter(d)
    await asyncio.gather(*[rt.call("editor", t, t.edit) for t in (c, d) for _ in range(8)])
    assert active["peak"] == 4


async def test_cache_serves_identical_calls_and_counts_them() -> None:
    tool = Flaky()
    rt = Runtime(FAST)
    key = cache_key({"name": "flaky", "params": {}}, "edit", images=["a"], text="x", seed=1)
    tracker = BudgetTracker(Budget())
    first = await rt.call("editor", tool, tool.edit, key=key, tracker=tracker)
    second = await rt.call("editor", tool, tool.edit, key=key, tracker=tracker)
    assert tool.calls == 1 and second.record.cached and second.value.image == first.value.image
    assert second.value is not first.value  # a copy, never a shared mutable record
    assert tracker.usage.calls["editor"] == 2 and tracker.usage.cached_calls == 1
    assert tracker.usage.cost_usd == 0.5  # the budget counts what the result cost, so replays decide alike
    assert rt.stats.cost_usd == 0.25  # but only one call was paid for


def test_cache_key_covers_tool_params_images_text_and_seed() -> None:
    base = dict(images=["a", "b"], text="make it blue", seed=7)
    ident = {"name": "sim", "params": {"skill": 0.5}}
    k = cache_key(ident, "edit", **base)  # type: ignore[arg-type]
    assert k == cache_key(dict(ident), "edit", **base)  # type: ignore[arg-type]
    variants = [
        cache_key({"name": "sim", "params": {"skill": 0.6}}, "edit", **base),  # type: ignore[arg-type]
        cache_key({"name": "other", "params": {"skill": 0.5}}, "edit", **base),  # type: ignore[arg-type]
        cache_key(ident, "judge", **base),  # type: ignore[arg-type]
        cache_key(ident, "edit", images=["a", "c"], text="make it blue", seed=7),
        cache_key(ident, "edit", images=["a", "b"], text="make it red", seed=7),
        cache_key(ident, "edit", images=["a", "b"], text="make it blue", seed=8),
    ]
    assert len({k, *variants}) == 7


async def test_memory_cache_is_bounded() -> None:
    cache = MemoryCache(max_entries=2)
    for i in range(3):
        await cache.put(str(i), EditResult(image=solid(i)))
    assert len(cache) == 2 and await cache.get("0") is None and await cache.get("2") is not None


async def test_memory_cache_is_bounded_in_image_bytes_and_shares_pixels() -> None:
    one = solid(1).array.nbytes + 1024  # what one cached edit holds
    cache = MemoryCache(max_bytes=2 * one)
    for i in range(3):
        await cache.put(str(i), EditResult(image=solid(i)))
    assert len(cache) == 2 and cache.nbytes == 2 * one and await cache.get("0") is None
    await cache.put("2", EditResult(image=solid(2)))  # replacing an entry does not count it twice
    assert cache.nbytes == 2 * one
    got = await cache.get("2")
    again = await cache.get("2")
    assert got is not again and got.image.array is again.image.array  # records are copies, pixels are shared


async def test_events_and_stats() -> None:
    events = []
    rt = Runtime(FAST)
    rt.subscribe(lambda e: events.append(e.phase))
    tool = Flaky(TransientToolError("x"))
    await rt.call("editor", tool, tool.edit)
    assert events == ["start", "retry", "end"]
    assert rt.stats.calls == {"editor": 1} and rt.stats.in_flight == 0


async def test_usage_billed_by_failed_attempts_is_counted() -> None:
    """A tool that makes two billed requests per call and fails after the first (or times out) still costs
    money; the runtime adds what failed attempts billed to the successful attempt's own usage."""
    class TwoStep:
        name = "two-step"
        calls = 0

        async def edit(self) -> EditResult:
            self.calls += 1
            bill(Usage(input_tokens=10, cost_usd=1.0))  # the first request, answered and billed
            if self.calls == 1:
                raise TransientToolError("second request: 503")
            if self.calls == 2:
                await asyncio.sleep(5)  # the second request hangs past the timeout
            bill(Usage(input_tokens=10, cost_usd=1.0))
            return EditResult(image=solid(3), usage=Usage(input_tokens=20, cost_usd=2.0))

    tool = TwoStep()
    tracker = BudgetTracker(Budget())
    cfg = RuntimeConfig(timeout_s=0.05, retry=FAST.retry)
    out = await Runtime(cfg).call("editor", tool, tool.edit, tracker=tracker)
    assert tool.calls == 3 and out.record.usage.cost_usd == 4.0 and out.record.usage.input_tokens == 40
    assert tracker.usage.cost_usd == 4.0

    class BilledThenFails(Flaky):
        async def edit(self) -> EditResult:
            bill(Usage(cost_usd=0.5))
            return await super().edit()

    failing = BilledThenFails(*[TransientToolError("503")] * 2)
    tracker = BudgetTracker(Budget())
    with pytest.raises(ToolCallFailed) as info:
        await Runtime(RuntimeConfig(retry=RetryPolicy(max_attempts=2, initial_wait=0, max_wait=0, jitter=0))).call(
            "editor", failing, failing.edit, tracker=tracker)
    assert info.value.record.usage.cost_usd == 1.0 and tracker.usage.cost_usd == 1.0


async def test_retries_stop_at_the_time_budget() -> None:
    """In a timed call, no retry starts whose backoff wait would end past the budget's seconds; waits (and a
    server's Retry-After) are never cut short."""
    now = [0.0]
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    tool = Flaky(*[TransientToolError("503")] * 20)
    policy = RetryPolicy(max_attempts=10, initial_wait=1.0, max_wait=100.0, jitter=0.0)
    tracker = BudgetTracker(Budget(max_seconds=5), clock=lambda: now[0])
    with pytest.raises(ToolCallFailed):
        await Runtime(RuntimeConfig(retry=policy), sleep=sleep).call("editor", tool, tool.edit, tracker=tracker,
                                                                     timed=True)
    assert waits == [1.0, 2.0] and tool.calls == 3  # the next wait (4 s) would end at 7 s, past the 5 s budget
    # untimed (round 0, the baseline): the budget does not cut its retries
    now[0], waits[:] = 0.0, []
    tool = Flaky(*[TransientToolError("503")] * 4)
    out = await Runtime(RuntimeConfig(retry=policy), sleep=sleep).call("editor", tool, tool.edit, tracker=tracker)
    assert out.record.attempts == 5 and waits == [1.0, 2.0, 4.0, 8.0]


async def test_a_wrong_typed_result_is_a_permanent_failure_that_keeps_its_bill() -> None:
    class Confused:
        name = "confused"
        calls = 0

        async def edit(self) -> str:
            self.calls += 1
            bill(Usage(cost_usd=0.5))
            return "not an EditResult"

    tool = Confused()
    tracker = BudgetTracker(Budget())
    with pytest.raises(ToolCallFailed, match="returned a str, not a EditResult"):
        await Runtime(FAST).call("editor", tool, tool.edit, tracker=tracker)
    assert tool.calls == 1 and tracker.usage.cost_usd == 0.5


async def test_optional_hooks_are_read_from_one_place() -> None:
    from refine_agent.protocols import close_tools, load_tools, tool_capacity, tool_identity, tool_limiter_key

    events: list[str] = []

    class Hooked:
        name = "hooked"
        capacity = 3

        async def load(self) -> None:
            events.append("load")

        async def aclose(self) -> None:
            events.append("close")

        def limiter_key(self) -> str:
            return "model-x"

    class Bare:
        name = "bare"

    h, b = Hooked(), Bare()
    await load_tools(h, b, h, None)
    await close_tools(h, b, None)
    assert events == ["load", "close"]
    assert (tool_capacity(h), tool_limiter_key(h), tool_capacity(b), tool_limiter_key(b)) == (3, "model-x", 1, None)
    assert tool_identity(b) == {"name": "bare", "params": {}}
