"""Recording the reports analytics is sent: raw rows and rollups, a batch in one transaction.

Three kinds of report arrive on ATTEMPTS (``switchboard/events.py``): a
:class:`RoutingOutcome` per event the router handled (an event received:
routed, unrouted or dropped, and the deliveries it queued), an
:class:`AttemptRecord` per delivery attempt, and a :class:`DeliveryNotice`
when a delivery is held without an attempt (circuit open, rate limit,
in-flight cap) or skipped. A batch takes any mix, in one transaction:

- routing outcomes insert their events (``ON CONFLICT DO NOTHING``) and their
  deliveries, ``queued``;
- attempts are inserted with ``ON CONFLICT DO NOTHING`` and, from the rows
  really inserted, move their deliveries' state (only a higher attempt number
  moves it);
- notices move a delivery not yet settled to its hold (only a later notice
  does), or settle it, attempted or not, as ``skipped``;

each returning only what was new. What that adds to each rollup row is summed
in Python (:class:`RollupDeltas`) and upserted in one ``INSERT ... ON
CONFLICT DO UPDATE`` that adds to what is there. A redelivered report is
therefore never counted twice, the order reports arrive in does not matter,
and a batch that fails leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, UTC
from collections.abc import Iterable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from services.analytics.histogram import SLOTS, slot_of
from switchboard.database import storable_text
from switchboard.events import (HOLD_REASONS, ROUTING_OUTCOMES, SKIPPED, AttemptRecord, DeliveryNotice, Report,
                               RoutingOutcome)

__all__ = ["BatchResult", "AttemptLedger", "Report", "event_id_of", "check_attempt", "check_report", "OUTCOMES",
           "SETTLED", "PENDING_STATES"]

OUTCOMES = ("succeeded", "retrying", "failed")
#: A delivery in one of these states is done with; any other state is pending.
SETTLED = ("succeeded", "failed", SKIPPED)
#: Why a delivery is pending: not attempted yet, waiting for its next attempt, or held.
PENDING_STATES = ("queued", "retrying", *HOLD_REASONS)



def event_id_of(delivery_id: str) -> str:
    """The event a delivery belongs to: its id is ``<event_id>:<endpoint_id>[:<replay_id>]``."""
    return delivery_id.split(":", 1)[0]


def check_attempt(attempt: AttemptRecord) -> None:
    """Raise ValueError for a report no batch could store, so it never holds one up."""
    for name in ("delivery_id", "tenant_id", "endpoint_id", "event_type"):
        if not isinstance(getattr(attempt, name), str) or not getattr(attempt, name):
            raise ValueError(f"{name} must be a non-empty string")
    for name in ("source_id", "category", "priority", "error"):
        if getattr(attempt, name) is not None and not isinstance(getattr(attempt, name), str):
            raise ValueError(f"{name} must be a string")
    if attempt.outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    if isinstance(attempt.number, bool) or not isinstance(attempt.number, int) or not 0 < attempt.number < 2**31:
        raise ValueError("number must be a positive integer")
    if attempt.status_code is not None and (isinstance(attempt.status_code, bool)
                                            or not isinstance(attempt.status_code, int)
                                            or not 0 <= attempt.status_code < 1000):
        raise ValueError("status_code must be an HTTP status")
    for name in ("latency_ms", "at"):
        value = getattr(attempt, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e11:
            raise ValueError(f"{name} must be a non-negative number")


def _check_text(report: object, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    for name in required:
        if not isinstance(getattr(report, name), str) or not getattr(report, name):
            raise ValueError(f"{name} must be a non-empty string")
    for name in optional:
        if getattr(report, name) is not None and not isinstance(getattr(report, name), str):
            raise ValueError(f"{name} must be a string")


def _check_time(report: object, *names: str) -> None:
    for name in names:
        value = getattr(report, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e11:
            raise ValueError(f"{name} must be a non-negative number")


def check_report(report: Report) -> None:
    """Raise ValueError for a report no batch could store, so it never holds one up."""
    if isinstance(report, AttemptRecord):
        check_attempt(report)
    elif isinstance(report, RoutingOutcome):
        _check_text(report, ("event_id", "tenant_id", "source_id", "event_type"), ("category", "priority"))
        _check_time(report, "received_at", "routed_at")
        if report.outcome not in ROUTING_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(ROUTING_OUTCOMES)}")
        if not all(isinstance(e, str) and e for e in report.endpoint_ids):
            raise ValueError("endpoint_ids must be non-empty strings")
    elif isinstance(report, DeliveryNotice):
        _check_text(report, ("delivery_id", "tenant_id", "endpoint_id", "event_type"),
                    ("source_id", "category", "priority"))
        _check_time(report, "at")
        if report.state not in (*HOLD_REASONS, SKIPPED):
            raise ValueError(f"state must be one of {', '.join((*HOLD_REASONS, SKIPPED))}")
    else:
        raise ValueError(f"not a report: {type(report).__name__}")


@dataclass(frozen=True)
class BatchResult:
    received: int
    # Reports new to analytics: attempts and events not seen before, notices
    # that moved a delivery (the rest were redeliveries, or came too late).
    inserted: int


# Parameters go in binary (%(name)b): text-format arrays are escaped element by
# element, which cost a third of this process's CPU.

# Routing outcomes: the events, and the deliveries they queued; what was new comes back.
_INSERT_ROUTED = """
WITH new_events AS (
    INSERT INTO analytics.events (event_id, tenant_id, first_at)
    SELECT * FROM unnest(%(event_id)b::text[], %(tenant_id)b::text[], %(received_at)b::timestamptz[])
    ORDER BY 1
    ON CONFLICT DO NOTHING
    RETURNING event_id
), new_deliveries AS (
    INSERT INTO analytics.deliveries (delivery_id, tenant_id, endpoint_id, first_at, last_number, state, state_at)
    SELECT delivery_id, tenant_id, endpoint_id, at, 0, 'queued', at
    FROM unnest(%(d_delivery_id)b::text[], %(d_tenant_id)b::text[], %(d_endpoint_id)b::text[],
                %(d_at)b::timestamptz[]) AS t(delivery_id, tenant_id, endpoint_id, at)
    ORDER BY delivery_id
    ON CONFLICT DO NOTHING
    RETURNING delivery_id
)
SELECT 'event' AS kind, event_id AS id FROM new_events
UNION ALL SELECT 'delivery', delivery_id FROM new_deliveries
"""

# Attempts: the raw rows. Only attempts really inserted come back, each with
# whether it is the first sight of its delivery. A delivery's state follows
# its latest attempt, unless a hold reported after that attempt (a retry came
# back to an open circuit) is newer.
_INSERT_ATTEMPTS = """
WITH input AS (
    SELECT * FROM unnest(%(delivery_id)b::text[], %(number)b::int[], %(tenant_id)b::text[], %(endpoint_id)b::text[],
                         %(event_type)b::text[], %(outcome)b::text[], %(status_code)b::int[],
                         %(latency_ms)b::float8[], %(at)b::timestamptz[], %(source_id)b::text[],
                         %(category)b::text[], %(priority)b::text[], %(error)b::text[])
        AS t(delivery_id, number, tenant_id, endpoint_id, event_type, outcome, status_code, latency_ms, at,
             source_id, category, priority, error)
), new_attempts AS (
    INSERT INTO analytics.attempts (delivery_id, number, tenant_id, endpoint_id, event_type, outcome, status_code,
                                    latency_ms, at, source_id, category, priority, error)
    SELECT delivery_id, number, tenant_id, endpoint_id, event_type, outcome, status_code, latency_ms, at,
           source_id, category, priority, error
    FROM input ORDER BY delivery_id, number
    ON CONFLICT DO NOTHING
    RETURNING delivery_id, number
), fresh AS (
    SELECT i.* FROM input i JOIN new_attempts n USING (delivery_id, number)
), touched_deliveries AS (
    INSERT INTO analytics.deliveries AS d (delivery_id, tenant_id, endpoint_id, first_at, last_number, last_outcome,
                                           last_at, state, state_at)
    SELECT delivery_id, min(tenant_id), min(endpoint_id), min(at), max(number),
           (array_agg(outcome ORDER BY number DESC))[1], (array_agg(at ORDER BY number DESC))[1],
           (array_agg(outcome ORDER BY number DESC))[1], (array_agg(at ORDER BY number DESC))[1]
    FROM fresh GROUP BY delivery_id ORDER BY delivery_id
    ON CONFLICT (delivery_id) DO UPDATE
        SET last_number = excluded.last_number, last_outcome = excluded.last_outcome, last_at = excluded.last_at,
            state = CASE WHEN excluded.state = 'retrying' AND d.state = ANY(%(holds)s::text[])
                               AND d.state_at > excluded.state_at THEN d.state ELSE excluded.state END,
            state_at = greatest(d.state_at, excluded.state_at)
        WHERE excluded.last_number > d.last_number
    RETURNING delivery_id, (xmax = 0) AS inserted
)
SELECT f.delivery_id, f.number, f.first_of_delivery AND coalesce(td.inserted, false) AS new_delivery
FROM (SELECT delivery_id, number,
             row_number() OVER (PARTITION BY delivery_id ORDER BY number) = 1 AS first_of_delivery
      FROM fresh) f
