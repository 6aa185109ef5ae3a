"""Recording attempt batches: raw rows and rollups in one statement, each attempt counted once."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timedelta, UTC

import pytest

from services.analytics.histogram import SLOTS, slot_of
from services.analytics.ledger import AttemptLedger, check_attempt, check_report, event_id_of
from services.analytics.stats import StatsReader
from switchboard.events import AttemptRecord, Report
from tests.services.analytics.conftest import NOW, attempt, notice, routed

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


async def rollup(ledger: AttemptLedger, dim: str, grain: str, key: str = "") -> list[dict]:
    async with ledger.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT * FROM analytics.rollups WHERE dim = %s AND grain = %s AND key = %s ORDER BY bucket",
            (dim, grain, key))
        return await cur.fetchall()


async def test_a_redelivered_attempt_is_never_counted_twice(ledger: AttemptLedger) -> None:
    batch: list[Report] = [routed("evt1", "ep_a", at=T0),
             attempt("evt1", 1, "retrying", at=T0, latency_ms=40, error="HTTP 500"),
             attempt("evt1", 2, at=T0 + timedelta(seconds=30), latency_ms=12)]
    assert (await ledger.record_batch(batch)).inserted == 3
    again = await ledger.record_batch([*batch, batch[1]])  # the whole batch again, one of them twice
    assert (again.received, again.inserted) == (4, 0)
    # evt2's router report is not in yet: its delivery counts from its first attempt, its event not yet.
    mixed = await ledger.record_batch([batch[2], attempt("evt2", 1, at=T0 + timedelta(minutes=1))])
    assert mixed.inserted == 1

    [minute0, minute1] = await rollup(ledger, "all", "minute")
    assert (minute0["attempts"], minute0["succeeded"], minute0["failed"], minute0["events"],
            minute0["deliveries"], minute0["routed"]) == (2, 1, 1, 1, 1, 1)
    assert (minute1["attempts"], minute1["events"], minute1["deliveries"]) == (1, 0, 1)
    assert len(minute0["latency_hist"]) == SLOTS and sum(minute0["latency_hist"]) == 2
    assert minute0["latency_hist"][slot_of(40)] == 1 and minute0["latency_hist"][slot_of(12)] == 1
    assert minute0["last_error"] == "HTTP 500" and minute0["latency_sum_ms"] == 52
    [hour] = await rollup(ledger, "all", "hour")
    [day] = await rollup(ledger, "endpoint", "day", "ep_a")
    assert hour["attempts"] == day["attempts"] == 3 and hour["events"] == 1
    # The router's report, late: the event counts now, its delivery was counted already.
    assert (await ledger.record_batch([routed("evt2", "ep_a", at=T0 + timedelta(seconds=50))])).inserted == 1
    [minute0, minute1] = await rollup(ledger, "all", "minute")
    assert (minute0["events"], minute0["deliveries"], minute1["deliveries"]) == (2, 1, 1)
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
    batches: list[list[Report]]  # attempts, then the router's reports too
    batches = [[attempt(f"evt{b}_{n}", 1, "succeeded" if n % 4 else "failed", at=T0 + timedelta(seconds=b * 7 + n),
                        latency_ms=n + 1, tenant=f"t{n % 2}", endpoint=f"ep_{n % 3}") for n in range(40)]
               for b in range(10)]
    # Each batch also brings the router's reports of the events the previous one attempted.
    for b in range(10):
        batches[b] += [routed(f"evt{b - 1}_{n}", f"ep_{n % 3}", at=T0 + timedelta(seconds=(b - 1) * 7 + n),
                              tenant=f"t{n % 2}") for n in range(40) if b]
    batches.append([routed(f"evt9_{n}", f"ep_{n % 3}", at=T0 + timedelta(seconds=63 + n), tenant=f"t{n % 2}")
                    for n in range(40)])
    for batch in batches:
        await ledger.record_batch(batch)
    reader = StatsReader(ledger.pool, now=lambda: NOW)
    for tenant in ("t0", "t1"):
        mine = [a for batch in batches for a in batch if a.tenant_id == tenant and isinstance(a, AttemptRecord)]
        o = await reader.overview(tenant)
        assert o.stats.attempts == len(mine) == 200
        assert o.stats.dead == sum(a.outcome == "failed" for a in mine)
        assert o.stats.events_received == o.stats.routed == o.stats.deliveries == len({a.delivery_id for a in mine})
        assert o.pending == 0
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
                   AttemptRecord(**{**good.__dict__, "priority": 1}),
                   AttemptRecord(**{**good.__dict__, "at": 1e300})):
        with pytest.raises(ValueError):
            check_attempt(broken)
    check_attempt(good)
    for report in (routed("evt1", at=T0, priority=["urgent"]),  # type: ignore[arg-type]
                   notice("evt1", "skipped", at=T0, priority={"level": 1})):  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="priority"):
            check_report(report)


def test_the_event_of_a_delivery_is_the_first_part_of_its_id() -> None:
    assert event_id_of("evt_1:ep_2") == "evt_1" and event_id_of("evt_1:ep_2:rpl_3") == "evt_1"


async def states(ledger: AttemptLedger) -> dict[str, str]:
    async with ledger.pool.connection() as conn:
        cur = await conn.execute("SELECT delivery_id, state FROM analytics.deliveries")
        return {r["delivery_id"]: r["state"] for r in await cur.fetchall()}


async def test_a_deliverys_state_is_the_same_whatever_order_its_reports_arrive_in(ledger: AttemptLedger) -> None:
    # Queued by the router, held by the open circuit, attempted when it half-opened (and retried),
    # held again by the circuit. Then, for the second set, succeeded at last.
    def story(event: str, settled: bool) -> list:
        reports = [routed(event, "ep_a", at=T0),
                   notice(event, "circuit_open", at=T0 + timedelta(seconds=1)),
                   attempt(event, 1, "retrying", at=T0 + timedelta(seconds=31), error="HTTP 503"),
                   notice(event, "circuit_open", at=T0 + timedelta(seconds=32))]
        return reports + [attempt(event, 2, at=T0 + timedelta(seconds=62))] if settled else reports

    orders = list(itertools.permutations(range(4)))
    for n, order in enumerate(orders):
        reports = story(f"held{n}", False)
        for i in order:
            await ledger.record_batch([reports[i]])
        settled = story(f"done{n}", True)
        for i in (*order, 4)[::-1]:  # the success first, the rest in each order
            await ledger.record_batch([settled[i]])
    found = await states(ledger)
    assert {found[f"held{n}:ep_a"] for n in range(len(orders))} == {"circuit_open"}
    assert {found[f"done{n}:ep_a"] for n in range(len(orders))} == {"succeeded"}
    o = await StatsReader(ledger.pool, now=lambda: NOW).overview("t1")
    assert (o.stats.events_received, o.stats.deliveries) == (2 * len(orders), 2 * len(orders))
    assert o.pending == o.pending_by_reason["circuit_open"] == len(orders)


async def test_holds_move_only_unsettled_deliveries_and_each_counts_once(ledger: AttemptLedger) -> None:
    await ledger.record_batch([routed("evt1", "ep_a", "ep_b", at=T0), routed("evt2", "ep_a", at=T0)])
    # A burst of notices for one delivery (two processes, a redelivery): one hold, counted once.
    held = [notice("evt1", "in_flight_cap", at=T0 + timedelta(seconds=2)),
            notice("evt1", "rate_limited", at=T0 + timedelta(seconds=3)),
            notice("evt1", "in_flight_cap", at=T0 + timedelta(seconds=2))]
    await ledger.record_batch(held)
    await ledger.record_batch(held[:1])  # older than the hold it has: changes nothing
    # A hold of a delivery analytics never heard of (a replay's): new, counted.
    await ledger.record_batch([notice("evt3", "circuit_open", at=T0 + timedelta(seconds=4), endpoint="ep_c")])
    # A settled delivery is not held again (a late copy of its message met the open circuit).
    await ledger.record_batch([attempt("evt2", 1, at=T0 + timedelta(seconds=1)),
                               notice("evt2", "circuit_open", at=T0 + timedelta(seconds=9))])
    assert await states(ledger) == {"evt1:ep_a": "rate_limited", "evt1:ep_b": "queued",
                                    "evt3:ep_c": "circuit_open", "evt2:ep_a": "succeeded"}
    o = await StatsReader(ledger.pool, now=lambda: NOW).overview("t1")
    assert (o.stats.events_received, o.stats.deliveries, o.pending) == (2, 4, 3)
    assert o.pending_by_reason == {"queued": 1, "retrying": 0, "circuit_open": 1, "rate_limited": 1,
                                   "in_flight_cap": 0}


async def test_a_skipped_delivery_is_taken_off_where_it_was_counted(ledger: AttemptLedger) -> None:
    await ledger.record_batch([routed("evt1", "ep_a", "ep_b", at=T0, category="billing")])
    # ep_b filters this event type out: the delivery service skips it, never attempted.
    skipped = notice("evt1", "skipped", at=T0 + timedelta(minutes=5), endpoint="ep_b", category="billing")
    assert (await ledger.record_batch([skipped])).inserted == 1
    assert (await ledger.record_batch([skipped])).inserted == 0  # again: nothing more comes off
    # A skip heard of before the router's report: never counted at all.
    await ledger.record_batch([notice("evt2", "skipped", at=T0 + timedelta(seconds=1))])
    await ledger.record_batch([routed("evt2", "ep_a", at=T0)])
    reader = StatsReader(ledger.pool, now=lambda: NOW)
    o = await reader.overview("t1")
    assert (o.stats.events_received, o.stats.deliveries, o.pending) == (2, 1, 1)
    [minute] = await rollup(ledger, "all", "minute")
    assert (minute["events"], minute["deliveries"]) == (2, 1)
    by_endpoint = {r.key: r.stats for r in (await reader.breakdown("t1", "endpoint")).rows}
    assert (by_endpoint["ep_b"].deliveries, by_endpoint["ep_b"].events_received) == (0, 0)
    [billing] = [r for r in (await reader.breakdown("t1", "category")).rows if r.key == "billing"]
    assert (billing.stats.events_received, billing.stats.deliveries) == (1, 1)


async def test_an_attempted_delivery_whose_endpoint_is_gone_is_settled_and_stays_counted(
        ledger: AttemptLedger) -> None:
    await ledger.record_batch([routed("evt1", "ep_a", at=T0),
                               attempt("evt1", 1, "retrying", at=T0 + timedelta(seconds=1), error="HTTP 503")])
    # The endpoint was deleted before the retry: the delivery service skips the delivery.
    await ledger.record_batch([notice("evt1", "skipped", at=T0 + timedelta(minutes=1))])
    assert await states(ledger) == {"evt1:ep_a": "skipped"}
    o = await StatsReader(ledger.pool, now=lambda: NOW).overview("t1")
    assert (o.stats.deliveries, o.stats.attempts, o.pending) == (1, 1, 0)


async def test_events_received_count_each_event_once_with_what_became_of_it(ledger: AttemptLedger) -> None:
    reports = [routed("evt1", "ep_a", at=T0), routed("evt2", at=T0), routed("evt3", at=T0, outcome="dropped"),
               routed("evt4", at=T0 - timedelta(hours=2), source="src_b")]
    assert (await ledger.record_batch(reports)).inserted == 4
    # The router routed evt1 again (its ack was lost) and published its report again, past the
    # duplicate window.
    assert (await ledger.record_batch([reports[0], routed("evt1", "ep_a", at=T0)])).inserted == 0
    reader = StatsReader(ledger.pool, now=lambda: NOW)
    o = await reader.overview("t1")
    assert (o.stats.events_received, o.stats.routed, o.stats.unrouted, o.stats.dropped) == (4, 1, 2, 1)
    assert (o.stats.deliveries, o.pending, o.pending_by_reason["queued"]) == (1, 1, 1)
    sources = {r.key: r.stats for r in (await reader.breakdown("t1", "source")).rows}
    assert (sources["src_a"].events_received, sources["src_b"].unrouted) == (3, 1)


def test_reports_no_batch_could_store_are_refused() -> None:
    good_routing, good_notice = routed("evt1", "ep_a", at=T0), notice("evt1", "circuit_open", at=T0)
    for broken in (replace(good_routing, outcome="lost"), replace(good_routing, endpoint_ids=("",)),
                   replace(good_routing, received_at="now"),  # type: ignore[arg-type]  # not a number, on purpose
                   replace(good_routing, event_id=""),
                   replace(good_notice, state="sleeping"), replace(good_notice, at=-1),
                   replace(good_notice, endpoint_id=None),  # type: ignore[arg-type]  # no endpoint, on purpose
                   "not a report"):
        with pytest.raises(ValueError):
            check_report(broken)  # type: ignore[arg-type]  # "not a report" is a str, on purpose
    check_report(good_routing)
    check_report(good_notice)
