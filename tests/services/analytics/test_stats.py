"""Attempts recorded into real PostgreSQL, then every question AnalyticsService answers, with exact figures."""

from __future__ import annotations

from datetime import datetime, timedelta, UTC

import pytest

from services.analytics.histogram import slot_of, slot_range
from services.analytics.ledger import AttemptLedger
from services.analytics.stats import StatsReader
from switchboard.errors import InvalidRequest, NotFound
from switchboard.events import Report
from tests.services.analytics.conftest import NOW, attempt, notice, routed

UTC = UTC


def at(hour: int, minute: int, second: int = 0, day: int = 10) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC)


# Tenant t1, "now" being 12:30 on 2026-03-10:
#   evt1 -> ep_a: succeeded at once (10 ms)
#   evt1 -> ep_b: retried (100 ms, HTTP 500), then succeeded (20 ms)
#   evt2 -> ep_a: retried (1000 ms, timeout), then failed for good (50 ms, HTTP 503): dead
#   evt3 -> ep_b: retried (5 ms), no next attempt yet: pending
#   evt4 -> ep_a: yesterday morning, outside the default range (30 ms)
#   evt5: no route; evt6: dropped; evt7 -> ep_b: held by the open circuit, never attempted;
#   evt8 -> ep_a: queued, not attempted yet
# Tenant t2: evt9 -> ep_z, succeeded.
SCENARIO: list[Report] = [
    routed("evt1", "ep_a", "ep_b", at=at(12, 0, 5), category="billing"),
    routed("evt2", "ep_a", at=at(11, 9), event_type="order.paid"),
    routed("evt3", "ep_b", at=at(12, 19)),
    routed("evt4", "ep_a", at=at(8, 59, day=9), event_type="invoice.paid", source="src_b"),
    routed("evt5", at=at(12, 25)),
    routed("evt6", at=at(12, 26), outcome="dropped"),
    routed("evt7", "ep_b", at=at(12, 27)),
    notice("evt7", "circuit_open", at=at(12, 28), endpoint="ep_b"),
    routed("evt8", "ep_a", at=at(12, 29)),
    routed("evt9", "ep_z", at=at(12, 9), tenant="t2"),
    attempt("evt1", 1, at=at(12, 0, 10), latency_ms=10, category="billing"),
    attempt("evt1", 1, "retrying", at=at(12, 0, 20), latency_ms=100, endpoint="ep_b", category="billing",
            error="HTTP 500", status_code=500),
    attempt("evt1", 2, at=at(12, 5), latency_ms=20, endpoint="ep_b", category="billing"),
    attempt("evt2", 1, "retrying", at=at(11, 10), latency_ms=1000, error="timeout", status_code=None,
            event_type="order.paid"),
    attempt("evt2", 2, "failed", at=at(11, 20), latency_ms=50, error="HTTP 503", status_code=503,
            event_type="order.paid"),
    attempt("evt3", 1, "retrying", at=at(12, 20), latency_ms=5, endpoint="ep_b", error="connection refused",
            status_code=None, source=None),
    attempt("evt4", 1, at=at(9, 0, day=9), latency_ms=30, event_type="invoice.paid", source="src_b"),
    attempt("evt9", 1, at=at(12, 10), latency_ms=15, tenant="t2", endpoint="ep_z"),
]


def in_slot_of(value: float, latency_ms: float) -> bool:
    low, high = slot_range(slot_of(latency_ms))
    return low <= value <= high


@pytest.fixture
async def reader(ledger: AttemptLedger) -> StatsReader:
    result = await ledger.record_batch(SCENARIO)
    assert result.inserted == len(SCENARIO)
    return StatsReader(ledger.pool, now=lambda: NOW)


async def test_the_overview_counts_events_deliveries_outcomes_and_latency(reader: StatsReader) -> None:
    o = await reader.overview("t1")
    assert (o.range.since, o.range.until) == (NOW - timedelta(days=1), NOW)
    s = o.stats
    assert (s.events_received, s.routed, s.unrouted, s.dropped) == (7, 5, 1, 1)
    assert (s.deliveries, s.attempts) == (6, 6)
    assert (s.succeeded, s.failed, s.dead, o.pending) == (2, 4, 1, 3)
    assert o.pending_by_reason == {"queued": 1, "retrying": 1, "circuit_open": 1, "rate_limited": 0,
                                   "in_flight_cap": 0}
    assert s.success_rate == pytest.approx(2 / 3)
    # Latencies 5, 10, 20, 50, 100, 1000 ms: the median is the 3rd, p95 and p99 the 6th.
    latency = s.latency
    assert in_slot_of(latency.p50_ms, 20) and in_slot_of(latency.p95_ms, 1000) and in_slot_of(latency.p99_ms, 1000)
    assert latency.avg_ms == pytest.approx(1185 / 6)

    wider = await reader.overview("t1", since=at(0, 0, day=9))
    assert (wider.stats.events_received, wider.stats.attempts, wider.stats.succeeded) == (8, 7, 3)
    assert (await reader.overview("t2")).stats.attempts == 1