LEFT JOIN touched_deliveries td ON td.delivery_id = f.delivery_id
"""

# Holds: a delivery not settled moves to the hold a later notice names; one
# analytics never heard of is new.
_UPSERT_HOLDS = """
INSERT INTO analytics.deliveries AS d (delivery_id, tenant_id, endpoint_id, first_at, last_number, state, state_at)
SELECT delivery_id, tenant_id, endpoint_id, at, 0, state, at
FROM unnest(%(delivery_id)b::text[], %(tenant_id)b::text[], %(endpoint_id)b::text[], %(state)b::text[],
            %(at)b::timestamptz[]) AS t(delivery_id, tenant_id, endpoint_id, state, at)
ORDER BY delivery_id
ON CONFLICT (delivery_id) DO UPDATE SET state = excluded.state, state_at = excluded.state_at
    WHERE d.state <> ALL(%(settled)s::text[]) AND excluded.state_at > d.state_at
RETURNING delivery_id, (xmax = 0) AS inserted
"""

# Skips: a delivery not settled is settled as skipped (its endpoint filters the
# type out, or is gone). One counted but never attempted comes back with the
# time it was counted at, to be taken off again; one not seen yet is stored
# skipped (and so never counted); one attempted stays counted. One statement, so
# a skip racing the delivery's first report in another process cannot miss it.
_SKIP = """
INSERT INTO analytics.deliveries AS d (delivery_id, tenant_id, endpoint_id, first_at, last_number, state, state_at)
SELECT delivery_id, tenant_id, endpoint_id, at, 0, 'skipped', at
FROM unnest(%(delivery_id)b::text[], %(tenant_id)b::text[], %(endpoint_id)b::text[], %(at)b::timestamptz[])
    AS t(delivery_id, tenant_id, endpoint_id, at)
