"""Recording attempt reports: raw rows and rollups, a batch in one transaction.

Two statements per batch, in one transaction: the attempts are inserted with
``ON CONFLICT DO NOTHING`` (and, from the rows really inserted, the
``events`` and ``deliveries`` tables are updated) returning only what was
inserted; what those attempts add to each rollup row is summed in Python
(:func:`rollup_deltas`) and upserted in one ``INSERT ... ON CONFLICT DO
UPDATE`` that adds to what is there. A redelivered report is therefore never
counted twice, and a batch that fails leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from psycopg_pool import AsyncConnectionPool

from services.analytics.histogram import SLOTS, slot_of
from switchboard.database import storable_text
from switchboard.events import AttemptRecord

__all__ = ["BatchResult", "AttemptLedger", "event_id_of", "check_attempt", "OUTCOMES"]

OUTCOMES = ("succeeded", "retrying", "failed")


def event_id_of(delivery_id: str) -> str:
    """The event a delivery belongs to: its id is ``<event_id>:<endpoint_id>[:<replay_id>]``."""
    return delivery_id.split(":", 1)[0]


def check_attempt(attempt: AttemptRecord) -> None:
    """Raise ValueError for a report no batch could store, so it never holds one up."""
    for name in ("delivery_id", "tenant_id", "endpoint_id", "event_type"):
        if not isinstance(getattr(attempt, name), str) or not getattr(attempt, name):
            raise ValueError(f"{name} must be a non-empty string")
    for name in ("source_id", "category", "error"):
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


@dataclass(frozen=True)
class BatchResult:
    received: int
    # Attempts new to analytics (the rest were redeliveries).
    inserted: int


# Parameters go in binary (%(name)b): text-format arrays are escaped element by
# element, which cost a third of this process's CPU.
# Step 1: the raw rows. Only attempts really inserted come back, each with
# whether it is the first sight of its event and of its delivery.
_INSERT_RAW = """
WITH input AS (
    SELECT * FROM unnest(%(delivery_id)b::text[], %(number)b::int[], %(tenant_id)b::text[], %(endpoint_id)b::text[],
                         %(event_type)b::text[], %(outcome)b::text[], %(status_code)b::int[],
                         %(latency_ms)b::float8[], %(at)b::timestamptz[], %(source_id)b::text[],
                         %(category)b::text[], %(error)b::text[], %(event_id)b::text[])
        AS t(delivery_id, number, tenant_id, endpoint_id, event_type, outcome, status_code, latency_ms, at,
             source_id, category, error, event_id)
), new_attempts AS (
    INSERT INTO analytics.attempts (delivery_id, number, tenant_id, endpoint_id, event_type, outcome, status_code,
                                    latency_ms, at, source_id, category, error)
    SELECT delivery_id, number, tenant_id, endpoint_id, event_type, outcome, status_code, latency_ms, at,
           source_id, category, error
    FROM input ORDER BY delivery_id, number
    ON CONFLICT DO NOTHING
    RETURNING delivery_id, number
), fresh AS (
    SELECT i.* FROM input i JOIN new_attempts n USING (delivery_id, number)
), new_events AS (
    INSERT INTO analytics.events (event_id, tenant_id, first_at)
    SELECT event_id, min(tenant_id), min(at) FROM fresh GROUP BY event_id ORDER BY event_id
    ON CONFLICT DO NOTHING
    RETURNING event_id
), touched_deliveries AS (
    INSERT INTO analytics.deliveries AS d (delivery_id, tenant_id, endpoint_id, first_at, last_number, last_outcome,
                                           last_at)
    SELECT delivery_id, min(tenant_id), min(endpoint_id), min(at), max(number),
           (array_agg(outcome ORDER BY number DESC))[1], (array_agg(at ORDER BY number DESC))[1]
    FROM fresh GROUP BY delivery_id ORDER BY delivery_id
    ON CONFLICT (delivery_id) DO UPDATE
        SET last_number = excluded.last_number, last_outcome = excluded.last_outcome, last_at = excluded.last_at
        WHERE excluded.last_number > d.last_number
    RETURNING delivery_id, (xmax = 0) AS inserted
)
SELECT f.delivery_id, f.number,
       f.first_of_event AND ne.event_id IS NOT NULL AS new_event,
       f.first_of_delivery AND coalesce(td.inserted, false) AS new_delivery
FROM (SELECT delivery_id, number, event_id,
             row_number() OVER (PARTITION BY event_id ORDER BY at, number) = 1 AS first_of_event,
             row_number() OVER (PARTITION BY delivery_id ORDER BY number) = 1 AS first_of_delivery
      FROM fresh) f
LEFT JOIN new_events ne ON ne.event_id = f.event_id
LEFT JOIN touched_deliveries td ON td.delivery_id = f.delivery_id
"""

# Step 2: what those attempts add to each rollup row, aggregated in Python.
_UPSERT_ROLLUPS = """
INSERT INTO analytics.rollups AS r (tenant_id, dim, grain, key, bucket, events, deliveries, attempts, succeeded,
                                    failed, dead, latency_sum_ms, latency_hist, last_failure_at, last_error)
SELECT tenant_id, dim, grain, key, bucket, events, deliveries, attempts, succeeded, failed, dead, latency_sum_ms,
       latency_hist::bigint[], last_failure_at, last_error