async def test_a_range_counts_to_the_minute(reader: StatsReader) -> None:
    # [12:00, 12:05) holds evt1's first attempts only; evt1's retry at 12:05 is outside.
    o = await reader.overview("t1", since=at(12, 0), until=at(12, 5))
    assert (o.stats.attempts, o.stats.succeeded, o.stats.failed, o.stats.events_received) == (2, 1, 1, 1)
    # Seconds round out to whole minutes.
    o = await reader.overview("t1", since=at(12, 0, 30), until=at(12, 4, 10))
    assert o.range.since == at(12, 0) and o.range.until == at(12, 5) and o.stats.attempts == 2


async def test_trends_come_per_bucket_with_zeros_up_to_now(reader: StatsReader) -> None:
    t = await reader.trends("t1", "hour", since=at(10, 0), until=at(15, 0))
    assert [p.start for p in t.points] == [at(10, 0), at(11, 0), at(12, 0)]
    assert [p.stats.attempts for p in t.points] == [0, 2, 4]
    assert [p.stats.dead for p in t.points] == [0, 1, 0]
    assert in_slot_of(t.points[1].stats.latency.p99_ms, 1000)

    minutes = await reader.trends("t1", "minute", since=at(12, 0), until=at(12, 6))
    assert [p.stats.attempts for p in minutes.points] == [2, 0, 0, 0, 0, 1]
    days = await reader.trends("t1", "day", since=at(0, 0, day=8))
    assert [(p.start.day, p.stats.attempts) for p in days.points] == [(8, 0), (9, 1), (10, 6)]

    by_endpoint = await reader.trends("t1", "hour", since=at(11, 0), until=at(13, 0), endpoint_id="ep_b")
    assert [p.stats.attempts for p in by_endpoint.points] == [0, 3]


async def test_breakdowns_by_endpoint_event_type_source_and_category(reader: StatsReader) -> None:
    endpoints = await reader.breakdown("t1", "endpoint")
    assert [(r.key, r.stats.attempts, r.stats.succeeded, r.stats.dead, r.stats.events_received)
            for r in endpoints.rows] == [("ep_a", 3, 1, 1, 3), ("ep_b", 3, 1, 0, 3)]
    types = await reader.breakdown("t1", "event_type")
    assert {r.key: (r.stats.events_received, r.stats.attempts) for r in types.rows} == {
        "order.created": (6, 4), "order.paid": (1, 2)}
    sources = await reader.breakdown("t1", "source")
    assert {r.key: r.stats.attempts for r in sources.rows} == {"src_a": 5, "": 1}
    categories = await reader.breakdown("t1", "category", since=at(0, 0, day=9))
    assert {r.key: (r.stats.attempts, r.stats.success_rate) for r in categories.rows} == {
        "billing": (3, 1.0), "": (4, pytest.approx(1 / 2))}
    assert [r.key for r in (await reader.breakdown("t1", "endpoint", limit=1)).rows] == ["ep_a"]


async def test_a_breakdown_by_priority_counts_each_tenants_own_levels(ledger: AttemptLedger) -> None:
    """The priority reports carry is on the tenant's scale: t1 keeps the built-in levels, t2 has two."""
    reports: list[Report] = [
        routed("evt1", "ep_a", at=at(12, 0), category="alert", priority="urgent"),
        attempt("evt1", 1, at=at(12, 1), category="alert", priority="urgent"),
        routed("evt2", "ep_a", "ep_b", at=at(12, 2), priority="high"),
        attempt("evt2", 1, at=at(12, 3), priority="high"),
        attempt("evt2", 1, "failed", at=at(12, 3), endpoint="ep_b", priority="high", status_code=410),
        routed("evt3", "ep_a", at=at(12, 4)),  # not classified: no route asked the AI
        attempt("evt3", 1, at=at(12, 5)),
        routed("evt4", "ep_z", at=at(12, 0), tenant="t2", priority="P1"),
        attempt("evt4", 1, at=at(12, 1), tenant="t2", endpoint="ep_z", priority="P1"),
        routed("evt5", "ep_z", at=at(12, 2), tenant="t2", priority="P2"),
        notice("evt5", "circuit_open", at=at(12, 3), tenant="t2", endpoint="ep_z", priority="P2"),
    ]
    assert (await ledger.record_batch(reports)).inserted == len(reports)
    reader = StatsReader(ledger.pool, now=lambda: NOW)
    t1 = await reader.breakdown("t1", "priority")
    assert t1.by == "priority"
    assert [(r.key, r.stats.events_received, r.stats.deliveries, r.stats.attempts, r.stats.succeeded, r.stats.dead)
            for r in t1.rows] == [("high", 1, 2, 2, 1, 1), ("", 1, 1, 1, 1, 0), ("urgent", 1, 1, 1, 1, 0)]
    t2 = await reader.breakdown("t2", "priority")
    assert {r.key: (r.stats.events_received, r.stats.deliveries, r.stats.attempts) for r in t2.rows} == {
        "P1": (1, 1, 1), "P2": (1, 1, 0)}
    # Category and priority are dimensions of their own.
    assert {r.key for r in (await reader.breakdown("t1", "category")).rows} == {"alert", ""}
    async with ledger.pool.connection() as conn:  # each attempt keeps its priority ('' when none)
        cur = await conn.execute("SELECT delivery_id, priority FROM analytics.attempts WHERE tenant_id = 't1'")
        assert {(r["delivery_id"], r["priority"]) for r in await cur.fetchall()} == {
            ("evt1:ep_a", "urgent"), ("evt2:ep_a", "high"), ("evt2:ep_b", "high"), ("evt3:ep_a", "")}


