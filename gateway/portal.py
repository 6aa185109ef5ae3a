"""The consumer portal: a tenant's customers manage their own webhook endpoints, without the tenant building a UI.

``GET /portal`` serves one static page (script and style sheet beside it, no
third-party asset); its script reads the session token from the URL's
fragment and calls ``/portal/api/...`` with it (``Authorization: Bearer
sbp_...``, switchboard/portal_tokens.py). Every call is scoped to the
session's tenant *and application*: the edge calls DeliveryService and
RouterService for the tenant with the service token and shows or changes only
endpoints whose ``application_id`` is the session's; any other endpoint or
delivery, of the tenant or not, is 404, as a missing one is. A customer sets
only what is theirs to set (URL, description, event types, enabled); the
destination is always ``webhook``, and options and config stay the tenant's.

The page's Content-Security-Policy allows only this origin's script, style and
API; ``frame-ancestors`` lists the origins the session's frame grant names
(``allowed_origins`` when the session was made), else none may frame it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any

from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.context import EdgeContext
from gateway.requests import read_json_object
from switchboard.apikeys import bearer_credential
from switchboard.errors import InvalidRequest, NotFound, RateLimited
from switchboard.portal_tokens import PortalSession
from switchboard.rpc import call
from switchboard.transcoding import to_rest
from switchboard.v1 import delivery_pb2, delivery_pb2_grpc, router_pb2, router_pb2_grpc

__all__ = ["portal_routes", "portal_page_headers"]

_PAGE_POLICY = (
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self'", "connect-src 'self'",
    "object-src 'none'", "base-uri 'none'", "form-action 'none'",
)
_ASSET_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "cache-control": "no-cache"}
# What a customer may set on its endpoints (the rest is the tenant's).
_EDITABLE = ("url", "description", "event_types")
_MAX_BODY = 64 * 1024


def portal_page_headers(frame_origins: tuple[str, ...]) -> dict[str, str]:
    """The page's headers: framing allowed to ``frame_origins`` only (none: to nobody)."""
    ancestors = " ".join(frame_origins) if frame_origins else "'none'"
    headers = {"content-security-policy": "; ".join((*_PAGE_POLICY, f"frame-ancestors {ancestors}")),
               **_ASSET_HEADERS}
    if not frame_origins:
        # For browsers that know only the older header; with an allow-list, CSP alone decides.
        headers["x-frame-options"] = "DENY"
    return headers


def _static(name: str) -> bytes:
    return files("gateway").joinpath("static", name).read_bytes()


class _Scoped:
    """The calls a portal session may make, each for its tenant and checked against its application."""

    def __init__(self, edge: EdgeContext, session: PortalSession) -> None:
        self.edge = edge
        self.session = session
        self.tenant_id = session.tenant_id
        self.delivery = delivery_pb2_grpc.DeliveryServiceStub(edge.clients.channel("delivery"))
        self.router = router_pb2_grpc.RouterServiceStub(edge.clients.channel("router"))

    async def rpc(self, method: Callable[..., Any], request: Message) -> Any:
        return await call(method(request, timeout=self.edge.clients.timeout))

    async def endpoints(self) -> list[delivery_pb2.Endpoint]:
        reply = await self.rpc(self.delivery.ListEndpoints, delivery_pb2.ListEndpointsRequest(
            tenant_id=self.tenant_id, application_id=self.session.application_id))
        return [e for e in reply.endpoints if e.application_id == self.session.application_id]

    async def endpoint(self, endpoint_id: str) -> delivery_pb2.Endpoint:
        """The application's endpoint; NotFound for any other, whoever's it is."""
        endpoint = await self.rpc(self.delivery.GetEndpoint,
                                  delivery_pb2.GetEndpointRequest(tenant_id=self.tenant_id, id=endpoint_id))
        if endpoint.application_id != self.session.application_id:
            raise NotFound(f"endpoint {endpoint_id} not found")
        return endpoint

    async def delivery_of(self, delivery_id: str) -> delivery_pb2.Delivery:
        delivery = await self.rpc(self.delivery.GetDelivery,
                                  delivery_pb2.GetDeliveryRequest(tenant_id=self.tenant_id, id=delivery_id))
        try:
            await self.endpoint(delivery.endpoint_id)
        except NotFound:
            raise NotFound(f"delivery {delivery_id} not found") from None
        return delivery


