"""``GET /v1/events``: list and search the tenant's stored events, over RouterService.

The query parameters are declared here (the edge checks them against the
contract before the handler runs); the router checks what only it can (the
glob, the range, the cursor), each refusal a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from switchboard.apikeys import Principal
from services.ingest.edge.context import EdgeContext
from services.ingest.edge.contract import Param, integer_param, query_value, string_param, time_param
from services.ingest.edge.fields import as_dict, timestamp_field
from switchboard.rpc import call
from switchboard.v1 import router_pb2, router_pb2_grpc

__all__ = ["LIST_EVENTS_QUERY", "list_events"]


def _text(name: str, description: str, max_length: int = 200) -> Param:
    param = string_param(name, description, max_length=max_length)
    return Param(param.name, {**param.schema, "minLength": 1}, param.description)


LIST_EVENTS_QUERY: tuple[Param, ...] = (
    _text("source_id", "Only events of this source"),
    _text("type", "A glob over the event type, as routes' event_types (invoice.*)"),
    time_param("since", "Received at or after this time (ISO 8601)"),
    time_param("until", "Received before this time (ISO 8601)"),
    string_param("status", "The routing outcome: deliveries planned, none, or dropped by a drop route",
                 enum=("routed", "unrouted", "dropped")),
    _text("category", "The AI category of the event's routing decision"),
    Param("cursor", {"type": "string", "minLength": 1, "maxLength": 512, "pattern": "^[A-Za-z0-9_-]+$"},
          "next_cursor of the previous page (with the same filters)"),
    integer_param("limit", 1, 1000, "Page size (default 50)"),
)
_PARAMS = {p.name: p for p in LIST_EVENTS_QUERY}

# Absent from protobuf's JSON when empty; always present in ours.
_NULLABLE = ("provider_event_id", "conversation_key", "occurred_at", "category")


def _summary(event: router_pb2.EventSummary) -> dict[str, Any]:
    data = as_dict(event)
    for name in _NULLABLE:
        data.setdefault(name, None)
    data.setdefault("source_type", "")
    data.setdefault("deliveries", 0)
    return data


async def list_events(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    def text(name: str) -> str:
        return query_value(request, _PARAMS[name], "")

    reply = await call(edge.clients.stub("router", router_pb2_grpc.RouterServiceStub).ListEvents(
        router_pb2.ListEventsRequest(
            tenant_id=principal.tenant_id, source_id=text("source_id"), type=text("type"),
            since=timestamp_field(text("since"), "since"), until=timestamp_field(text("until"), "until"),
            status=text("status"), category=text("category"), cursor=text("cursor"),
            limit=query_value(request, _PARAMS["limit"]),
        ), timeout=edge.clients.timeout))
    return JSONResponse({"data": [_summary(e) for e in reply.events], "next_cursor": reply.next_cursor or None})