async def test_an_endpoint_with_its_pending_deliveries_and_last_error(reader: StatsReader) -> None:
    e = await reader.endpoint("t1", "ep_b")
    assert (e.stats.attempts, e.stats.succeeded, e.stats.failed, e.pending) == (3, 1, 2, 2)
    assert (e.pending_by_reason["retrying"], e.pending_by_reason["circuit_open"]) == (1, 1)
    assert e.last_error == "connection refused" and e.last_failure_at == at(12, 20)
    window, failing = await reader.failing_endpoints("t1")
    assert [(f.endpoint_id, f.failures, f.dead, f.last_error, f.last_failure_at) for f in failing] == [
        ("ep_b", 2, 0, "connection refused", at(12, 20)),
        ("ep_a", 2, 1, "HTTP 503", at(11, 20)),
    ]
    assert (await reader.failing_endpoints("t2"))[1] == []


async def test_unknown_and_other_tenants_endpoints_are_not_found(reader: StatsReader) -> None:
    for tenant, endpoint in (("t1", "ep_nope"), ("t2", "ep_a"), ("t1", "ep_z")):
        with pytest.raises(NotFound):
            await reader.endpoint(tenant, endpoint)
        with pytest.raises(NotFound):
            await reader.trends(tenant, "hour", endpoint_id=endpoint)
    # Another tenant's data is never counted.
    assert (await reader.overview("t3")).stats.attempts == 0
    assert (await reader.breakdown("t2", "endpoint")).rows[0].key == "ep_z"


async def test_empty_and_future_ranges_are_empty_and_bad_requests_refused(reader: StatsReader) -> None:
    empty = await reader.overview("t1", since=at(12, 0), until=at(12, 0))
    assert empty.stats.attempts == 0 and empty.pending == 0 and empty.stats.latency.p50_ms == 0
    future = (NOW + timedelta(days=30), NOW + timedelta(days=31))
    o = await reader.overview("t1", *future)
    assert (o.stats.attempts, o.stats.success_rate, o.pending) == (0, 0.0, 0)
    assert (await reader.trends("t1", "minute", *future)).points == []
    assert (await reader.breakdown("t1", "endpoint", *future)).rows == []
    assert (await reader.failing_endpoints("t1", *future))[1] == []
    assert (await reader.endpoint("t1", "ep_a", *future)).stats.attempts == 0
    quiet = await reader.overview("t1", since=at(0, 0, day=1), until=at(0, 0, day=2))
    assert quiet.stats.attempts == 0

    with pytest.raises(InvalidRequest, match="bucket"):
        await reader.trends("t1", "week")
    with pytest.raises(InvalidRequest, match="bucket"):
        await reader.trends("t1", "")
    with pytest.raises(InvalidRequest, match="hour or day"):
        await reader.trends("t1", "minute", endpoint_id="ep_a")
    with pytest.raises(InvalidRequest, match="1500"):
        await reader.trends("t1", "minute", since=NOW - timedelta(days=3))
    with pytest.raises(InvalidRequest, match="until"):
        await reader.overview("t1", since=at(12, 0), until=at(11, 0))
    with pytest.raises(InvalidRequest, match="by must be"):
        await reader.breakdown("t1", "colour")
    with pytest.raises(InvalidRequest, match="limit"):
        await reader.breakdown("t1", "endpoint", limit=5000)
