"""Recording attempt reports: raw rows and rollups, a batch in one statement.

One statement per batch (one round trip, one transaction): the attempts are
inserted with ``ON CONFLICT DO NOTHING``, and only the rows that were really
inserted go on to the ``events`` and ``deliveries`` tables and into the
rollups, aggregated per rollup row first (``INSERT ... ON CONFLICT DO
UPDATE`` adds to what is there). A redelivered report is therefore never
counted twice, and a batch that fails leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from psycopg_pool import AsyncConnectionPool

from services.analytics.histogram import SLOTS, slot_of
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


def _text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; one in a report must not fail its batch.
    return value.replace("\x00", "") if value and "\x00" in value else value


@dataclass(frozen=True)
class BatchResult:
    received: int
    # Attempts new to analytics (the rest were redeliveries).
    inserted: int


# The rollup rows each attempt adds to: the whole tenant per minute, hour and
# day, and each dimension per hour and day.
_RECORD_BATCH = """
WITH input AS (
    SELECT * FROM unnest(%(delivery_id)s::text[], %(number)s::int[], %(tenant_id)s::text[], %(endpoint_id)s::text[],
                         %(event_type)s::text[], %(outcome)s::text[], %(status_code)s::int[],
                         %(latency_ms)s::float8[], %(at)s::timestamptz[], %(source_id)s::text[],
                         %(category)s::text[], %(error)s::text[], %(event_id)s::text[], %(slot)s::int[])
        AS t(delivery_id, number, tenant_id, endpoint_id, event_type, outcome, status_code, latency_ms, at,
             source_id, category, error, event_id, slot)
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
), facts AS (
    SELECT f.*,
           (f.first_of_event AND ne.event_id IS NOT NULL)::int AS new_event,
           (f.first_of_delivery AND coalesce(td.inserted, false))::int AS new_delivery
    FROM (SELECT *,
                 row_number() OVER (PARTITION BY event_id ORDER BY at, number) = 1 AS first_of_event,
                 row_number() OVER (PARTITION BY delivery_id ORDER BY number) = 1 AS first_of_delivery
          FROM fresh) f
    LEFT JOIN new_events ne ON ne.event_id = f.event_id
    LEFT JOIN touched_deliveries td ON td.delivery_id = f.delivery_id
), targets AS (
    SELECT f.tenant_id, t.dim, t.grain, t.key, date_trunc(t.grain, f.at, 'UTC') AS bucket, f.at, f.outcome,
           f.latency_ms, f.slot, f.error, f.new_delivery,
           -- Per endpoint, the events received are the events delivered to it.
           CASE WHEN t.dim = 'endpoint' THEN f.new_delivery ELSE f.new_event END AS new_event
    FROM facts f CROSS JOIN LATERAL (VALUES
        ('all', 'minute', ''), ('all', 'hour', ''), ('all', 'day', ''),
        ('endpoint', 'hour', f.endpoint_id), ('endpoint', 'day', f.endpoint_id),
        ('event_type', 'hour', f.event_type), ('event_type', 'day', f.event_type),
        ('source', 'hour', f.source_id), ('source', 'day', f.source_id),
        ('category', 'hour', f.category), ('category', 'day', f.category)
    ) AS t(dim, grain, key)
), slot_counts AS (
    SELECT tenant_id, dim, grain, key, bucket, slot, count(*) AS n
    FROM targets GROUP BY tenant_id, dim, grain, key, bucket, slot
), histograms AS (
    SELECT tenant_id, dim, grain, key, bucket,
           analytics.histogram(array_agg(slot + 1), array_agg(n), %(slots)s) AS latency_hist
    FROM slot_counts GROUP BY tenant_id, dim, grain, key, bucket
), sums AS (
    SELECT tenant_id, dim, grain, key, bucket,
           sum(new_event) AS events, sum(new_delivery) AS deliveries, count(*) AS attempts,
           count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE outcome <> 'succeeded') AS failed,
           count(*) FILTER (WHERE outcome = 'failed') AS dead,
           sum(latency_ms) AS latency_sum_ms,
           max(at) FILTER (WHERE outcome <> 'succeeded') AS last_failure_at,
           (array_agg(error ORDER BY at DESC) FILTER (WHERE outcome <> 'succeeded'))[1] AS last_error
    FROM targets GROUP BY tenant_id, dim, grain, key, bucket
), rolled AS (
    INSERT INTO analytics.rollups AS r (tenant_id, dim, grain, key, bucket, events, deliveries, attempts, succeeded,
                                        failed, dead, latency_sum_ms, latency_hist, last_failure_at, last_error)
    SELECT s.tenant_id, s.dim, s.grain, s.key, s.bucket, s.events, s.deliveries, s.attempts, s.succeeded, s.failed,
           s.dead, s.latency_sum_ms, h.latency_hist, s.last_failure_at, s.last_error
    FROM sums s JOIN histograms h USING (tenant_id, dim, grain, key, bucket)
    -- One lock order for every writer: concurrent batches wait, never deadlock.
    ORDER BY s.tenant_id, s.dim, s.grain, s.key, s.bucket
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
    RETURNING 1
)
SELECT (SELECT count(*) FROM new_attempts) AS inserted
"""


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
            unique.setdefault((attempt.delivery_id, int(attempt.number)), attempt)
        if not unique:
            return BatchResult(received, 0)
        rows = list(unique.values())
        params = {
            "delivery_id": [_text(a.delivery_id) for a in rows],
            "number": [int(a.number) for a in rows],
            "tenant_id": [_text(a.tenant_id) for a in rows],
            "endpoint_id": [_text(a.endpoint_id) for a in rows],
            "event_type": [_text(a.event_type) for a in rows],
            "outcome": [a.outcome for a in rows],
            "status_code": [a.status_code for a in rows],
            "latency_ms": [float(a.latency_ms) for a in rows],
            "at": [datetime.fromtimestamp(a.at, timezone.utc) for a in rows],
            "source_id": [_text(a.source_id) or "" for a in rows],
            "category": [_text(a.category) or "" for a in rows],
            "error": [_text(a.error) for a in rows],
            "event_id": [event_id_of(_text(a.delivery_id) or "") for a in rows],
            "slot": [slot_of(a.latency_ms) for a in rows],
            "slots": SLOTS,
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(_RECORD_BATCH, params)
            row = await cur.fetchone()
        return BatchResult(received, row["inserted"])