ORDER BY delivery_id
ON CONFLICT (delivery_id) DO UPDATE SET state = 'skipped', state_at = excluded.state_at
    WHERE d.state <> ALL(%(settled)s::text[])
RETURNING delivery_id, CASE WHEN xmax <> 0 AND d.last_number = 0 THEN d.first_at END AS first_at
"""

# What those reports add to each rollup row, aggregated in Python.
_UPSERT_ROLLUPS = """
INSERT INTO analytics.rollups AS r (tenant_id, dim, grain, key, bucket, events, routed, unrouted, dropped,
                                    deliveries, attempts, succeeded, failed, dead, latency_sum_ms, latency_hist,
                                    last_failure_at, last_error)
SELECT tenant_id, dim, grain, key, bucket, events, routed, unrouted, dropped, deliveries, attempts, succeeded,
       failed, dead, latency_sum_ms, latency_hist::bigint[], last_failure_at, last_error
FROM unnest(%(tenant_id)b::text[], %(dim)b::text[], %(grain)b::text[], %(key)b::text[], %(bucket)b::timestamptz[],
            %(events)b::bigint[], %(routed)b::bigint[], %(unrouted)b::bigint[], %(dropped)b::bigint[],
            %(deliveries)b::bigint[], %(attempts)b::bigint[], %(succeeded)b::bigint[],
            %(failed)b::bigint[], %(dead)b::bigint[], %(latency_sum_ms)b::float8[], %(latency_hist)b::text[],
            %(last_failure_at)b::timestamptz[], %(last_error)b::text[])
    AS t(tenant_id, dim, grain, key, bucket, events, routed, unrouted, dropped, deliveries, attempts, succeeded,
         failed, dead, latency_sum_ms, latency_hist, last_failure_at, last_error)
