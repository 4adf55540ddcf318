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
    assert await asyncio.gather(*(batcher.submit(i) for i in range(8))) == list(range(8))
    assert peak == 1 and sum(batcher.batch_sizes) == 8 and max(batcher.batch_sizes) == 2


async def test_closing_fails_what_waits() -> None:
    batcher: Batcher[int, int] = Batcher(Model(), max_size=8, max_wait_s=10)
    waiting = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    await batcher.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await waiting


async def test_requests_gather_while_the_model_is_busy_and_the_next_batch_is_full() -> None:
    model = Model(delay=0.05)
    batcher: Batcher[int, int] = Batcher(model, max_size=4, max_wait_s=0)
    first = asyncio.ensure_future(batcher.submit(0))  # starts at once, alone
    await asyncio.sleep(0.01)
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 7)]
    assert await first == 0 and await asyncio.gather(*rest) == [2, 4, 6, 8, 10, 12]
    assert model.calls == [[0], [1, 2, 3, 4], [5, 6]]  # a full batch when the model came free, then the rest


async def test_a_free_slot_takes_the_oldest_ready_group_so_no_key_starves() -> None:
    model = Model(delay=0.03)
    batcher: Batcher[int, int] = Batcher(model, max_size=2, max_wait_s=0, key=lambda x: x % 2)
    first = asyncio.ensure_future(batcher.submit(100))  # keeps the only slot busy while the others queue
    await asyncio.sleep(0.005)
    odd = asyncio.ensure_future(batcher.submit(1))  # key 1 waits first ...
    await asyncio.sleep(0.005)
    evens = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 4, 6, 8)]  # ... key 0 arrives later, in bulk
    await asyncio.gather(first, odd, *evens)
    assert model.calls == [[100], [1], [2, 4], [6, 8]]


async def test_several_slots_run_batches_side_by_side() -> None:
    running, peak = 0, 0

    async def model(batch: list[int]) -> list[int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return batch

    batcher: Batcher[int, int] = Batcher(model, max_size=2, max_wait_s=0.001, max_batches=3)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(6))) == list(range(6))
    assert peak == 3 and batcher.batch_sizes == [2, 2, 2]


async def test_a_per_key_limit_lowers_the_batch_size_for_that_key_only() -> None:
    model = Model()
    batcher: Batcher[int, int] = Batcher(model, max_size=4, max_wait_s=0.02, key=lambda x: x >= 10,
                                         limit=lambda big: 1 if big else 99)
    await asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3, 10, 11)))
    assert sorted(model.calls) == [[1, 2, 3], [10], [11]]


async def test_a_per_key_wait_lets_one_key_gather_longer() -> None:
    model = Model()
    batcher: Batcher[int, int] = Batcher(model, max_size=8, key=lambda x: x >= 10,
                                         wait=lambda patient: 0.2 if patient else 0.0)
    quick = asyncio.ensure_future(batcher.submit(1))
    slow = [asyncio.ensure_future(batcher.submit(10))]
    await asyncio.sleep(0.05)
    slow.append(asyncio.ensure_future(batcher.submit(11)))
    await asyncio.gather(quick, *slow)
    assert model.calls == [[1], [10, 11]]


async def test_a_group_of_only_cancelled_requests_never_runs() -> None:
    model = Model()
    batcher: Batcher[int, int] = Batcher(model, max_size=8, max_wait_s=0.02)
    gone = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    for task in gone:
        task.cancel()
    await asyncio.sleep(0.05)
    assert model.calls == [] and await batcher.submit(5) == 10


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Batcher(Model(), max_size=0)