def _editable(body: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    unknown = sorted(set(body) - set(_EDITABLE))
    if unknown:
        raise InvalidRequest(f"{unknown[0]}: not a field a portal may set (url, description, event_types)",
                             field=unknown[0])
    for name in required:
        if name not in body:
            raise InvalidRequest(f"{name}: required", field=name)
    if "url" in body and not isinstance(body["url"], str):
        raise InvalidRequest("url: must be a string", field="url")
    if "description" in body and not isinstance(body["description"], str):
        raise InvalidRequest("description: must be a string", field="description")
    types = body.get("event_types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise InvalidRequest("event_types: must be a list of strings", field="event_types")
    return body


def _api(handler: Callable[[_Scoped, Request], Awaitable[Any]], status: int = 200):
    async def endpoint(request: Request) -> Response:
        edge: EdgeContext = request.app.state.edge
        session = edge.portal.verify(bearer_credential(request.headers.get("authorization")))
        verdict = await edge.key_buckets.take(f"portal:{session.tenant_id}:{session.application_id}", edge.key_rate)
        if not verdict.allowed:
            raise RateLimited("this portal session is over its rate limit", retry_after_s=verdict.retry_after_s,
                              headers=verdict.headers())
        answer = await handler(_Scoped(edge, session), request)
        return JSONResponse(answer, status_code=status, headers={**verdict.headers(), "cache-control": "no-store"})

    endpoint.__name__ = f"portal_{handler.__name__.lstrip('_')}"
    return endpoint


def _shown(endpoint: delivery_pb2.Endpoint) -> dict[str, Any]:
    shown = to_rest(endpoint)
    # The tenant's settings are not the customer's business (and config may hold the tenant's credentials).
    for name in ("config", "options", "failover_endpoint_id", "tenant_id"):
        shown.pop(name, None)
    return shown


async def _session(scoped: _Scoped, request: Request) -> dict[str, Any]:
    return {"application_id": scoped.session.application_id, "expires_at": scoped.session.expires_at}


async def _list_endpoints(scoped: _Scoped, request: Request) -> dict[str, Any]:
    return {"data": [_shown(e) for e in await scoped.endpoints()]}


async def _create_endpoint(scoped: _Scoped, request: Request) -> dict[str, Any]:
    body = _editable(await read_json_object(request, _MAX_BODY), required=("url",))
    created = await scoped.rpc(scoped.delivery.CreateEndpoint, delivery_pb2.CreateEndpointRequest(
        tenant_id=scoped.tenant_id, application_id=scoped.session.application_id, destination="webhook",
        url=body["url"], description=body.get("description", ""), event_types=body.get("event_types", [])))
    return {**_shown(created.endpoint), "secret": created.secret or None}


async def _get_endpoint(scoped: _Scoped, request: Request) -> dict[str, Any]:
    return _shown(await scoped.endpoint(request.path_params["endpoint_id"]))


async def _update_endpoint(scoped: _Scoped, request: Request) -> dict[str, Any]:
    endpoint = await scoped.endpoint(request.path_params["endpoint_id"])
    body = _editable(await read_json_object(request, _MAX_BODY))
    update = delivery_pb2.UpdateEndpointRequest(tenant_id=scoped.tenant_id, id=endpoint.id)
    if "url" in body:
        update.url = body["url"]
    if "description" in body:
        update.description = body["description"]
    if "event_types" in body:
        update.event_types.extend(body["event_types"])
    update.update_mask.paths.extend(body)
    return _shown(await scoped.rpc(scoped.delivery.UpdateEndpoint, update))


async def _disable_endpoint(scoped: _Scoped, request: Request) -> dict[str, Any]:
    endpoint = await scoped.endpoint(request.path_params["endpoint_id"])
    return _shown(await scoped.rpc(scoped.delivery.DisableEndpoint, delivery_pb2.DisableEndpointRequest(
        tenant_id=scoped.tenant_id, id=endpoint.id, reason="disabled in the portal")))


async def _enable_endpoint(scoped: _Scoped, request: Request) -> dict[str, Any]:
    endpoint = await scoped.endpoint(request.path_params["endpoint_id"])
    return _shown(await scoped.rpc(scoped.delivery.EnableEndpoint,
                                   delivery_pb2.GetEndpointRequest(tenant_id=scoped.tenant_id, id=endpoint.id)))


async def _endpoint_secret(scoped: _Scoped, request: Request) -> dict[str, Any]:
    endpoint = await scoped.endpoint(request.path_params["endpoint_id"])
    return to_rest(await scoped.rpc(scoped.delivery.GetEndpointSecret,
                                    delivery_pb2.GetEndpointRequest(tenant_id=scoped.tenant_id, id=endpoint.id)))


async def _rotate_secret(scoped: _Scoped, request: Request) -> dict[str, Any]:
    endpoint = await scoped.endpoint(request.path_params["endpoint_id"])
    rotated = await scoped.rpc(scoped.delivery.RotateEndpointSecret, delivery_pb2.RotateEndpointSecretRequest(
        tenant_id=scoped.tenant_id, id=endpoint.id))
    return {**_shown(rotated.endpoint), "secret": rotated.secret or None}


async def _test_endpoint(scoped: _Scoped, request: Request) -> dict[str, Any]:
    endpoint = await scoped.endpoint(request.path_params["endpoint_id"])
    return to_rest(await scoped.rpc(scoped.delivery.TestEndpoint,
                                    delivery_pb2.GetEndpointRequest(tenant_id=scoped.tenant_id, id=endpoint.id)))


async def _list_deliveries(scoped: _Scoped, request: Request) -> dict[str, Any]:
    unknown = sorted(set(request.query_params) - {"endpoint_id", "status"})
    if unknown:
        raise InvalidRequest(f"{unknown[0]}: unknown query parameter", field=unknown[0])
    endpoint = await scoped.endpoint(request.query_params.get("endpoint_id", ""))
    query = delivery_pb2.ListDeliveriesRequest(tenant_id=scoped.tenant_id, endpoint_id=endpoint.id, limit=100)
    status = request.query_params.get("status")
    if status:
        if status not in ("pending", "succeeded", "failed"):
            raise InvalidRequest("status: pending, succeeded or failed", field="status")
        query.status = status
    reply = await scoped.rpc(scoped.delivery.ListDeliveries, query)
    return {"data": [to_rest(d) for d in reply.deliveries]}


async def _get_delivery(scoped: _Scoped, request: Request) -> dict[str, Any]:
    return to_rest(await scoped.delivery_of(request.path_params["delivery_id"]))


async def _retry_delivery(scoped: _Scoped, request: Request) -> dict[str, Any]:
    delivery = await scoped.delivery_of(request.path_params["delivery_id"])
    return to_rest(await scoped.rpc(scoped.delivery.RetryDelivery,
                                    delivery_pb2.GetDeliveryRequest(tenant_id=scoped.tenant_id, id=delivery.id)))


async def _event_types(scoped: _Scoped, request: Request) -> dict[str, Any]:
    """The tenant's catalogue (docs/event-types.md), as its customers need it: names, descriptions, schemas."""
    reply = await scoped.rpc(scoped.router.ListEventTypes,
                             router_pb2.ListEventTypesRequest(tenant_id=scoped.tenant_id, limit=500))
    shown = ("name", "description", "schema", "example", "deprecated")
    return {"data": [{k: v for k, v in to_rest(t).items() if k in shown} for t in reply.event_types]}


async def _page(request: Request) -> Response:
    edge: EdgeContext = request.app.state.edge
    origins = edge.portal.frame_origins(request.query_params.get("frame"))
    return Response(_PAGE, headers=portal_page_headers(origins), media_type="text/html; charset=utf-8")


_PAGE = _static("portal.html")


def _asset(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    body = _static(name)

    async def serve(request: Request) -> Response:
        return Response(body, headers=portal_page_headers(()), media_type=media_type)

    serve.__name__ = f"portal_{name.replace('.', '_')}"
    return serve


def portal_routes() -> list[Route]:
    """The page, its assets and ``/portal/api`` (the session token's API: not in /openapi.json)."""
    api = "/portal/api"
    endpoint = f"{api}/endpoints/{{endpoint_id}}"
    return [
        Route("/portal", _page, methods=["GET"]),
        Route("/portal/portal.js", _asset("portal.js", "text/javascript; charset=utf-8"), methods=["GET"]),
        Route("/portal/portal.css", _asset("portal.css", "text/css; charset=utf-8"), methods=["GET"]),
        Route(f"{api}/session", _api(_session), methods=["GET"]),
        Route(f"{api}/endpoints", _api(_list_endpoints), methods=["GET"]),
        Route(f"{api}/endpoints", _api(_create_endpoint, 201), methods=["POST"]),
        Route(endpoint, _api(_get_endpoint), methods=["GET"]),
        Route(endpoint, _api(_update_endpoint), methods=["PATCH"]),
        Route(f"{endpoint}/disable", _api(_disable_endpoint), methods=["POST"]),
        Route(f"{endpoint}/enable", _api(_enable_endpoint), methods=["POST"]),
        Route(f"{endpoint}/secret", _api(_endpoint_secret), methods=["GET"]),
        Route(f"{endpoint}/rotate-secret", _api(_rotate_secret), methods=["POST"]),
        Route(f"{endpoint}/test", _api(_test_endpoint, 202), methods=["POST"]),
        Route(f"{api}/event-types", _api(_event_types), methods=["GET"]),
        Route(f"{api}/deliveries", _api(_list_deliveries), methods=["GET"]),
        Route(f"{api}/deliveries/{{delivery_id}}", _api(_get_delivery), methods=["GET"]),
        Route(f"{api}/deliveries/{{delivery_id}}/retry", _api(_retry_delivery, 202), methods=["POST"]),
    ]
