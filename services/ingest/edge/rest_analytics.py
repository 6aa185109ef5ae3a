"""The ``/v1/analytics`` REST API: a thin layer over AnalyticsService's gRPC API.

Every route takes ``since`` and ``until`` (ISO 8601 times; the last 24 hours
when omitted). Counts are JSON integers and every field is always present, so
a dashboard can read the answers as they are. See docs/analytics.md.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from switchboard.apikeys import Principal
from services.ingest.edge.context import EdgeContext
from services.ingest.edge.fields import int_param, timestamp_param
from switchboard.rpc import call
from switchboard.v1 import analytics_pb2 as pb, analytics_pb2_grpc as rpc

__all__ = ["get_analytics_overview", "get_analytics_trends", "get_analytics_breakdown", "get_endpoint_analytics",
           "list_failing_endpoints"]


def _stub(edge: EdgeContext) -> rpc.AnalyticsServiceStub:
    return edge.clients.stub("analytics", rpc.AnalyticsServiceStub)


def _range(request: Request) -> pb.TimeRange:
    return pb.TimeRange(since=timestamp_param(request, "since"), until=timestamp_param(request, "until"))


def _limit(request: Request) -> int:
    # int32 on the wire; AnalyticsService says which limits it takes.
    return max(-1, min(int_param(request, "limit", 0), 2**31 - 1))


def _time(message: Any, name: str) -> str | None:
    if not message.HasField(name):
        return None
    return getattr(message, name).ToDatetime().isoformat() + "Z"


def _window(window: pb.TimeRange) -> dict[str, Any]:
    return {"since": _time(window, "since"), "until": _time(window, "until")}


def _stats(stats: pb.Stats) -> dict[str, Any]:
    latency = stats.latency
    return {
        "events_received": stats.events_received, "routed": stats.routed, "unrouted": stats.unrouted,
        "dropped": stats.dropped, "deliveries": stats.deliveries, "attempts": stats.attempts,
        "succeeded": stats.succeeded, "failed": stats.failed, "dead": stats.dead,
        "success_rate": stats.success_rate,
        "latency_ms": {"p50": round(latency.p50_ms, 1), "p95": round(latency.p95_ms, 1),
                       "p99": round(latency.p99_ms, 1), "avg": round(latency.avg_ms, 1)},
    }


async def get_analytics_overview(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_stub(edge).GetOverview(pb.OverviewRequest(
        tenant_id=principal.tenant_id, range=_range(request)), timeout=edge.clients.timeout))
    return JSONResponse({**_window(reply.range), **_stats(reply.stats), "pending": reply.pending,
                         "pending_by_reason": dict(reply.pending_by_reason)})


async def get_analytics_trends(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    params = request.query_params
    reply = await call(_stub(edge).GetTrends(pb.TrendsRequest(
        tenant_id=principal.tenant_id, range=_range(request), bucket=params.get("bucket", "hour"),
        endpoint_id=params.get("endpoint_id", "")), timeout=edge.clients.timeout))
    return JSONResponse({**_window(reply.range), "bucket": reply.bucket,
                         "data": [{"start": _time(p, "start"), **_stats(p.stats)} for p in reply.points]})


async def get_analytics_breakdown(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_stub(edge).GetBreakdown(pb.BreakdownRequest(
        tenant_id=principal.tenant_id, range=_range(request), by=request.query_params.get("by", ""),
        limit=_limit(request)), timeout=edge.clients.timeout))
    return JSONResponse({**_window(reply.range), "by": reply.by,
                         "data": [{"key": r.key, **_stats(r.stats)} for r in reply.rows]})


async def get_endpoint_analytics(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_stub(edge).GetEndpointStats(pb.EndpointStatsRequest(
        tenant_id=principal.tenant_id, endpoint_id=request.path_params["endpoint_id"], range=_range(request)),
        timeout=edge.clients.timeout))
    return JSONResponse({"endpoint_id": reply.endpoint_id, **_window(reply.range), **_stats(reply.stats),
                         "pending": reply.pending, "pending_by_reason": dict(reply.pending_by_reason),
                         "last_error": reply.last_error or None,
                         "last_failure_at": _time(reply, "last_failure_at")})


async def list_failing_endpoints(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_stub(edge).ListFailingEndpoints(pb.FailingEndpointsRequest(
        tenant_id=principal.tenant_id, range=_range(request), limit=_limit(request)),
        timeout=edge.clients.timeout))
    return JSONResponse({**_window(reply.range), "data": [
        {"endpoint_id": e.endpoint_id, "failures": e.failures, "attempts": e.attempts, "dead": e.dead,
         "last_error": e.last_error or None, "last_failure_at": _time(e, "last_failure_at")}
        for e in reply.endpoints]})
