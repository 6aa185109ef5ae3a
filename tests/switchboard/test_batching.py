"""Group commit: concurrent calls share one batched call; each caller gets its own result."""

import asyncio

import pytest

from switchboard.batching import Batcher


async def test_concurrent_calls_share_batches_and_each_gets_its_own_result() -> None:
    batches: list[list[int]] = []

    async def double(items):
        batches.append(list(items))
        await asyncio.sleep(0.01)  # a round trip, during which more calls arrive
        return [n * 2 for n in items]

    batcher = Batcher(double, max_batch=50, max_concurrent=1)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(120)))
    assert results == [n * 2 for n in range(120)]
    assert sorted(n for batch in batches for n in batch) == list(range(120))
    assert len(batches) == 3 and max(len(b) for b in batches) == 50


async def test_a_lone_call_is_not_held_back() -> None:
    batcher: Batcher[str, int] = Batcher(lambda items: asyncio.sleep(0, [len(items)]))
    assert await asyncio.wait_for(batcher.submit("x"), 0.5) == 1


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def flaky(items):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return list(items)

    batcher = Batcher(flaky, max_concurrent=1)
    first = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in first)
    assert await batcher.submit(3) == 3


async def test_a_run_that_answers_for_the_wrong_number_of_items_is_an_error() -> None:
    batcher: Batcher[int, int] = Batcher(lambda items: asyncio.sleep(0, []))
    with pytest.raises(RuntimeError, match="gave 0 results"):
        await batcher.submit(1)


async def test_a_result_that_is_an_exception_fails_only_its_caller() -> None:
    async def check(items):
        return [ValueError(f"bad {n}") if n < 0 else n for n in items]

    batcher = Batcher(check)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(-1), batcher.submit(2), return_exceptions=True)
    assert results[0] == 1 and results[2] == 2 and isinstance(results[1], ValueError)


async def test_cancelling_a_batch_in_flight_leaves_no_caller_waiting_for_ever() -> None:
    started = asyncio.Event()

    async def hang(items):
        started.set()
        await asyncio.sleep(3600)

    batcher = Batcher(hang, max_batch=1, max_concurrent=1)
    calls = [asyncio.ensure_future(batcher.submit(n)) for n in range(3)]
    await started.wait()
    for drain in list(batcher._drains):
        drain.cancel()
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 1)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
