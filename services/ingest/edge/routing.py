"""Every route of the edge in one table, each naming the scope it needs.

``None`` as the scope means the route is not guarded by an API key:
``/in/...`` is verified by the source's own signature scheme instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services.ingest.edge import rest, rest_ai, rest_analytics, rest_events, rest_replies
from switchboard.apikeys import Principal
from services.ingest.edge.context import EdgeContext
from services.ingest.edge.contract import (
    INT64_MAX,
    Param,
    RequestContract,
    integer_param,
    string_param,
    time_param,
)
from services.ingest.edge.dashboard import dashboard_routes
from services.ingest.edge.webhooks import WEBHOOK_ROUTE, receive_webhook
from switchboard.errors import RateLimited, Unavailable
from switchboard.outages import dependency_states

__all__ = ["ApiRoute", "API_ROUTES", "starlette_routes"]

ApiHandler = Callable[[Request, Principal, EdgeContext], Awaitable[Response]]


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str
    handler: ApiHandler
    scope: str
    summary: str
    # OpenAPI component names (see openapi.py).
    request: str | None = None
    response: str | None = None
    status: int = 200
    # The query parameters it takes (contract.py): any other is refused.
    query: tuple[Param, ...] = ()


# Query parameters several routes share.
_SINCE = time_param("since", "From this time (ISO 8601)")
_UNTIL = time_param("until", "Up to this time (ISO 8601)")
_ANALYTICS_RANGE = (time_param("since", "ISO 8601; default 24 hours before until"),
                    time_param("until", "ISO 8601; default now"))
_ANALYTICS_LIMIT = integer_param("limit", 1, 1000, "At most this many rows (default 100)")


API_ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute("POST", "/v1/events", rest.publish_event, "events:publish", "Publish an event", "EventPublish",
             "Accepted", 202),
    ApiRoute("POST", "/v1/sources", rest.create_source, "admin", "Create a source", "SourceCreate", "SourceCreated", 201),
    ApiRoute("GET", "/v1/sources", rest.list_sources, "read", "List sources", None, "SourceList"),
    ApiRoute("GET", "/v1/sources/{source_id}", rest.get_source, "read", "Get a source", None, "Source"),
    ApiRoute("POST", "/v1/sources/{source_id}/rotate-secret", rest.rotate_source_secret, "admin",
             "Rotate a source's secret (the old one verifies for grace_seconds more)", "SecretRotation",
             "SourceCreated"),
    ApiRoute("PATCH", "/v1/sources/{source_id}", rest.update_source, "admin",
             "Change a source's name, config, allowed_ips or rate_limit (only the fields given)", "SourceUpdate",
             "Source"),
    ApiRoute("DELETE", "/v1/sources/{source_id}", rest.delete_source, "admin",
             "Delete a source: its webhooks get 404; the events it brought stay", None, "Deleted"),
    ApiRoute("POST", "/v1/sources/{source_id}/disable", rest.disable_source, "admin",
             "Disable a source: its webhooks get 410", None, "Source"),
    ApiRoute("POST", "/v1/sources/{source_id}/enable", rest.enable_source, "admin",
             "Enable a disabled source again", None, "Source"),
    ApiRoute("POST", "/v1/endpoints", rest.create_endpoint, "admin", "Create an endpoint", "EndpointCreate",
             "EndpointCreated", 201),
    ApiRoute("GET", "/v1/endpoints", rest.list_endpoints, "read", "List endpoints", None, "EndpointList"),
    ApiRoute("GET", "/v1/endpoints/{endpoint_id}", rest.get_endpoint, "read", "Get an endpoint", None, "Endpoint"),
    ApiRoute("PATCH", "/v1/endpoints/{endpoint_id}", rest.update_endpoint, "admin",
             "Change an endpoint (only the fields given)", "EndpointUpdate", "Endpoint"),
    ApiRoute("DELETE", "/v1/endpoints/{endpoint_id}", rest.delete_endpoint, "admin",
             "Delete an endpoint: its delivery log stays, its pending deliveries fail", None, "Deleted"),
    ApiRoute("POST", "/v1/endpoints/{endpoint_id}/rotate-secret", rest.rotate_endpoint_secret, "admin",
             "Rotate the signing secret (both signatures are sent for grace_seconds)", "SecretRotation",
             "EndpointCreated"),
    ApiRoute("POST", "/v1/endpoints/{endpoint_id}/disable", rest.set_endpoint_enabled, "admin",
             "Disable an endpoint: deliveries to it fail at once, kept for retry", "EndpointState", "Endpoint"),
    ApiRoute("POST", "/v1/endpoints/{endpoint_id}/enable", rest.set_endpoint_enabled, "admin",
             "Enable an endpoint again", None, "Endpoint"),
    ApiRoute("POST", "/v1/endpoints/{endpoint_id}/test", rest.test_endpoint, "admin",
             "Send a test event to the endpoint; follow it at /v1/deliveries/{delivery_id}", None, "TestSent", 202),
    ApiRoute("POST", "/v1/endpoints/{endpoint_id}/retry-failed", rest.retry_failed, "admin",
             "Retry all of an endpoint's failed (dead-lettered) deliveries", None, "Retried", 202),
    ApiRoute("GET", "/v1/deliveries", rest.list_deliveries, "read",
             "Deliveries, newest first (filters: endpoint_id, event_id, status, since, until; cursor, limit)",
             None, "DeliveryList",
             query=(string_param("endpoint_id", max_length=64), string_param("event_id", max_length=64),
                    string_param("status", enum=("pending", "succeeded", "failed")), _SINCE, _UNTIL,
                    string_param("cursor", "next_cursor of the previous page", max_length=500),
                    integer_param("limit", 1, 1000, "Page size (default 50)"))),
    ApiRoute("GET", "/v1/deliveries/{delivery_id}", rest.get_delivery, "read", "A delivery with its attempts",
             None, "Delivery"),
    ApiRoute("POST", "/v1/deliveries/{delivery_id}/retry", rest.retry_delivery, "admin",
             "Retry a failed (dead-lettered) delivery: a new cycle of attempts, the same webhook-id", None,
             "Delivery", 202),
    ApiRoute("POST", "/v1/routes", rest.create_route, "admin", "Create a route", "RouteSpec", "Route", 201),
    ApiRoute("GET", "/v1/routes", rest.list_routes, "read", "List routes, in evaluation order", None, "RouteList"),
    ApiRoute("POST", "/v1/routes/simulate", rest.simulate_routes, "admin",
             "Run a stored (event_id) or given (event) event through the current or proposed (routes) routes: "
             "what would be delivered where, rendered; nothing is sent", "Simulate", "Simulation"),
    ApiRoute("GET", "/v1/routes/{route_id}", rest.get_route, "read", "Get a route", None, "Route"),
    ApiRoute("PATCH", "/v1/routes/{route_id}", rest.update_route, "admin", "Change a route (the fields given)",
             "RouteSpec", "Route"),
    ApiRoute("DELETE", "/v1/routes/{route_id}", rest.delete_route, "admin", "Delete a route", None, "Deleted"),
    ApiRoute("POST", "/v1/templates", rest.create_template, "admin", "Create a transform template",
             "TemplateCreate", "Template", 201),
    ApiRoute("GET", "/v1/templates", rest.list_templates, "read", "List templates", None, "TemplateList"),
    ApiRoute("GET", "/v1/templates/{template_id}", rest.get_template, "read", "Get a template", None, "Template"),
    ApiRoute("PATCH", "/v1/templates/{template_id}", rest.update_template, "admin",
             "Change a template (a new version when source or output change)", "TemplateUpdate", "Template"),
    ApiRoute("DELETE", "/v1/templates/{template_id}", rest.delete_template, "admin",
             "Delete a template no route uses (409 otherwise)", None, "Deleted"),
    ApiRoute("POST", "/v1/templates/{template_id}/test", rest.test_template, "admin",
             "Render the template with sample data (type, payload, ai)", "TemplateSample", "TemplateRendered"),
    ApiRoute("GET", "/v1/events", rest_events.list_events, "read",
             "Events, newest first (filters: source_id, type glob, since, until, status routed|unrouted|dropped, "
             "category; cursor, limit 1-1000)", None, "EventList", query=rest_events.LIST_EVENTS_QUERY),
    ApiRoute("GET", "/v1/events/{event_id}", rest.get_event, "read", "Get an event with its deliveries", None,
             "EventWithDeliveries"),
    ApiRoute("POST", "/v1/replays", rest.create_replay, "admin",
             "Re-deliver the events of a time range (to one endpoint or through the current routes), "
             "in the background; follow its progress at /v1/replays/{replay_id}", "ReplayCreate", "Replay", 202),
    ApiRoute("GET", "/v1/replays", rest.list_replays, "read", "Replays, newest first", None, "ReplayList",
             query=(integer_param("limit", 1, 500, "At most this many (default 50)"),)),
    ApiRoute("GET", "/v1/replays/{replay_id}", rest.get_replay, "read", "A replay and its progress", None, "Replay"),
    ApiRoute("POST", "/v1/replays/{replay_id}/cancel", rest.cancel_replay, "admin", "Stop a running replay", None,
             "Replay"),
    ApiRoute("GET", "/v1/replies", rest_replies.list_replies, "read",
             "AI-drafted replies, newest first (status=held: those waiting for review; conversation_key; "
             "before, limit 1-200)", None, "ReplyList", query=rest_replies.LIST_REPLIES_QUERY),
    ApiRoute("GET", "/v1/replies/{reply_id}", rest_replies.get_reply, "read", "An AI-drafted reply", None,
             "ReplyDraft"),
    ApiRoute("POST", "/v1/replies/{reply_id}/approve", rest_replies.approve_reply, "admin",
             "Send a held reply to its conversation (text: send this instead of the draft); 409 unless held",
             "ReplyApproval", "ReplyDraft"),
    ApiRoute("POST", "/v1/replies/{reply_id}/reject", rest_replies.reject_reply, "admin",
             "Discard a held reply; 409 unless held", None, "ReplyDraft"),
    ApiRoute("GET", "/v1/ai/settings", rest_ai.get_ai_settings, "read",
             "The tenant's AI settings: provider chain, categories, current prompts", None, "AISettings"),
    ApiRoute("PATCH", "/v1/ai/settings", rest_ai.update_ai_settings, "admin",
             "Change the provider chain or categories (an empty list: back to the default)", "AISettingsUpdate",
             "AISettings"),
    ApiRoute("POST", "/v1/ai/prompts", rest_ai.save_prompt, "admin",
             "A new version of the tenant's prompt template for a task", "PromptSave", "Prompt", 201),
    ApiRoute("GET", "/v1/ai/usage", rest_ai.get_ai_usage, "read",
             "AI usage per provider and day, with estimated cost (since: ISO time, default 30 days)", None,
             "AIUsage", query=(time_param("since", "ISO 8601; default 30 days ago"),)),
    ApiRoute("POST", "/v1/ai/classify", rest_ai.ai_classify, "admin", "Classify the event in the body",
             "AIEvent", "AIClassification"),
    ApiRoute("POST", "/v1/ai/extract", rest_ai.ai_extract, "admin",
             "Fill the JSON schema in the body from the event in the body", "AIExtract", "AIExtraction"),
    ApiRoute("POST", "/v1/ai/reply", rest_ai.ai_reply, "admin",
             "Draft the next reply in the conversation (conversation_key) to the message in the body",
             "AIReplyRequest", "AIReply"),
    ApiRoute("GET", "/v1/analytics/overview", rest_analytics.get_analytics_overview, "read",
             "Delivery totals: events, deliveries, attempts, succeeded, failed, pending, dead, success rate, "
             "latency percentiles (since, until: ISO times; default the last 24 hours)", None, "AnalyticsOverview",
             query=_ANALYTICS_RANGE),
    ApiRoute("GET", "/v1/analytics/trends", rest_analytics.get_analytics_trends, "read",
             "Delivery totals per bucket (bucket: minute, hour or day; since, until; endpoint_id: hour or day only)",
             None, "AnalyticsTrends",
             query=(*_ANALYTICS_RANGE, string_param("bucket", "default hour", enum=("minute", "hour", "day")),
                    string_param("endpoint_id", max_length=64))),
    ApiRoute("GET", "/v1/analytics/breakdown", rest_analytics.get_analytics_breakdown, "read",
             "Delivery totals per endpoint, event_type, source or category (by; since, until; limit)", None,
             "AnalyticsBreakdown",
             query=(*_ANALYTICS_RANGE, _ANALYTICS_LIMIT,
                    string_param("by", enum=("endpoint", "event_type", "source", "category"), required=True))),
    ApiRoute("GET", "/v1/analytics/failing-endpoints", rest_analytics.list_failing_endpoints, "read",
             "Endpoints with failed attempts, most first, with their last error (since, until; limit)", None,
             "FailingEndpointList", query=(*_ANALYTICS_RANGE, _ANALYTICS_LIMIT)),
    ApiRoute("GET", "/v1/analytics/endpoints/{endpoint_id}", rest_analytics.get_endpoint_analytics, "read",
             "One endpoint's delivery totals, pending deliveries and last error (since, until)", None,
             "EndpointAnalytics", query=_ANALYTICS_RANGE),
    ApiRoute("GET", "/v1/audit", rest.list_audit, "admin", "The audit log, newest first", None, "AuditList",
             query=(integer_param("limit", 1, 1000, "Page size (default 100)"),
                    integer_param("before_id", 1, INT64_MAX, "Entries older than this id (the next page)"))),
)


def _guarded(route: ApiRoute, contract: RequestContract) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        edge: EdgeContext = request.app.state.edge
        principal = await edge.authenticator.bearer(request.headers.get("authorization"))
        verdict = edge.key_buckets.take(principal.key_id, edge.key_rate)
        if not verdict.allowed:
            raise RateLimited("this API key is over its rate limit", retry_after_s=verdict.retry_after_s,
                              headers=verdict.headers())
        principal.require(route.scope)
        await contract.check(request, route, edge.settings.max_body_bytes)
        try:
            # A hung dependency (a stopped database answers nothing, and gRPC calls
            # have their own deadline) must not hold the caller for ever.
            async with asyncio.timeout(edge.settings.rpc_timeout_s * 3):
                response = await route.handler(request, principal, edge)
        except TimeoutError:
            raise Unavailable("a dependency did not answer in time; retry later") from None
        response.headers.update(verdict.headers())
        return response

    endpoint.__name__ = route.handler.__name__
    return endpoint


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Readiness, with the state of each dependency.

    503 while NATS is down: no webhook can be acknowledged. With PostgreSQL
    down, webhooks for known sources are still taken (sources are cached from
    their change feed, JetStream makes them durable): 200 ``degraded``, so a
    load balancer keeps sending them here.
    """
    edge: EdgeContext = request.app.state.edge
    states = await dependency_states(edge.nc, request.app.state.postgres)
    body = {name: state.as_json() for name, state in states.items()}
    if not states["nats"].up:
        return JSONResponse({"status": "unavailable", "dependencies": body}, status_code=503,
                            headers={"Retry-After": "5"})
    return JSONResponse({"status": "ok" if all(s.up for s in states.values()) else "degraded",
                         "dependencies": body})


