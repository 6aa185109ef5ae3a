"""The ATTEMPTS consumer on real NATS JetStream and PostgreSQL: batches, acks after commit, redeliveries."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from services.analytics.consumer import AttemptIntake, read_report
from services.analytics.ledger import AttemptLedger
from services.analytics.stats import StatsReader
from switchboard.database import open_pool
from switchboard.events import attempt_subject, delivery_notice_subject, routing_outcome_subject
from switchboard.messaging import ACK, CONSUMERS, consume, encode, ensure_consumer, ensure_streams
from switchboard.settings import Settings
from tests.services.analytics.conftest import NOW, attempt, notice, routed


async def wait_until(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_reports_are_recorded_in_batches_and_acked_once_committed(nc, js, ledger: AttemptLedger) -> None:
    await ensure_streams(js, Settings())
    await ensure_consumer(js, CONSUMERS["analytics"])
    reports = [attempt(f"evt{n}", 1, "succeeded" if n % 10 else "retrying", at=NOW - timedelta(minutes=n % 50),
                       latency_ms=n % 300 + 1) for n in range(1200)]
    for report in reports:
        await js.publish(attempt_subject("t1"), encode(report.to_message()),
                         headers={"Nats-Msg-Id": f"{report.delivery_id}#{report.number}"})
    # The router's report of each of those events and of 300 no route took; the open
    # circuit holding 100 more deliveries, never attempted.
    outcomes = [routed(f"evt{n}", "ep_a", at=NOW - timedelta(minutes=1)) for n in range(1300)]
    outcomes += [routed(f"lost{n}", at=NOW - timedelta(minutes=1)) for n in range(300)]
    holds = [notice(f"evt{n}", "circuit_open", at=NOW) for n in range(1200, 1300)]
    for outcome in outcomes:
        await js.publish(routing_outcome_subject("t1"), encode(outcome.to_message()),
                         headers={"Nats-Msg-Id": f"routing:{outcome.event_id}"})
    for h in holds:
        await js.publish(delivery_notice_subject("t1"), encode(h.to_message()))
    # A redelivered report (a publish retried after its ack was lost, past the
    # duplicate window) and one no one can read.
    await js.publish(attempt_subject("t1"), encode(reports[0].to_message()), headers={"Nats-Msg-Id": "again"})
    await js.publish(attempt_subject("t1"), b"not json")
    await js.publish(attempt_subject("t1") + ".gossip", encode(outcomes[0].to_message()))

    intake = AttemptIntake(ledger, max_batch=200, max_wait_s=0.05)
    stopping = asyncio.Event()
    task = asyncio.create_task(consume(nc, CONSUMERS["analytics"], intake.handle, read=read_report, concurrency=400,
                                       batch=100, stopping=stopping))
    reader = StatsReader(ledger.pool, now=lambda: NOW + timedelta(minutes=1))

    async def all_settled() -> bool:
        info = await js.consumer_info("ATTEMPTS", "analytics")
        return info.num_pending == 0 and info.num_ack_pending == 0

    try:
        await wait_until(all_settled)
    finally:
        stopping.set()
        await task
    o = await reader.overview("t1")
    assert (o.stats.attempts, o.stats.deliveries, o.stats.events_received) == (1200, 1300, 1600)
    assert (o.stats.routed, o.stats.unrouted, o.stats.dropped) == (1300, 300, 0)
    assert o.stats.succeeded == 1080 and o.pending == 220
    assert o.pending_by_reason == {"queued": 0, "retrying": 120, "circuit_open": 100, "rate_limited": 0,
                                   "in_flight_cap": 0}


async def test_a_lone_report_waits_only_briefly_and_a_failed_write_is_retried(pool, ledger: AttemptLedger) -> None:
    intake = AttemptIntake(ledger, max_batch=500, max_wait_s=0.05)
    started = time.monotonic()
    assert await intake.submit(attempt("evt1", 1, at=NOW)) == ACK
    assert time.monotonic() - started < 1.0

    assert isinstance(ledger.pool.conninfo, str)
    closed = await open_pool(ledger.pool.conninfo, max_size=1, timeout=1.0)
    await closed.close()
    broken = AttemptIntake(AttemptLedger(closed), max_batch=2, max_wait_s=0.05)
    decisions = await asyncio.gather(*(broken.submit(attempt(f"evt{n}", 1, at=NOW)) for n in range(3)))
    assert all(d.action == "nak" and d.delay_s for d in decisions)
    # Nothing of the failed batch is in the rollups; the first report is.
    reader = StatsReader(pool, now=lambda: NOW + timedelta(minutes=1))
    assert (await reader.overview("t1")).stats.attempts == 1
