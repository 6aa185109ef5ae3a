"""Delivery statistics out of the rollups: the read side of AnalyticsService.

Every answer reads ``analytics.rollups`` (a handful of rows per range, see
:mod:`ranges`), plus the partial index of deliveries not settled; never the
raw attempts. What each figure means is in docs/analytics.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any, overload
from collections.abc import Callable, Sequence

from psycopg_pool import AsyncConnectionPool

from services.analytics.histogram import percentile
from services.analytics.ledger import PENDING_STATES
from services.analytics.ranges import Span, TimeRange, buckets, cover, resolve_range
from switchboard.errors import InvalidRequest, NotFound

__all__ = ["DIMENSIONS", "Latency", "Stats", "Overview", "TrendPoint", "Trends", "BreakdownRow", "Breakdown",
           "EndpointStats", "FailingEndpoint", "StatsReader"]

# What a breakdown can be by, and the rollup dimension it reads.
DIMENSIONS = ("endpoint", "event_type", "source", "category", "priority")
DEFAULT_BREAKDOWN_LIMIT = 100
DEFAULT_FAILING_LIMIT = 20
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float


@dataclass(frozen=True)
class Stats:
    events_received: int = 0
    routed: int = 0
    unrouted: int = 0
    dropped: int = 0
    deliveries: int = 0
    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    latency_sum_ms: float = 0.0
    latency_hist: Sequence[int] | None = None

    @property
    def success_rate(self) -> float:
        """Settled deliveries that succeeded: succeeded / (succeeded + dead)."""
        settled = self.succeeded + self.dead
        return self.succeeded / settled if settled else 0.0

    @property
    def latency(self) -> Latency:
        hist = self.latency_hist
        return Latency(percentile(hist, 0.50), percentile(hist, 0.95), percentile(hist, 0.99),
                       self.latency_sum_ms / self.attempts if self.attempts else 0.0)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Stats:
        counts = {name: int(row[name] or 0) for name in ("routed", "unrouted", "dropped", "deliveries", "attempts",
                                                          "succeeded", "failed", "dead")}
        return cls(events_received=int(row["events"] or 0), **counts,
                   latency_sum_ms=float(row["latency_sum_ms"] or 0.0), latency_hist=row["latency_hist"])


@dataclass(frozen=True)
class Overview:
    range: TimeRange
    stats: Stats
    # Deliveries not settled (attempted or not), and the same by why they wait
    # (every one of PENDING_STATES is there).
    pending: int
    pending_by_reason: dict[str, int]


@dataclass(frozen=True)
class TrendPoint:
    start: datetime
    stats: Stats


@dataclass(frozen=True)
class Trends:
    range: TimeRange
    bucket: str
    points: list[TrendPoint]


@dataclass(frozen=True)
class BreakdownRow:
    key: str
    stats: Stats


@dataclass(frozen=True)
class Breakdown:
    range: TimeRange
    by: str
    rows: list[BreakdownRow]


@dataclass(frozen=True)
class EndpointStats:
    endpoint_id: str
    range: TimeRange
    stats: Stats
    pending: int
    pending_by_reason: dict[str, int]
    last_error: str | None
    last_failure_at: datetime | None


@dataclass(frozen=True)
class FailingEndpoint:
    endpoint_id: str
    failures: int
    attempts: int
    dead: int
    last_error: str | None
    last_failure_at: datetime | None


_SUMS = """coalesce(sum(r.events), 0) AS events, coalesce(sum(r.routed), 0) AS routed,
           coalesce(sum(r.unrouted), 0) AS unrouted, coalesce(sum(r.dropped), 0) AS dropped,
           coalesce(sum(r.deliveries), 0) AS deliveries,
           coalesce(sum(r.attempts), 0) AS attempts, coalesce(sum(r.succeeded), 0) AS succeeded,
           coalesce(sum(r.failed), 0) AS failed, coalesce(sum(r.dead), 0) AS dead,
           coalesce(sum(r.latency_sum_ms), 0) AS latency_sum_ms,
           analytics.sum_histograms(r.latency_hist) AS latency_hist,
           max(r.last_failure_at) AS last_failure_at,
           (array_agg(r.last_error ORDER BY r.last_failure_at DESC)
                FILTER (WHERE r.last_failure_at IS NOT NULL))[1] AS last_error"""

# The rollup rows of a set of spans (grain, [start, end)).
_SPANS = """JOIN unnest(%(grains)s::text[], %(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS s(grain, lo, hi)
              ON r.grain = s.grain AND r.bucket >= s.lo AND r.bucket < s.hi"""


def _spans(spans: list[Span]) -> dict[str, list]:
    return {"grains": [s.grain for s in spans], "starts": [s.start for s in spans], "ends": [s.end for s in spans]}


def _limit(value: int, default: int) -> int:
    if value == 0:
        return default
    if not 0 < value <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return value


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: datetime | None) -> datetime | None: ...
def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


class StatsReader:
    """Answers AnalyticsService's questions for one tenant at a time."""

    def __init__(self, pool: AsyncConnectionPool[Any], now: Callable[[], datetime] | None = None) -> None:
        self.pool = pool
        self.now = now or (lambda: datetime.now(UTC))

    async def overview(self, tenant_id: str, since: datetime | None = None, until: datetime | None = None) -> Overview:
        window = resolve_range(since, until, self.now())
        stats, _ = await self._totals(tenant_id, "all", "", cover(window))
        by_reason = await self._pending(tenant_id, window)
        return Overview(window, stats, sum(by_reason.values()), by_reason)

    async def trends(self, tenant_id: str, bucket: str, since: datetime | None = None,
                     until: datetime | None = None, endpoint_id: str = "") -> Trends:
        if bucket not in ("minute", "hour", "day"):
            raise InvalidRequest("bucket must be minute, hour or day")
        if endpoint_id and bucket == "minute":
            raise InvalidRequest("an endpoint's trends come in hour or day buckets")
        now = self.now()
        window = resolve_range(since, until, now, bucket)
        starts = buckets(window, bucket, now)
        dim, key = ("endpoint", endpoint_id) if endpoint_id else ("all", "")
        if endpoint_id:
            await self._require_endpoint(tenant_id, endpoint_id)
        found: dict[datetime, Stats] = {}
        if starts:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    """SELECT bucket, events, routed, unrouted, dropped, deliveries, attempts, succeeded, failed, dead,
                              latency_sum_ms, latency_hist
                       FROM analytics.rollups
                       WHERE tenant_id = %s AND dim = %s AND grain = %s AND key = %s
                         AND bucket >= %s AND bucket < %s""",
                    (tenant_id, dim, bucket, key, starts[0], window.until),
                )
                found = {_utc(row["bucket"]): Stats.from_row(row) for row in await cur.fetchall()}
        return Trends(window, bucket, [TrendPoint(start, found.get(start, Stats())) for start in starts])

    async def breakdown(self, tenant_id: str, by: str, since: datetime | None = None,
                        until: datetime | None = None, limit: int = 0) -> Breakdown:
        if by not in DIMENSIONS:
            raise InvalidRequest(f"by must be one of {', '.join(DIMENSIONS)}")
        limit = _limit(limit, DEFAULT_BREAKDOWN_LIMIT)
        window = resolve_range(since, until, self.now(), "hour")
        spans = cover(window, "hour")
        if not spans:
            return Breakdown(window, by, [])
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"""SELECT r.key, {_SUMS} FROM analytics.rollups r {_SPANS}
                    WHERE r.tenant_id = %(tenant)s AND r.dim = %(dim)s
                    GROUP BY r.key ORDER BY attempts DESC, r.key LIMIT %(limit)s""",
                {"tenant": tenant_id, "dim": by, "limit": limit, **_spans(spans)},
            )
            rows = await cur.fetchall()
        return Breakdown(window, by, [BreakdownRow(row["key"], Stats.from_row(row)) for row in rows])

    async def endpoint(self, tenant_id: str, endpoint_id: str, since: datetime | None = None,
                       until: datetime | None = None) -> EndpointStats:
        await self._require_endpoint(tenant_id, endpoint_id)
        window = resolve_range(since, until, self.now(), "hour")
        stats, row = await self._totals(tenant_id, "endpoint", endpoint_id, cover(window, "hour"))
        by_reason = await self._pending(tenant_id, window, endpoint_id)
        return EndpointStats(endpoint_id, window, stats, sum(by_reason.values()), by_reason,
                             row.get("last_error"), _utc(row.get("last_failure_at")))

    async def failing_endpoints(self, tenant_id: str, since: datetime | None = None, until: datetime | None = None,
                                limit: int = 0) -> tuple[TimeRange, list[FailingEndpoint]]:
        limit = _limit(limit, DEFAULT_FAILING_LIMIT)
        window = resolve_range(since, until, self.now(), "hour")
        spans = cover(window, "hour")
        if not spans:
            return window, []
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"""SELECT r.key, {_SUMS} FROM analytics.rollups r {_SPANS}
                    WHERE r.tenant_id = %(tenant)s AND r.dim = 'endpoint'
                    GROUP BY r.key HAVING sum(r.failed) > 0
                    ORDER BY failed DESC, last_failure_at DESC, r.key LIMIT %(limit)s""",
                {"tenant": tenant_id, "limit": limit, **_spans(spans)},
            )
            rows = await cur.fetchall()
        return window, [FailingEndpoint(row["key"], int(row["failed"]), int(row["attempts"]), int(row["dead"]),
                                        row["last_error"], _utc(row["last_failure_at"])) for row in rows]

    async def _totals(self, tenant_id: str, dim: str, key: str, spans: list[Span]) -> tuple[Stats, dict[str, Any]]:
        if not spans:
            return Stats(), {}
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"""SELECT {_SUMS} FROM analytics.rollups r {_SPANS}
                    WHERE r.tenant_id = %(tenant)s AND r.dim = %(dim)s AND r.key = %(key)s""",
                {"tenant": tenant_id, "dim": dim, "key": key, **_spans(spans)},
            )
            row = await cur.fetchone()
        return Stats.from_row(row), row

    async def _pending(self, tenant_id: str, window: TimeRange, endpoint_id: str | None = None) -> dict[str, int]:
        """The deliveries first heard of in the range that are not settled now, by state."""
        by_reason = dict.fromkeys(PENDING_STATES, 0)
        if window.empty:
            return by_reason
        async with self.pool.connection() as conn:
            # ledger.SETTLED written out: the partial index deliveries_unsettled has this predicate.
            cur = await conn.execute(
                """SELECT state, count(*) AS n FROM analytics.deliveries
                   WHERE tenant_id = %s AND state NOT IN ('succeeded', 'failed', 'skipped')
                     AND first_at >= %s AND first_at < %s AND (%s::text IS NULL OR endpoint_id = %s)
                   GROUP BY state""",
                (tenant_id, window.since, window.until, endpoint_id, endpoint_id),
            )
            for row in await cur.fetchall():
                by_reason[row["state"]] = int(row["n"])
        return by_reason

    async def _require_endpoint(self, tenant_id: str, endpoint_id: str) -> None:
        """NotFound unless analytics has seen an attempt to this endpoint for this tenant."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT 1 FROM analytics.rollups
                   WHERE tenant_id = %s AND dim = 'endpoint' AND grain = 'day' AND key = %s LIMIT 1""",
                (tenant_id, endpoint_id),
            )
            if await cur.fetchone() is None:
                raise NotFound(f"no analytics for endpoint {endpoint_id}")
