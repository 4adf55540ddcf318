"""The dynamic batcher: gather, scatter, drop the cancelled, isolate the bad request."""

from __future__ import annotations

import asyncio

import pytest

from refine_agent.batching import Batcher


class Model:
    """Doubles numbers, one batch at a time; 13 is a bad input that fails the whole batch."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[list[int]] = []
        self.delay = delay

    async def __call__(self, batch: list[int]) -> list[int | BaseException]:
        self.calls.append(list(batch))
        await asyncio.sleep(self.delay)
        if 13 in batch:
            raise ValueError("13 breaks the model")
        return [ValueError("negative") if x < 0 else 2 * x for x in batch]


async def test_concurrent_requests_become_one_batch_and_results_come_back_in_order() -> None:
    model = Model()
    batcher: Batcher[int, int] = Batcher(model, max_size=8, max_wait_s=0.05)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(5))) == [0, 2, 4, 6, 8]
    assert model.calls == [[0, 1, 2, 3, 4]]


async def test_a_full_batch_starts_at_once_and_the_rest_waits_for_the_next() -> None:
    model = Model()
    batcher: Batcher[int, int] = Batcher(model, max_size=3, max_wait_s=10)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(6))), timeout=5)
    assert results == [0, 2, 4, 6, 8, 10] and model.calls == [[0, 1, 2], [3, 4, 5]]


async def test_requests_of_different_keys_never_share_a_batch() -> None:
    model = Model()
    batcher: Batcher[int, int] = Batcher(model, max_size=8, max_wait_s=0.02, key=lambda x: x % 2)
    await asyncio.gather(*(batcher.submit(i) for i in range(6)))
    assert sorted(model.calls) == [[0, 2, 4], [1, 3, 5]]


async def test_a_cancelled_request_is_dropped_before_its_batch_starts() -> None:
    model = Model()
    batcher: Batcher[int, int] = Batcher(model, max_size=8, max_wait_s=0.05)
    keep = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    gone = asyncio.ensure_future(batcher.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    assert await asyncio.gather(*keep) == [2, 4]
    assert model.calls == [[1, 2]]


async def test_one_bad_request_never_fails_its_neighbours() -> None:
    model = Model()
    batcher: Batcher[int, int] = Batcher(model, max_size=8, max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, 13, 2, -1, 3)), return_exceptions=True)
    assert results[0] == 2 and results[2] == 4 and results[4] == 6
    assert isinstance(results[1], ValueError) and "13" in str(results[1])  # failed the batch: found alone
    assert isinstance(results[3], ValueError) and "negative" in str(results[3])  # answered in place
    assert [13] in model.calls


async def test_batches_run_one_at_a_time_by_default() -> None:
    running, peak = 0, 0

    async def model(batch: list[int]) -> list[int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return batch

    batcher: Batcher[int, int] = Batcher(model, max_size=2, max_wait_s=0)
    await asyncio.gather(*(batcher.submit(i) for i in range(8)))
    assert peak == 1 and len(batcher.batch_sizes) == 4


async def test_closing_fails_what_waits() -> None:
    batcher: Batcher[int, int] = Batcher(Model(), max_size=8, max_wait_s=10)
    waiting = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    await batcher.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await waiting


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Batcher(Model(), max_size=0)