FROM unnest(%(tenant_id)b::text[], %(dim)b::text[], %(grain)b::text[], %(key)b::text[], %(bucket)b::timestamptz[],
            %(events)b::bigint[], %(deliveries)b::bigint[], %(attempts)b::bigint[], %(succeeded)b::bigint[],
            %(failed)b::bigint[], %(dead)b::bigint[], %(latency_sum_ms)b::float8[], %(latency_hist)b::text[],
            %(last_failure_at)b::timestamptz[], %(last_error)b::text[])
    AS t(tenant_id, dim, grain, key, bucket, events, deliveries, attempts, succeeded, failed, dead, latency_sum_ms,
         latency_hist, last_failure_at, last_error)
ON CONFLICT (tenant_id, dim, grain, key, bucket) DO UPDATE SET
    events = r.events + excluded.events,
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

# The rollup rows each attempt adds to: the whole tenant per minute, hour and
# day, and each dimension per hour and day.
_GRAIN_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_TARGETS = (("all", "minute"), ("all", "hour"), ("all", "day"),
            ("endpoint", "hour"), ("endpoint", "day"), ("event_type", "hour"), ("event_type", "day"),
            ("source", "hour"), ("source", "day"), ("category", "hour"), ("category", "day"))

RollupKey = tuple[str, str, str, str, float]  # tenant, dim, grain, key, bucket start (Unix seconds)


class RollupDelta:
    """What a batch adds to one rollup row."""

    __slots__ = ("events", "deliveries", "attempts", "succeeded", "failed", "dead", "latency_sum_ms",
                 "latency_hist", "last_failure_at", "last_error")

    def __init__(self) -> None:
        self.events = self.deliveries = self.attempts = self.succeeded = self.failed = self.dead = 0
        self.latency_sum_ms = 0.0
        self.latency_hist = [0] * SLOTS
        self.last_failure_at: float | None = None
        self.last_error: str | None = None


def rollup_deltas(attempts: Iterable[tuple[AttemptRecord, bool, bool]]) -> dict[RollupKey, RollupDelta]:
    """Per rollup row, what these newly recorded attempts add: each given with
    whether it is its event's first sight and its delivery's."""
    deltas: dict[RollupKey, RollupDelta] = {}
    for a, new_event, new_delivery in attempts:
        keys = {"all": "", "endpoint": a.endpoint_id, "event_type": a.event_type, "source": a.source_id or "",
                "category": a.category or ""}
        slot, failed = slot_of(a.latency_ms), a.outcome != "succeeded"
        for dim, grain in _TARGETS:
            step = _GRAIN_SECONDS[grain]
            key = (a.tenant_id, dim, grain, keys[dim], a.at - a.at % step)
            d = deltas.get(key)
            if d is None:
                d = deltas[key] = RollupDelta()
            # Per endpoint, the events received are the events delivered to it.
            d.events += new_delivery if dim == "endpoint" else new_event
            d.deliveries += new_delivery
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
    return deltas


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


class AttemptLedger:
    """Writes attempt reports into ``analytics``; see the module docstring."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def record_batch(self, attempts: Iterable[AttemptRecord]) -> BatchResult:
        """Record a batch of attempts, each once however often it is given; one transaction."""
        unique: dict[tuple[str, int], AttemptRecord] = {}
        received = 0
        for attempt in attempts:
            received += 1
            clean = _cleaned(attempt)
            unique.setdefault((clean.delivery_id, clean.number), clean)
        if not unique:
            return BatchResult(received, 0)
        rows = list(unique.values())
        params = {
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
            "error": [a.error for a in rows],
            "event_id": [event_id_of(a.delivery_id) for a in rows],
        }
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_INSERT_RAW, params)
            fresh = [(unique[(r["delivery_id"], r["number"])], r["new_event"], r["new_delivery"])
                     for r in await cur.fetchall()]
            if fresh:
                await conn.execute(_UPSERT_ROLLUPS, _rollup_params(rollup_deltas(fresh)))
        return BatchResult(received, len(fresh))


def _cleaned(a: AttemptRecord) -> AttemptRecord:
    return AttemptRecord(
        delivery_id=storable_text(a.delivery_id), number=int(a.number), tenant_id=storable_text(a.tenant_id),
        endpoint_id=storable_text(a.endpoint_id), event_type=storable_text(a.event_type), outcome=a.outcome,
        status_code=a.status_code, latency_ms=float(a.latency_ms), at=float(a.at), source_id=storable_text(a.source_id),
        category=storable_text(a.category), error=storable_text(a.error))


def _rollup_params(deltas: dict[RollupKey, RollupDelta]) -> dict[str, list]:
    # Sorted: one lock order for every writer, so concurrent batches wait, never deadlock.
    items = sorted(deltas.items(), key=lambda item: item[0])
    return {
        "tenant_id": [k[0] for k, _ in items], "dim": [k[1] for k, _ in items], "grain": [k[2] for k, _ in items],
        "key": [k[3] for k, _ in items], "bucket": [_utc(k[4]) for k, _ in items],
        "events": [d.events for _, d in items], "deliveries": [d.deliveries for _, d in items],
        "attempts": [d.attempts for _, d in items], "succeeded": [d.succeeded for _, d in items],
        "failed": [d.failed for _, d in items], "dead": [d.dead for _, d in items],
        "latency_sum_ms": [d.latency_sum_ms for _, d in items],
        "latency_hist": ["{" + ",".join(map(str, d.latency_hist)) + "}" for _, d in items],
        "last_failure_at": [_utc(d.last_failure_at) if d.last_failure_at is not None else None for _, d in items],
        "last_error": [d.last_error for _, d in items],
    }
