"""Leased work on a real NATS JetStream: one holder at a time, the work moves when its holder dies
(within the TTL) or stops (at once), and a holder cut off from NATS stops the work before anyone else
could take it."""

from __future__ import annotations

import asyncio
import time

from switchboard.leases import Leases
from switchboard.messaging import leases_bucket_config
from switchboard.settings import Settings

TTL_S = 2.0  # the asserted bounds leave a quarter of it to a loaded machine


class Ledger:
    """When each holder ran the work: (holder, started, ended) spans, checked for overlap."""

    def __init__(self) -> None:
        self.spans: list[list] = []

    def work(self, holder: str):
        async def run(lost: asyncio.Event) -> None:
            span = [holder, time.monotonic(), None]
            self.spans.append(span)
            try:
                await lost.wait()
            finally:
                span[2] = time.monotonic()

        return run

    def running(self) -> list[str]:
        return [holder for holder, _, ended in self.spans if ended is None]

    def overlapping(self) -> bool:
        spans = sorted((started, ended or time.monotonic()) for _, started, ended in self.spans)
        return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


async def eventually(check, timeout_s: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, "not within the time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_one_holder_at_a_time_and_the_work_moves_when_it_dies_or_stops(js) -> None:
    await js.add_stream(leases_bucket_config(Settings(), ttl_s=TTL_S))
    ledger = Ledger()
    stopping = {name: asyncio.Event() for name in ("a", "b", "c")}
    runs = {name: asyncio.create_task(Leases(js, name, ttl_s=TTL_S).run("sweep", ledger.work(name), stopping[name]))
            for name in ("a", "b", "c")}
    await eventually(lambda: len(ledger.running()) == 1, 5)
    await asyncio.sleep(3 * TTL_S)  # held across several renewals by one, the others trying meanwhile
    first = ledger.running()
    assert len(first) == 1 and len(ledger.spans) == 1

    # The holder dies: nothing is released; another takes the work once the bucket forgets the entry.
    runs[first[0]].cancel()
    died_at = time.monotonic()
    await eventually(lambda: len(ledger.running()) == 1 and ledger.running() != first, TTL_S * 3)
    moved_after = time.monotonic() - died_at
    assert TTL_S * 0.5 < moved_after < TTL_S * 2, moved_after

    # The next holder stops cleanly: it releases, and the last one starts at once.
    second = ledger.running()[0]
    stopping[second].set()
    await runs[second]
    assert await eventually(lambda: len(ledger.running()) == 1, TTL_S) < TTL_S / 2
    assert not ledger.overlapping()
    for event in stopping.values():
        event.set()
    await asyncio.gather(*runs.values(), return_exceptions=True)
    assert ledger.running() == []


async def test_a_holder_cut_off_from_nats_stops_the_work_before_the_lease_could_pass(nats_server, js) -> None:
    await js.add_stream(leases_bucket_config(Settings(), ttl_s=TTL_S))
    ledger = Ledger()
    stopping = asyncio.Event()
    run = asyncio.create_task(Leases(js, "a", ttl_s=TTL_S).run("alerts", ledger.work("a"), stopping))
    await eventually(lambda: ledger.running() == ["a"], 5)
    nats_server.stop()
    cut_at = time.monotonic()
    await eventually(lambda: ledger.running() == [], TTL_S * 2)
    # Stopped within the TTL of its last renewal, which was at most a quarter TTL before the cut.
    assert time.monotonic() - cut_at < TTL_S
    nats_server.start()
    # NATS back (its store kept the bucket): the work is taken again by the one who is trying.
    await eventually(lambda: ledger.running() == ["a"], 15)
    stopping.set()
    await run