class _RoutedWebhook:
    """An ASGI app (a class, so that Starlette does not wrap it as a request handler)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive_webhook(scope["app"].state.edge, scope["path_params"]["source_id"], scope, receive, send)


def starlette_routes(openapi: Callable[[Request], Awaitable[Response]]) -> list[Route]:
    # Imported here: openapi.py reads API_ROUTES from this module.
    from services.ingest.edge.openapi import SCHEMAS

    contract = RequestContract(SCHEMAS).compile(API_ROUTES)
    routes = [
        # EdgeApp answers POST /in/{source_id} before Starlette; the route stays for the 405 of other
        # methods, and for a path only Starlette's matching takes (a root_path).
        Route(WEBHOOK_ROUTE, _RoutedWebhook(), methods=["POST"], name="receive_webhook"),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        # The dashboard page and its assets: static, not API routes (no key; not in OpenAPI).
        *dashboard_routes(),
    ]
    # Routes sharing a path share one Starlette route, so a wrong method is 405, not 404.
    by_path: dict[str, dict[str, ApiRoute]] = {}
    for api_route in API_ROUTES:
        by_path.setdefault(api_route.path, {})[api_route.method] = api_route
    for path, methods in by_path.items():
        handlers = {method: _guarded(r, contract) for method, r in methods.items()}

        async def dispatch(request: Request, handlers=handlers) -> Response:
            return await handlers[request.method](request)

        routes.append(Route(path, dispatch, methods=list(handlers)))
    return routes
