"""The ``/v1`` REST API: thin handlers over the sources domain and the other services' gRPC APIs.

Every handler receives the request, the verified :class:`Principal` and the
:class:`EdgeContext`; every query is scoped to the principal's tenant.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from switchboard.apikeys import Principal, record_audit
from services.ingest.edge.context import EdgeContext
from services.ingest.edge.fields import (
    as_dict,
    grace_seconds,
    int_param,
    object_field,
    string_field,
    strings_field,
    timestamp_field,
    timestamp_param,
)
from services.ingest.edge.requests import read_json_object
from services.ingest.sources import Source, rate_limit
from switchboard.errors import InvalidRequest
from switchboard.protojson import from_message, plain, struct, to_message
from switchboard.rpc import call, timestamp
from switchboard.v1 import auth_pb2, auth_pb2_grpc, delivery_pb2, delivery_pb2_grpc, router_pb2, router_pb2_grpc

__all__ = [
    "publish_event", "list_audit",
    "create_source", "list_sources", "get_source", "rotate_source_secret", "disable_source", "enable_source",
    "update_source", "delete_source",
    "create_endpoint", "list_endpoints", "get_endpoint", "update_endpoint", "delete_endpoint",
    "rotate_endpoint_secret", "set_endpoint_enabled", "retry_failed", "test_endpoint",
    "list_deliveries", "get_delivery", "retry_delivery",
    "create_route", "update_route", "get_route", "delete_route", "list_routes", "simulate_routes", "get_event",
    "create_template", "update_template", "get_template", "list_templates", "delete_template", "test_template",
    "create_replay", "list_replays", "get_replay", "cancel_replay",
]


def _source(source: Source, request: Request) -> dict[str, Any]:
    limit = source.rate_limit
    return {
        "id": source.id,
        "name": source.name,
        "type": source.type,
        "config": source.config,
        "allowed_ips": list(source.allowed_ips),
        "disabled_at": source.disabled_at.isoformat() if source.disabled_at else None,
        "previous_secret_expires_at": (
            source.previous_secret_expires_at.isoformat() if source.previous_secret_expires_at else None),
        "rate_limit": {"per_second": limit.rate_per_s, "burst": limit.burst} if limit else None,
        "created_at": source.created_at.isoformat(),
        "ingest_url": str(request.url_for("receive_webhook", source_id=source.id)),
    }


def _auth_stub(edge: EdgeContext) -> auth_pb2_grpc.AuthServiceStub:
    return edge.clients.stub("auth", auth_pb2_grpc.AuthServiceStub)


async def audit(edge: EdgeContext, principal: Principal, action: str, resource: str) -> None:
    """Record a mutation in the audit log (AuthService) before answering it."""
    await record_audit(edge.clients, principal.tenant_id, principal.key_id, action, resource)


# -- events published through the API -----------------------------------------------

async def publish_event(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    if "payload" not in body:
        raise InvalidRequest("payload is required")
    key = body.get("idempotency_key")
    if key is not None and not isinstance(key, str):
        raise InvalidRequest("idempotency_key must be a string")
    accepted = await edge.intake.publish_api_event(
        principal.tenant_id, principal.key_id, string_field(body, "type", required=True), body["payload"], key)
    return JSONResponse({"event_id": accepted.event_id, "duplicate": accepted.duplicate}, status_code=202)


async def list_audit(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_auth_stub(edge).ListAudit(auth_pb2.ListAuditRequest(
        tenant_id=principal.tenant_id, limit=int_param(request, "limit", 100),
        before_id=int_param(request, "before_id", 0)), timeout=edge.clients.timeout))
    return JSONResponse({"data": [as_dict(e) for e in reply.entries]})


# -- sources (this service's own domain) -----------------------------------------

async def create_source(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    limit = object_field(body, "rate_limit")
    source = await edge.sources.create(
        principal.tenant_id,
        string_field(body, "name", required=True),
        string_field(body, "type", "generic"),
        object_field(body, "config"),
        string_field(body, "secret"),
        strings_field(body, "allowed_ips"),
        rate_limit(limit.get("per_second"), limit.get("burst")),
    )
    await audit(edge, principal, "source.create", source.id)
    # The secret is shown this once, so it can be configured at the sender.
    return JSONResponse({**_source(source, request), "secret": source.secret}, status_code=201)


async def rotate_source_secret(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    source = await edge.sources.rotate_secret(principal.tenant_id, request.path_params["source_id"],
                                              timedelta(seconds=grace_seconds(body)), string_field(body, "secret"))
    await audit(edge, principal, "source.rotate_secret", source.id)
    return JSONResponse({**_source(source, request), "secret": source.secret})


async def disable_source(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    source = await edge.sources.disable(principal.tenant_id, request.path_params["source_id"])
    await audit(edge, principal, "source.disable", source.id)
    return JSONResponse(_source(source, request))


async def enable_source(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    source = await edge.sources.set_enabled(principal.tenant_id, request.path_params["source_id"], True)
    await audit(edge, principal, "source.enable", source.id)
    return JSONResponse(_source(source, request))


async def update_source(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = string_field(body, "name", required=True)
    if "config" in body:
        changes["config"] = object_field(body, "config")
    if "allowed_ips" in body:
        changes["allowed_ips"] = strings_field(body, "allowed_ips")
    if "rate_limit" in body:
        limit = object_field(body, "rate_limit")
        changes["rate_limit"] = rate_limit(limit.get("per_second"), limit.get("burst"))
    source = await edge.sources.update(principal.tenant_id, request.path_params["source_id"], changes)
    await audit(edge, principal, "source.update", source.id)
    return JSONResponse(_source(source, request))


async def delete_source(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    source_id = request.path_params["source_id"]
    await edge.sources.delete(principal.tenant_id, source_id)
    await audit(edge, principal, "source.delete", source_id)
    return JSONResponse({"id": source_id, "deleted": True})


async def list_sources(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    return JSONResponse({"data": [_source(s, request) for s in await edge.sources.list(principal.tenant_id)]})


async def get_source(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    source = await edge.sources.get(principal.tenant_id, request.path_params["source_id"])
    return JSONResponse(_source(source, request))


# -- endpoints (DeliveryService) ---------------------------------------------------

def _delivery_stub(edge: EdgeContext) -> delivery_pb2_grpc.DeliveryServiceStub:
    return edge.clients.stub("delivery", delivery_pb2_grpc.DeliveryServiceStub)


def _endpoint(endpoint: delivery_pb2.Endpoint) -> dict[str, Any]:
    data = as_dict(endpoint)
    data["config"], data["options"] = plain(endpoint.config), plain(endpoint.options)
    data.setdefault("event_types", [])
    # Said explicitly: an absent disabled_at is easy to misread.
    data["enabled"] = "disabled_at" not in data
    return data


async def create_endpoint(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    reply = await call(_delivery_stub(edge).CreateEndpoint(
        delivery_pb2.CreateEndpointRequest(
            tenant_id=principal.tenant_id,
            url=string_field(body, "url", required=True),
            description=string_field(body, "description"),
            destination=string_field(body, "destination", "webhook"),
            secret=string_field(body, "secret"),
            config=struct(object_field(body, "config"), "config"),
            options=to_message(object_field(body, "options"), delivery_pb2.DeliveryOptions, "options"),
            event_types=strings_field(body, "event_types"),
            failover_endpoint_id=string_field(body, "failover_endpoint_id"),
        ),
        timeout=edge.clients.timeout,
    ))
    await audit(edge, principal, "endpoint.create", reply.endpoint.id)
    return JSONResponse({**_endpoint(reply.endpoint), "secret": reply.secret}, status_code=201)


_UPDATABLE = {"url", "description", "config", "options", "event_types", "failover_endpoint_id", "enabled"}


async def update_endpoint(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    unknown = set(body) - _UPDATABLE
    if unknown:
        raise InvalidRequest(f"cannot change {', '.join(sorted(unknown))}; "
                             f"PATCH takes {', '.join(sorted(_UPDATABLE))}")
    update = delivery_pb2.UpdateEndpointRequest(tenant_id=principal.tenant_id, id=request.path_params["endpoint_id"])
    for name in ("url", "description", "failover_endpoint_id"):
        if name in body:
            setattr(update, name, string_field(body, name))
    if "config" in body:
        update.config.CopyFrom(struct(object_field(body, "config"), "config"))
    if "options" in body:
        update.options.CopyFrom(to_message(object_field(body, "options"), delivery_pb2.DeliveryOptions, "options"))
    if "event_types" in body:
        update.event_types.patterns.extend(strings_field(body, "event_types"))
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise InvalidRequest("enabled must be true or false")
        update.enabled = body["enabled"]
    reply = await call(_delivery_stub(edge).UpdateEndpoint(update, timeout=edge.clients.timeout))
    await audit(edge, principal, "endpoint.update", reply.id)
    return JSONResponse(_endpoint(reply))


async def delete_endpoint(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_delivery_stub(edge).DeleteEndpoint(
        delivery_pb2.GetEndpointRequest(tenant_id=principal.tenant_id, id=request.path_params["endpoint_id"]),
        timeout=edge.clients.timeout))
    await audit(edge, principal, "endpoint.delete", reply.id)
    return JSONResponse({"id": reply.id, "deleted": True})


async def rotate_endpoint_secret(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    reply = await call(_delivery_stub(edge).RotateEndpointSecret(
        delivery_pb2.RotateEndpointSecretRequest(
            tenant_id=principal.tenant_id, id=request.path_params["endpoint_id"], secret=string_field(body, "secret"),
            grace_seconds=grace_seconds(body)),
        timeout=edge.clients.timeout))
    await audit(edge, principal, "endpoint.rotate_secret", reply.endpoint.id)
    return JSONResponse({**_endpoint(reply.endpoint), "secret": reply.secret})


async def list_endpoints(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_delivery_stub(edge).ListEndpoints(
        delivery_pb2.ListEndpointsRequest(tenant_id=principal.tenant_id), timeout=edge.clients.timeout))
    return JSONResponse({"data": [_endpoint(e) for e in reply.endpoints]})


async def get_endpoint(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_delivery_stub(edge).GetEndpoint(
        delivery_pb2.GetEndpointRequest(tenant_id=principal.tenant_id, id=request.path_params["endpoint_id"]),
        timeout=edge.clients.timeout))
    return JSONResponse(_endpoint(reply))


async def set_endpoint_enabled(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    enabled = request.url.path.endswith("/enable")
    body = await read_json_object(request, edge.settings.max_body_bytes)
    reply = await call(_delivery_stub(edge).SetEndpointEnabled(
        delivery_pb2.SetEndpointEnabledRequest(tenant_id=principal.tenant_id, id=request.path_params["endpoint_id"],
                                               enabled=enabled, reason=string_field(body, "reason")),
        timeout=edge.clients.timeout))
    await audit(edge, principal, "endpoint.enable" if enabled else "endpoint.disable", reply.id)
    return JSONResponse(_endpoint(reply))


async def test_endpoint(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_delivery_stub(edge).TestEndpoint(
        delivery_pb2.GetEndpointRequest(tenant_id=principal.tenant_id, id=request.path_params["endpoint_id"]),
        timeout=edge.clients.timeout))
    await audit(edge, principal, "endpoint.test", request.path_params["endpoint_id"])
    return JSONResponse(as_dict(reply), status_code=202)


async def retry_failed(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    endpoint_id = request.path_params["endpoint_id"]
    reply = await call(_delivery_stub(edge).RetryFailedDeliveries(
        delivery_pb2.RetryFailedDeliveriesRequest(tenant_id=principal.tenant_id, endpoint_id=endpoint_id),
        timeout=edge.clients.timeout * 6))
    await audit(edge, principal, "endpoint.retry_failed", endpoint_id)
    return JSONResponse({"retried": reply.retried}, status_code=202)


# -- deliveries and dead letters (DeliveryService) ------------------------------------

def _delivery(delivery: delivery_pb2.Delivery) -> dict[str, Any]:
    data = as_dict(delivery)
    for attempt in data.get("attempts", ()):
        if "latency_ms" in attempt:
            attempt["latency_ms"] = round(attempt["latency_ms"], 1)  # a tenth of a millisecond is plenty
    return data


async def list_deliveries(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    q = request.query_params
    reply = await call(_delivery_stub(edge).ListDeliveries(delivery_pb2.ListDeliveriesRequest(
        tenant_id=principal.tenant_id, event_id=q.get("event_id", ""), endpoint_id=q.get("endpoint_id", ""),
        status=q.get("status", ""), since=timestamp_param(request, "since"),
        until=timestamp_param(request, "until"), cursor=q.get("cursor", ""),
        limit=int_param(request, "limit", 50),
    ), timeout=edge.clients.timeout))
    return JSONResponse({"data": [_delivery(d) for d in reply.deliveries], "next_cursor": reply.next_cursor or None})


async def get_delivery(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_delivery_stub(edge).GetDelivery(delivery_pb2.GetDeliveryRequest(
        tenant_id=principal.tenant_id, id=request.path_params["delivery_id"]), timeout=edge.clients.timeout))
    return JSONResponse(_delivery(reply))


async def retry_delivery(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_delivery_stub(edge).RetryDelivery(delivery_pb2.GetDeliveryRequest(
        tenant_id=principal.tenant_id, id=request.path_params["delivery_id"]), timeout=edge.clients.timeout))
    await audit(edge, principal, "delivery.retry", reply.id)
    return JSONResponse(_delivery(reply), status_code=202)


# -- routes and events (RouterService) -----------------------------------------------

def _router_stub(edge: EdgeContext) -> router_pb2_grpc.RouterServiceStub:
    return edge.clients.stub("router", router_pb2_grpc.RouterServiceStub)


_NO_AI_CONDITIONS = {"category": [], "priority": [], "sentiment": [], "min_confidence": 0}


def _route(route: router_pb2.Route) -> dict[str, Any]:
    data = as_dict(route)
    data["filters"] = from_message(route, "filters")
    # Every AI condition shown, the unset ones empty.
    data["ai"] = {**_NO_AI_CONDITIONS, **plain(route.ai)} if route.HasField("ai") else None
    for name in ("event_types", "endpoint_ids"):
        data.setdefault(name, [])
    data.setdefault("position", 0)
    data.setdefault("enabled", False)
    data.setdefault("review", False)
    return data


def route_spec(body: dict[str, Any]) -> router_pb2.RouteSpec:
    """A route as the API takes it (a null field: cleared), as the typed spec RouterService checks."""
    given = {name: value for name, value in body.items() if value is not None}
    ai = given.get("ai")
    if isinstance(ai, dict):  # one label may be given alone: "category": "billing"
        given["ai"] = {name: [v] if name != "min_confidence" and isinstance(v, str) else v for name, v in ai.items()}
    return to_message(given, router_pb2.RouteSpec, "route")


async def _route_request(request: Request, principal: Principal, edge: EdgeContext,
                         route_id: str = "") -> router_pb2.RouteSpecRequest:
    """The body as a route spec (checked by RouterService, its source and endpoints the tenant's own too); an
    update changes the fields the body names."""
    body = await read_json_object(request, edge.settings.max_body_bytes)
    spec_request = router_pb2.RouteSpecRequest(tenant_id=principal.tenant_id, id=route_id, spec=route_spec(body))
    if route_id:
        spec_request.update_mask.paths.extend(body)
    return spec_request


async def create_route(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router_stub(edge).CreateRoute(await _route_request(request, principal, edge),
                                                       timeout=edge.clients.timeout))
    await audit(edge, principal, "route.create", reply.id)
    return JSONResponse(_route(reply), status_code=201)


async def update_route(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router_stub(edge).UpdateRoute(
        await _route_request(request, principal, edge, request.path_params["route_id"]),
        timeout=edge.clients.timeout))
    await audit(edge, principal, "route.update", reply.id)
    return JSONResponse(_route(reply))


async def get_route(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router_stub(edge).GetRoute(router_pb2.GetRouteRequest(
        tenant_id=principal.tenant_id, id=request.path_params["route_id"]), timeout=edge.clients.timeout))
    return JSONResponse(_route(reply))


async def delete_route(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router_stub(edge).DeleteRoute(router_pb2.GetRouteRequest(
        tenant_id=principal.tenant_id, id=request.path_params["route_id"]), timeout=edge.clients.timeout))
    await audit(edge, principal, "route.delete", reply.id)
    return JSONResponse({"id": reply.id, "deleted": True})


async def list_routes(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router_stub(edge).ListRoutes(
        router_pb2.ListRoutesRequest(tenant_id=principal.tenant_id), timeout=edge.clients.timeout))
    return JSONResponse({"data": [_route(r) for r in reply.routes]})


async def simulate_routes(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    unknown = set(body) - {"event_id", "event", "routes"}
    if unknown or ("event_id" in body) == ("event" in body):
        raise InvalidRequest('simulate takes "event_id" or "event", and optionally "routes" (proposed specs)')
    simulate = router_pb2.SimulateRequest(tenant_id=principal.tenant_id, event_id=string_field(body, "event_id"))
    if "event" in body:
        simulate.event.CopyFrom(given_event(body["event"], "event"))
    routes = body.get("routes")
    if routes is not None:
        if not isinstance(routes, list) or not all(isinstance(r, dict) for r in routes):
            raise InvalidRequest("routes is a list of route specs", field="routes")
        simulate.routes.extend(route_spec(r) for r in routes)
        simulate.use_proposed = True
    reply = await call(_router_stub(edge).SimulateRoutes(
        simulate, timeout=edge.clients.timeout + edge.settings.ai_timeout_s * 3))
    return JSONResponse({**plain(reply.decision), "deliveries": [
        {"route_id": d.route_id, "endpoint_id": d.endpoint_id, "action": d.action,
         "payload": json.loads(d.payload_json), "body": d.body if d.HasField("body") else None,
         "error": d.error if d.HasField("error") else None} for d in reply.deliveries]})


def given_event(raw: Any, field: str) -> router_pb2.GivenEvent:
    """An event given in a request body ({"type", "payload", ...}) for a simulation or a template test."""
    if not isinstance(raw, dict):
        raise InvalidRequest('the event is {"type", "payload", "source_id", "source_type", "conversation_key", '
                             '"author"}', field=field)
    return router_pb2.GivenEvent(
        payload_json=json.dumps(raw.get("payload")),
        **{name: string_field(raw, name) for name in
           ("type", "source_id", "source_type", "conversation_key", "author")})


# -- transform templates (RouterService) -------------------------------------------------

def _template(template: router_pb2.Template) -> dict[str, Any]:
    return as_dict(template)


async def create_template(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    reply = await call(_router_stub(edge).CreateTemplate(router_pb2.TemplateRequest(
        tenant_id=principal.tenant_id, name=string_field(body, "name", required=True),
        source=string_field(body, "source", required=True), output=string_field(body, "output", "json")),
        timeout=edge.clients.timeout))
    await audit(edge, principal, "template.create", reply.id)
    return JSONResponse(_template(reply), status_code=201)


async def update_template(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    unknown = set(body) - {"name", "source", "output"}
    if unknown:
        raise InvalidRequest(f"cannot change {', '.join(sorted(unknown))}; a template has name, source, output")
    update = router_pb2.TemplateRequest(tenant_id=principal.tenant_id, id=request.path_params["template_id"])
    for name in ("name", "source", "output"):
        if name in body:
            setattr(update, name, string_field(body, name))
    reply = await call(_router_stub(edge).UpdateTemplate(update, timeout=edge.clients.timeout))
    await audit(edge, principal, "template.update", reply.id)
    return JSONResponse(_template(reply))


async def get_template(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router_stub(edge).GetTemplate(router_pb2.GetTemplateRequest(
        tenant_id=principal.tenant_id, id=request.path_params["template_id"]), timeout=edge.clients.timeout))
    return JSONResponse(_template(reply))


async def list_templates(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router_stub(edge).ListTemplates(router_pb2.ListTemplatesRequest(
        tenant_id=principal.tenant_id), timeout=edge.clients.timeout))
    return JSONResponse({"data": [_template(t) for t in reply.templates]})


async def delete_template(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router_stub(edge).DeleteTemplate(router_pb2.GetTemplateRequest(
        tenant_id=principal.tenant_id, id=request.path_params["template_id"]), timeout=edge.clients.timeout))
    await audit(edge, principal, "template.delete", reply.id)
    return JSONResponse({"id": reply.id, "deleted": True})


async def test_template(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    test = router_pb2.TestTemplateRequest(tenant_id=principal.tenant_id, id=request.path_params["template_id"],
                                          sample=given_event(body, "sample"))
    if body.get("ai") is not None:
        test.ai.CopyFrom(struct(object_field(body, "ai"), "ai"))
    reply = await call(_router_stub(edge).TestTemplate(test, timeout=edge.clients.timeout))
    if reply.error:
        return JSONResponse({"ok": False, "error": reply.error})
    return JSONResponse({"ok": True, "payload": json.loads(reply.payload_json), "body": reply.body})


async def get_event(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    event_id = request.path_params["event_id"]
    event = await call(_router_stub(edge).GetEvent(
        router_pb2.GetEventRequest(tenant_id=principal.tenant_id, id=event_id), timeout=edge.clients.timeout))
    deliveries = await call(_delivery_stub(edge).ListDeliveries(
        # The store's page limit: an event fans out to at most that many endpoints here.
        delivery_pb2.ListDeliveriesRequest(tenant_id=principal.tenant_id, event_id=event_id, limit=1000),
        timeout=edge.clients.timeout))
    data = as_dict(event)
    data["headers"] = dict(event.headers)
    data["payload"] = json.loads(data.pop("payload_json", "null"))
    data["routing"] = from_message(event, "routing")
    data["deliveries"] = [_delivery(d) for d in deliveries.deliveries]
    return JSONResponse(data)


# -- replays (RouterService) ----------------------------------------------------------

def _replay(replay: router_pb2.Replay) -> dict[str, Any]:
    data = as_dict(replay)
    data.setdefault("event_types", [])
    for name in ("total", "done", "deliveries"):
        data.setdefault(name, 0)
    return data


async def create_replay(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    source_id = string_field(body, "source_id")
    since = timestamp_field(string_field(body, "since", required=True), "since")
    until = timestamp_field(string_field(body, "until"), "until") or timestamp(datetime.now(timezone.utc))
    reply = await call(_router_stub(edge).CreateReplay(router_pb2.CreateReplayRequest(
        tenant_id=principal.tenant_id, since=since, until=until, source_id=source_id,
        event_types=strings_field(body, "event_types"), endpoint_id=string_field(body, "endpoint_id"),
    ), timeout=edge.clients.timeout))
    await audit(edge, principal, "replay.create", reply.id)
    return JSONResponse(_replay(reply), status_code=202)


async def list_replays(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router_stub(edge).ListReplays(router_pb2.ListReplaysRequest(
        tenant_id=principal.tenant_id, limit=int_param(request, "limit", 50)), timeout=edge.clients.timeout))
    return JSONResponse({"data": [_replay(r) for r in reply.replays]})


async def get_replay(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router_stub(edge).GetReplay(router_pb2.GetReplayRequest(
        tenant_id=principal.tenant_id, id=request.path_params["replay_id"]), timeout=edge.clients.timeout))
    return JSONResponse(_replay(reply))


async def cancel_replay(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router_stub(edge).CancelReplay(router_pb2.GetReplayRequest(
        tenant_id=principal.tenant_id, id=request.path_params["replay_id"]), timeout=edge.clients.timeout))
    await audit(edge, principal, "replay.cancel", reply.id)
    return JSONResponse(_replay(reply))