ON CONFLICT (tenant_id, dim, grain, key, bucket) DO UPDATE SET
    events = r.events + excluded.events,
    routed = r.routed + excluded.routed,
    unrouted = r.unrouted + excluded.unrouted,
    dropped = r.dropped + excluded.dropped,
    deliveries = r.deliveries + excluded.deliveries,
    attempts = r.attempts + excluded.attempts,
    succeeded = r.succeeded + excluded.succeeded,
    failed = r.failed + excluded.failed,
    dead = r.dead + excluded.dead,
    latency_sum_ms = r.latency_sum_ms + excluded.latency_sum_ms,
    latency_hist = analytics.add_histograms(r.latency_hist, excluded.latency_hist),
    last_error = CASE WHEN excluded.last_failure_at >= coalesce(r.last_failure_at, '-infinity')
                      THEN excluded.last_error ELSE r.last_error END,
    last_failure_at = greatest(r.last_failure_at, excluded.last_failure_at)
"""

# The rollup rows each report adds to: the whole tenant per minute, hour and
# day, and each dimension per hour and day.
_GRAIN_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_TARGETS = (("all", "minute"), ("all", "hour"), ("all", "day"),
            ("endpoint", "hour"), ("endpoint", "day"), ("event_type", "hour"), ("event_type", "day"),
            ("source", "hour"), ("source", "day"), ("category", "hour"), ("category", "day"),
            ("priority", "hour"), ("priority", "day"))
_EVENT_TARGETS = tuple(t for t in _TARGETS if t[0] != "endpoint")

RollupKey = tuple[str, str, str, str, float]  # tenant, dim, grain, key, bucket start (Unix seconds)


def _keys(report: Report, endpoint_id: str = "") -> dict[str, str]:
    """The key of each dimension a report counts in; '' for none (no source, not classified): keys are never
    NULL. The priority is the tenant's own level, as the router was given it."""
    return {"all": "", "endpoint": endpoint_id, "event_type": report.event_type, "source": report.source_id or "",
            "category": report.category or "", "priority": report.priority or ""}


class RollupDelta:
    """What a batch adds to one rollup row."""

    __slots__ = ("events", "routed", "unrouted", "dropped", "deliveries", "attempts", "succeeded", "failed", "dead",
                 "latency_sum_ms", "latency_hist", "last_failure_at", "last_error")

    def __init__(self) -> None:
        self.events = self.routed = self.unrouted = self.dropped = 0
        self.deliveries = self.attempts = self.succeeded = self.failed = self.dead = 0
        self.latency_sum_ms = 0.0
        self.latency_hist = [0] * SLOTS
        self.last_failure_at: float | None = None
        self.last_error: str | None = None


