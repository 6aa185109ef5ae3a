"""Group commit: concurrent calls coalesced into one batched call.

A delivery process has hundreds of sends in flight, each wanting one small
statement at a time. :class:`Batcher` lets each caller still ``await`` its own
result while the statements travel together: the calls that arrive while a
batch is being written form the next batch. Nothing waits on a timer, so a
lone call costs one round trip as before, and a busy process pays one round
trip per batch instead of per call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar
from collections.abc import Hashable

__all__ = ["Batcher", "distinct_rounds"]

T = TypeVar("T")
R = TypeVar("R")


class _Key(Hashable, Protocol):
    """A key :func:`distinct_rounds` can put in a dict and sort."""

    def __lt__(self, other: Any, /) -> bool: ...


K = TypeVar("K", bound=_Key)


class Batcher(Generic[T, R]):
    """Runs ``run(items)`` for the items submitted together; each caller gets its own result.

    ``run`` returns one result per item, in order; a result that is an
    exception is raised to that item's caller alone. If ``run`` raises, every
    caller in that batch gets the exception (and may retry on its own). At
    most ``max_concurrent`` batches run at once, each of at most ``max_batch``
    items. With ``linger_s``, a batch that is not full waits up to that long
    for more items: fewer, fuller batches where a lone call may wait (reports
    to analytics, where no caller is in a hurry).
    """

    def __init__(self, run: Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]], *, max_batch: int = 256,
                 max_concurrent: int = 2, linger_s: float = 0.0) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_concurrent = max_concurrent
        self._linger_s = linger_s
        self._full = asyncio.Event()
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._running = 0
        # The drains running (a task nobody refers to may be collected mid-way).
        self._drains: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self._max_batch:
            self._full.set()
        if self._running < self._max_concurrent:
            self._running += 1
            drain = asyncio.get_running_loop().create_task(self._drain())
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        return await future

    async def _drain(self) -> None:
        try:
            # Let the callers woken in this turn of the loop join the first batch.
            await asyncio.sleep(0)
            while self._pending:
                if self._linger_s and len(self._pending) < self._max_batch:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._linger_s):
                            await self._full.wait()
                batch, self._pending = self._pending[:self._max_batch], self._pending[self._max_batch:]
                try:
                    results = await self._run([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
                except asyncio.CancelledError:
                    # Shutting down: nobody waits for ever, neither this batch nor the next.
                    for _, future in batch + self._pending:
                        if not future.done():
                            future.cancel()
                    self._pending = []
                    raise
                except Exception as exc:  # every caller learns of it; the drain goes on
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._running -= 1


def distinct_rounds(keys: Sequence[K]) -> list[dict[K, int]]:
    """The indices of ``keys`` in rounds where no key appears twice, each round in key order.

    One ``INSERT ... ON CONFLICT DO UPDATE`` (or ``UPDATE ... FROM``) may touch
    a row only once, so a batch holding one key twice (two copies of one
    message) is written in several statements. Key order gives every batch
    one lock order: concurrent batches wait for each other, never deadlock.
    """
    rounds: list[dict[K, int]] = []
    for index, key in sorted(enumerate(keys), key=lambda item: item[1]):
        for taken in rounds:
            if key not in taken:
                taken[key] = index
                break
        else:
            rounds.append({key: index})
    return rounds
