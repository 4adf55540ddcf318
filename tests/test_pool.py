"""The model pool: loaded once per key, shared by threads and tasks, closed at the end."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from refine_agent.pool import ModelKey, ModelPool, model_pool
from refine_agent.protocols import tool_limiter_key
from refine_agent.runtime import Runtime


class Model:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class Loader:
    """Counts its loads; each takes a little while, so concurrent callers overlap it."""

    def __init__(self, delay: float = 0.05, fail: int = 0) -> None:
        self.calls = 0
        self.delay = delay
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self) -> Model:
        with self.lock:
            self.calls += 1
            n = self.calls
        time.sleep(self.delay)
        if n <= self.fail:
            raise OSError("weights not there yet")
        return Model(f"m{n}")


KEY = ModelKey("/models/qwen-vl", revision="abc", dtype="bfloat16", device="cuda:0", kind="transformers")


def test_keys_name_weights_by_every_field() -> None:
    assert KEY == ModelKey("/models/qwen-vl", "abc", "bfloat16", "cuda:0", "transformers")
    assert KEY != ModelKey("/models/qwen-vl", "abc", "float16", "cuda:0", "transformers")
    assert len({KEY, ModelKey("/models/qwen-vl", "abc", "bfloat16", "cuda:0", "transformers")}) == 1


def test_threads_share_one_load() -> None:
    pool, load = ModelPool(), Loader()
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda _: pool.get(KEY, load), range(16)))
    assert load.calls == 1 and all(m is got[0] for m in got)
    assert KEY in pool and len(pool) == 1
    other = pool.get(ModelKey("/models/other"), load)
    assert other is not got[0] and load.calls == 2 and len(pool) == 2


async def test_tasks_share_one_load_run_in_a_thread() -> None:
    pool, load = ModelPool(), Loader()
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def loader() -> Model:
        seen.append(threading.get_ident())
        return load()

    got = await asyncio.gather(*[pool.aget(KEY, loader) for _ in range(10)])
    assert load.calls == 1 and all(m is got[0] for m in got)
    assert seen and seen[0] != loop_thread  # loading weights never blocks the event loop
    assert pool.get(KEY, load) is got[0]  # threads and tasks see one pool


async def test_async_loader_and_a_cancelled_loader_is_taken_over() -> None:
    pool = ModelPool()
    calls = 0
    started = asyncio.Event()

    async def slow() -> Model:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(0.05)
        return Model(f"a{calls}")

    first = asyncio.create_task(pool.aget(KEY, slow))
    await started.wait()
    waiter = asyncio.create_task(pool.aget(KEY, slow))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    model = await waiter  # the waiter loaded it itself, instead of failing with the other task's cancellation
    assert model.name == "a2" and calls == 2 and await pool.aget(KEY, slow) is model


async def test_a_cancelled_waiter_does_not_cancel_the_load() -> None:
    pool, load = ModelPool(), Loader(delay=0.1)
    owner = asyncio.create_task(pool.aget(KEY, load))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(pool.aget(KEY, load))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (await owner).name == "m1" and load.calls == 1


def test_a_failed_load_is_raised_to_its_waiters_and_not_kept() -> None:
    pool, load = ModelPool(), Loader(delay=0.1, fail=1)
    with ThreadPoolExecutor(4) as ex:
        first = ex.submit(pool.get, KEY, load)
        time.sleep(0.02)  # the others arrive while the first load runs, and wait on it
        waiters = [ex.submit(pool.get, KEY, load) for _ in range(3)]
        outcomes = [f.exception() for f in (first, *waiters)]
    assert all(isinstance(o, OSError) for o in outcomes) and load.calls == 1 and KEY not in pool
    model = pool.get(KEY, load)  # the next caller tries again
    assert isinstance(model, Model) and load.calls == 2 and KEY in pool


async def test_close_closes_each_object_once_and_empties_the_pool() -> None:
    pool = ModelPool()
    shared = Model("shared")
    closed: list[str] = []

    class AsyncModel:
        async def aclose(self) -> None:
            closed.append("async")

    pool.get(KEY, lambda: shared)
    pool.get(ModelKey("/same/object/another/key"), lambda: shared)
    await pool.aget(ModelKey("/api/client"), AsyncModel)
    pool.get(ModelKey("/no/close"), object)
    assert len(pool) == 4
    await pool.aclose()
    assert shared.closed == 1 and closed == ["async"] and len(pool) == 0
    again = pool.get(KEY, lambda: Model("new"))  # still usable: a new run loads afresh
    assert again is not shared
    await pool.drop(KEY)
    assert again.closed == 1 and KEY not in pool


def test_sync_close_and_the_process_wide_pool() -> None:
    assert model_pool() is model_pool()
    pool = ModelPool()
    m = pool.get(KEY, lambda: Model("x"))
    pool.close()
    assert m.closed == 1 and len(pool) == 0


async def test_tools_on_one_pooled_model_share_its_limiter() -> None:
    pool = ModelPool()

    class Tool:
        capacity = 1

        def __init__(self, name: str, key: ModelKey) -> None:
            self.name, self.key = name, key
            self.model = pool.get(key, lambda: Model(key.path))

        def limiter_key(self) -> Any:
            return self.key

    judge, critic = Tool("judge", KEY), Tool("critic", KEY)
    other = Tool("other", ModelKey("/models/other"))
    assert judge.model is critic.model and tool_limiter_key(judge) == KEY
    rt = Runtime()
    assert rt.limiter(judge) is rt.limiter(critic) is not rt.limiter(other)
