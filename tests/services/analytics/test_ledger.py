"""Recording attempt batches: raw rows and rollups in one statement, each attempt counted once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.analytics.histogram import SLOTS, slot_of
from services.analytics.ledger import AttemptLedger, check_attempt, event_id_of
from services.analytics.stats import StatsReader
from switchboard.events import AttemptRecord
from tests.services.analytics.conftest import NOW, attempt

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)


async def rollup(ledger: AttemptLedger, dim: str, grain: str, key: str = "") -> list[dict]:
    async with ledger.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT * FROM analytics.rollups WHERE dim = %s AND grain = %s AND key = %s ORDER BY bucket",
            (dim, grain, key))
        return await cur.fetchall()


async def test_a_redelivered_attempt_is_never_counted_twice(ledger: AttemptLedger) -> None:
    batch = [attempt("evt1", 1, "retrying", at=T0, latency_ms=40, error="HTTP 500"),
             attempt("evt1", 2, at=T0 + timedelta(seconds=30), latency_ms=12)]
    assert (await ledger.record_batch(batch)).inserted == 2
    again = await ledger.record_batch([*batch, batch[0]])  # the whole batch again, one of them twice
    assert (again.received, again.inserted) == (3, 0)
    mixed = await ledger.record_batch([batch[1], attempt("evt2", 1, at=T0 + timedelta(minutes=1))])
    assert mixed.inserted == 1

    [minute0, minute1] = await rollup(ledger, "all", "minute")
    assert (minute0["attempts"], minute0["succeeded"], minute0["failed"], minute0["events"],
            minute0["deliveries"]) == (2, 1, 1, 1, 1)
    assert (minute1["attempts"], minute1["events"], minute1["deliveries"]) == (1, 1, 1)
    assert len(minute0["latency_hist"]) == SLOTS and sum(minute0["latency_hist"]) == 2
    assert minute0["latency_hist"][slot_of(40)] == 1 and minute0["latency_hist"][slot_of(12)] == 1
    assert minute0["last_error"] == "HTTP 500" and minute0["latency_sum_ms"] == 52
    [hour] = await rollup(ledger, "all", "hour")
    [day] = await rollup(ledger, "endpoint", "day", "ep_a")
    assert hour["attempts"] == day["attempts"] == 3 and hour["events"] == 2
    async with ledger.pool.connection() as conn:
        raw = await (await conn.execute("SELECT count(*) AS n FROM analytics.attempts")).fetchone()
    assert raw["n"] == 3


async def test_a_later_attempt_arriving_first_still_decides_the_deliverys_state(ledger: AttemptLedger) -> None:
    second = attempt("evt1", 2, at=T0 + timedelta(seconds=10))
    first = attempt("evt1", 1, "retrying", at=T0, error="HTTP 502")
    await ledger.record_batch([second])
    await ledger.record_batch([first])
    reader = StatsReader(ledger.pool, now=lambda: NOW)
    o = await reader.overview("t1")
    assert (o.stats.deliveries, o.stats.attempts, o.stats.succeeded, o.pending) == (1, 2, 1, 0)


async def test_rollups_add_up_across_many_batches_and_tenants(ledger: AttemptLedger) -> None:
    batches = [[attempt(f"evt{b}_{n}", 1, "succeeded" if n % 4 else "failed", at=T0 + timedelta(seconds=b * 7 + n),
                        latency_ms=n + 1, tenant=f"t{n % 2}", endpoint=f"ep_{n % 3}") for n in range(40)]
               for b in range(10)]
    for batch in batches:
        await ledger.record_batch(batch)
    reader = StatsReader(ledger.pool, now=lambda: NOW)
    for tenant in ("t0", "t1"):
        mine = [a for batch in batches for a in batch if a.tenant_id == tenant]
        o = await reader.overview(tenant)
        assert o.stats.attempts == len(mine) == 200
        assert o.stats.dead == sum(a.outcome == "failed" for a in mine)
        assert o.stats.events_received == len({a.delivery_id for a in mine})
        by_endpoint = await reader.breakdown(tenant, "endpoint")
        assert sum(r.stats.attempts for r in by_endpoint.rows) == 200


async def test_text_postgresql_cannot_hold_is_cleaned_and_impossible_reports_are_refused(ledger: AttemptLedger) -> None:
    nul = attempt("evt1", 1, "failed", at=T0, error="bad\x00byte", event_type="a\x00b")
    assert (await ledger.record_batch([nul])).inserted == 1
    [row] = await rollup(ledger, "all", "minute")
    assert row["last_error"] == "badbyte"
    good = attempt("evt1", 1, at=T0)
    for broken in (AttemptRecord(**{**good.__dict__, "outcome": "exploded"}),
                   AttemptRecord(**{**good.__dict__, "number": 0}),
                   AttemptRecord(**{**good.__dict__, "tenant_id": None}),
                   AttemptRecord(**{**good.__dict__, "latency_ms": "fast"}),
                   AttemptRecord(**{**good.__dict__, "at": 1e300})):
        with pytest.raises(ValueError):
            check_attempt(broken)
    check_attempt(good)


def test_the_event_of_a_delivery_is_the_first_part_of_its_id() -> None:
    assert event_id_of("evt_1:ep_2") == "evt_1" and event_id_of("evt_1:ep_2:rpl_3") == "evt_1"
