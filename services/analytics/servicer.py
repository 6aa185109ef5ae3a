"""AnalyticsService over gRPC: a thin translation to and from :mod:`services.analytics.stats`."""

from __future__ import annotations

from datetime import datetime, UTC

from services.analytics.ranges import TimeRange
from services.analytics.stats import Stats, StatsReader
from switchboard.rpc import servicer, timestamp
from switchboard.v1 import analytics_pb2 as pb, analytics_pb2_grpc as rpc


def _times(message: pb.TimeRange) -> tuple[datetime | None, datetime | None]:
    since = message.since.ToDatetime(tzinfo=UTC) if message.HasField("since") else None
    until = message.until.ToDatetime(tzinfo=UTC) if message.HasField("until") else None
    return since, until


def _range(window: TimeRange) -> pb.TimeRange:
    return pb.TimeRange(since=timestamp(window.since), until=timestamp(window.until))


def _stats(stats: Stats) -> pb.Stats:
    latency = stats.latency
    return pb.Stats(
        events_received=stats.events_received, routed=stats.routed, unrouted=stats.unrouted, dropped=stats.dropped,
        deliveries=stats.deliveries, attempts=stats.attempts,
        succeeded=stats.succeeded, failed=stats.failed, dead=stats.dead, success_rate=stats.success_rate,
        # A tenth of a millisecond is plenty (the histogram's slots are coarser).
        latency=pb.Latency(p50_ms=round(latency.p50_ms, 1), p95_ms=round(latency.p95_ms, 1),
                           p99_ms=round(latency.p99_ms, 1), avg_ms=round(latency.avg_ms, 1)),
    )


@servicer
class AnalyticsServicer(rpc.AnalyticsServiceServicer):
    def __init__(self, reader: StatsReader) -> None:
        self.reader = reader

    async def GetOverview(self, request, context):
        o = await self.reader.overview(request.tenant_id, *_times(request.range))
        return pb.Overview(range=_range(o.range), stats=_stats(o.stats), pending=o.pending,
                           pending_by_reason=o.pending_by_reason)

    async def GetTrends(self, request, context):
        t = await self.reader.trends(request.tenant_id, request.bucket or "hour", *_times(request.range),
                                     endpoint_id=request.endpoint_id)
        return pb.Trends(range=_range(t.range), bucket=t.bucket, points=[
            pb.TrendPoint(start=timestamp(p.start), stats=_stats(p.stats)) for p in t.points])

    async def GetBreakdown(self, request, context):
        b = await self.reader.breakdown(request.tenant_id, request.by, *_times(request.range), limit=request.limit)
        return pb.Breakdown(range=_range(b.range), by=b.by, rows=[
            pb.BreakdownRow(key=r.key, stats=_stats(r.stats)) for r in b.rows])

    async def GetEndpointStats(self, request, context):
        e = await self.reader.endpoint(request.tenant_id, request.endpoint_id, *_times(request.range))
        return pb.EndpointStats(endpoint_id=e.endpoint_id, range=_range(e.range), stats=_stats(e.stats),
                                pending=e.pending, pending_by_reason=e.pending_by_reason,
                                last_error=e.last_error or "",
                                last_failure_at=timestamp(e.last_failure_at))

    async def ListFailingEndpoints(self, request, context):
        window, endpoints = await self.reader.failing_endpoints(request.tenant_id, *_times(request.range),
                                                                limit=request.limit)
        return pb.FailingEndpoints(range=_range(window), endpoints=[
            pb.FailingEndpoint(endpoint_id=f.endpoint_id, failures=f.failures, attempts=f.attempts, dead=f.dead,
                               last_error=f.last_error or "", last_failure_at=timestamp(f.last_failure_at))
            for f in endpoints])