class RollupDeltas(dict[RollupKey, RollupDelta]):
    """Per rollup row, what the new reports of a batch add."""

    def _rows(self, tenant_id: str, keys: dict[str, str], at: float, targets=_TARGETS):
        for dim, grain in targets:
            step = _GRAIN_SECONDS[grain]
            key = (tenant_id, dim, grain, keys[dim], at - at % step)
            d = self.get(key)
            if d is None:
                d = self[key] = RollupDelta()
            yield dim, d

    def event(self, o: RoutingOutcome) -> None:
        """A new event received, in the minute it was received."""
        for _, d in self._rows(o.tenant_id, _keys(o), o.received_at, _EVENT_TARGETS):
            d.events += 1
            setattr(d, o.outcome, getattr(d, o.outcome) + 1)

    def delivery(self, report: Report, endpoint_id: str, at: float, count: int = 1) -> None:
        """A delivery to ``endpoint_id`` first heard of at ``at``, from ``report`` (``count`` -1: one taken off
        again)."""
        for dim, d in self._rows(report.tenant_id, _keys(report, endpoint_id), at):
            d.deliveries += count
            if dim == "endpoint":
                # Per endpoint, the events received are the events delivered to it.
                d.events += count

    def attempt(self, a: AttemptRecord, new_delivery: bool) -> None:
        """A new attempt, with whether it is its delivery's first sight."""
        if new_delivery:
            self.delivery(a, a.endpoint_id, a.at)
        slot, failed = slot_of(a.latency_ms), a.outcome != "succeeded"
        for _, d in self._rows(a.tenant_id, _keys(a, a.endpoint_id), a.at):
            d.attempts += 1
            d.latency_sum_ms += a.latency_ms
            d.latency_hist[slot] += 1
            if failed:
                d.failed += 1
                d.dead += a.outcome == "failed"
                if d.last_failure_at is None or a.at >= d.last_failure_at:
                    d.last_failure_at, d.last_error = a.at, a.error
            else:
                d.succeeded += 1


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class AttemptLedger:
    """Writes the reports sent to analytics (attempts, routing outcomes, notices); see the module docstring."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def record_batch(self, reports: Iterable[Report]) -> BatchResult:
        """Record a batch of reports, each once however often it is given; one transaction."""
        attempts: dict[tuple[str, int], AttemptRecord] = {}
        routed: dict[str, RoutingOutcome] = {}
        notices: dict[str, DeliveryNotice] = {}
        received = 0
        for report in reports:
            received += 1
            if isinstance(report, AttemptRecord):
                clean = _cleaned(report)
                attempts.setdefault((clean.delivery_id, clean.number), clean)
            elif isinstance(report, RoutingOutcome):
                outcome = _cleaned_outcome(report)
                routed.setdefault(outcome.event_id, outcome)
            else:
                notice = _cleaned_notice(report)
                # One per delivery: a skip is final, else the latest hold.
                seen = notices.get(notice.delivery_id)
                if seen is None or (seen.state != SKIPPED and (notice.state == SKIPPED or notice.at > seen.at)):
                    notices[notice.delivery_id] = notice
        if not (attempts or routed or notices):
            return BatchResult(received, 0)
        deltas = RollupDeltas()
        inserted = 0
        async with self.pool.connection() as conn, conn.transaction():
            if routed:
                inserted += await self._routed(conn, list(routed.values()), deltas)
            if attempts:
                inserted += await self._attempts(conn, attempts, deltas)
            holds = [n for n in notices.values() if n.state != SKIPPED]
            skips = [n for n in notices.values() if n.state == SKIPPED]
            if holds:
                inserted += await self._holds(conn, holds, deltas)
            if skips:
                inserted += await self._skips(conn, skips, deltas)
            if deltas:
                await conn.execute(_UPSERT_ROLLUPS, _rollup_params(deltas))
        return BatchResult(received, inserted)

    async def _routed(self, conn, outcomes: list[RoutingOutcome], deltas: RollupDeltas) -> int:
        by_delivery = {(o.event_id, e): o for o in outcomes for e in o.endpoint_ids}
        cur = await conn.execute(_INSERT_ROUTED, {
            "event_id": [o.event_id for o in outcomes], "tenant_id": [o.tenant_id for o in outcomes],
            "received_at": [_utc(o.received_at) for o in outcomes],
            "d_delivery_id": [f"{event_id}:{endpoint_id}" for event_id, endpoint_id in by_delivery],
            "d_tenant_id": [o.tenant_id for o in by_delivery.values()],
            "d_endpoint_id": [endpoint_id for _, endpoint_id in by_delivery],
            "d_at": [_utc(o.routed_at) for o in by_delivery.values()],
        })
        by_event = {o.event_id: o for o in outcomes}
        new_events = 0
        for row in await cur.fetchall():
            if row["kind"] == "event":
                deltas.event(by_event[row["id"]])
                new_events += 1
            else:
                event_id, endpoint_id = row["id"].split(":", 1)
                o = by_delivery[(event_id, endpoint_id)]
                deltas.delivery(o, endpoint_id, o.routed_at)
        return new_events

    async def _attempts(self, conn, unique: dict[tuple[str, int], AttemptRecord], deltas: RollupDeltas) -> int:
        rows = list(unique.values())
        cur = await conn.execute(_INSERT_ATTEMPTS, {
            "delivery_id": [a.delivery_id for a in rows],
            "number": [a.number for a in rows],
            "tenant_id": [a.tenant_id for a in rows],
            "endpoint_id": [a.endpoint_id for a in rows],
            "event_type": [a.event_type for a in rows],
            "outcome": [a.outcome for a in rows],
            "status_code": [a.status_code for a in rows],
            "latency_ms": [a.latency_ms for a in rows],
            "at": [_utc(a.at) for a in rows],
            "source_id": [a.source_id or "" for a in rows],
            "category": [a.category or "" for a in rows],
            "priority": [a.priority or "" for a in rows],
            "error": [a.error for a in rows],
            "holds": list(HOLD_REASONS),
        })
        fresh = await cur.fetchall()
        for r in fresh:
            deltas.attempt(unique[(r["delivery_id"], r["number"])], r["new_delivery"])
        return len(fresh)

    async def _holds(self, conn, holds: list[DeliveryNotice], deltas: RollupDeltas) -> int:
        cur = await conn.execute(_UPSERT_HOLDS, {
            "delivery_id": [n.delivery_id for n in holds], "tenant_id": [n.tenant_id for n in holds],
            "endpoint_id": [n.endpoint_id for n in holds], "state": [n.state for n in holds],
            "at": [_utc(n.at) for n in holds], "settled": list(SETTLED),
        })
        by_id = {n.delivery_id: n for n in holds}
        moved = await cur.fetchall()
        for row in moved:
            if row["inserted"]:
                n = by_id[row["delivery_id"]]
                deltas.delivery(n, n.endpoint_id, n.at)
        return len(moved)

    async def _skips(self, conn, skips: list[DeliveryNotice], deltas: RollupDeltas) -> int:
        cur = await conn.execute(_SKIP, {
            "delivery_id": [n.delivery_id for n in skips], "tenant_id": [n.tenant_id for n in skips],
            "endpoint_id": [n.endpoint_id for n in skips], "at": [_utc(n.at) for n in skips],
            "settled": list(SETTLED),
        })
        by_id = {n.delivery_id: n for n in skips}
        moved = await cur.fetchall()
        for row in moved:
            if row["first_at"] is not None:  # counted when first heard of: taken off where it was counted
                n = by_id[row["delivery_id"]]
                deltas.delivery(n, n.endpoint_id, row["first_at"].timestamp(), count=-1)
        return len(moved)


def _cleaned(a: AttemptRecord) -> AttemptRecord:
    return AttemptRecord(
        delivery_id=storable_text(a.delivery_id), number=int(a.number), tenant_id=storable_text(a.tenant_id),
        endpoint_id=storable_text(a.endpoint_id), event_type=storable_text(a.event_type), outcome=a.outcome,
        status_code=a.status_code, latency_ms=float(a.latency_ms), at=float(a.at), source_id=storable_text(a.source_id),
        category=storable_text(a.category), priority=storable_text(a.priority), error=storable_text(a.error))


def _cleaned_outcome(o: RoutingOutcome) -> RoutingOutcome:
    return replace(o, event_id=storable_text(o.event_id), tenant_id=storable_text(o.tenant_id),
                   source_id=storable_text(o.source_id), event_type=storable_text(o.event_type),
                   category=storable_text(o.category), priority=storable_text(o.priority),
                   received_at=float(o.received_at), routed_at=float(o.routed_at),
                   endpoint_ids=tuple(dict.fromkeys(storable_text(e) for e in o.endpoint_ids)))


def _cleaned_notice(n: DeliveryNotice) -> DeliveryNotice:
    return replace(n, delivery_id=storable_text(n.delivery_id), tenant_id=storable_text(n.tenant_id),
                   endpoint_id=storable_text(n.endpoint_id), event_type=storable_text(n.event_type),
                   source_id=storable_text(n.source_id), category=storable_text(n.category),
                   priority=storable_text(n.priority), at=float(n.at))


def _rollup_params(deltas: dict[RollupKey, RollupDelta]) -> dict[str, list]:
    # Sorted: one lock order for every writer, so concurrent batches wait, never deadlock.
    items = sorted(deltas.items(), key=lambda item: item[0])
    params: dict[str, list] = {
        "tenant_id": [k[0] for k, _ in items], "dim": [k[1] for k, _ in items], "grain": [k[2] for k, _ in items],
        "key": [k[3] for k, _ in items], "bucket": [_utc(k[4]) for k, _ in items],
    }
    for name in ("events", "routed", "unrouted", "dropped", "deliveries", "attempts", "succeeded", "failed", "dead",
                 "latency_sum_ms", "last_error"):
        params[name] = [getattr(d, name) for _, d in items]
    params["latency_hist"] = ["{" + ",".join(map(str, d.latency_hist)) + "}" for _, d in items]
    params["last_failure_at"] = [_utc(d.last_failure_at) if d.last_failure_at is not None else None
                                 for _, d in items]
    return params
