"""The ``/v1/ai`` REST API: a thin layer over AIService's gRPC API.

Settings (the tenant's provider chain and categories), prompt overrides and
usage; and the three tasks on an event given in the body, to try prompts and
providers out before routes depend on them.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from switchboard.apikeys import Principal
from services.ingest.edge.context import EdgeContext
from services.ingest.edge.requests import read_json_object
from services.ingest.edge.fields import as_dict, object_field, string_field, strings_field, timestamp_param
from services.ingest.edge.rest import audit
from switchboard.errors import InvalidRequest
from switchboard.protojson import plain, struct
from switchboard.rpc import call
from switchboard.v1 import ai_pb2, ai_pb2_grpc

__all__ = ["get_ai_settings", "update_ai_settings", "save_prompt", "get_ai_usage", "ai_classify", "ai_extract",
           "ai_reply"]


def _stub(edge: EdgeContext) -> ai_pb2_grpc.AIServiceStub:
    return edge.clients.stub("ai", ai_pb2_grpc.AIServiceStub)


def _event(body: dict[str, Any], principal: Principal) -> ai_pb2.AIEvent:
    if "payload" not in body:
        raise InvalidRequest("payload is required")
    return ai_pb2.AIEvent(tenant_id=principal.tenant_id, source_type=string_field(body, "source_type", "api"),
                          event_type=string_field(body, "type", required=True), payload_json=json.dumps(body["payload"]),
                          text=string_field(body, "text"))


async def get_ai_settings(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_stub(edge).GetSettings(ai_pb2.GetAISettingsRequest(tenant_id=principal.tenant_id),
                                               timeout=edge.clients.timeout))
    return JSONResponse(as_dict(reply))


async def update_ai_settings(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    unknown = set(body) - {"providers", "categories", "provider_keys"}
    if unknown:
        raise InvalidRequest(f"cannot change {', '.join(sorted(unknown))}; it takes providers, categories, "
                             f"provider_keys")
    update = ai_pb2.UpdateAISettingsRequest(tenant_id=principal.tenant_id)
    for name in ("providers", "categories"):
        if name in body:
            getattr(update, name).SetInParent()
            getattr(update, name).values.extend(strings_field(body, name))
    keys = object_field(body, "provider_keys")
    for provider, key in keys.items():
        if key is not None and not isinstance(key, str):
            raise InvalidRequest("a provider key is a string, or null to remove it", field=f"provider_keys.{provider}")
        update.provider_keys[provider] = key or ""
    reply = await call(_stub(edge).UpdateSettings(update, timeout=edge.clients.timeout))
    await audit(edge, principal, "ai.settings.update", principal.tenant_id)
    return JSONResponse(as_dict(reply))


async def save_prompt(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    reply = await call(_stub(edge).SavePrompt(ai_pb2.SavePromptRequest(
        tenant_id=principal.tenant_id, task=string_field(body, "task", required=True),
        system=string_field(body, "system", required=True), template=string_field(body, "template", required=True)),
        timeout=edge.clients.timeout))
    await audit(edge, principal, "ai.prompt.save", f"{reply.task}@{reply.version}")
    return JSONResponse(as_dict(reply), status_code=201)


async def get_ai_usage(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_stub(edge).GetUsage(ai_pb2.GetUsageRequest(
        tenant_id=principal.tenant_id, since=timestamp_param(request, "since")), timeout=edge.clients.timeout))
    return JSONResponse({"data": [_usage_row(row) for row in reply.rows]})


def _usage_row(row: ai_pb2.UsageRow) -> dict[str, Any]:
    # Spelled out: MessageToDict writes int64 as strings and leaves zeros out.
    return {"provider": row.provider, "day": row.day, "requests": row.requests, "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens, "cached": row.cached, "failures": row.failures,
            "cost_usd": round(row.cost_usd, 6)}


def _ai_timeout(edge: EdgeContext) -> float:
    # A task may walk the whole provider chain: each provider gets its own deadline.
    return edge.settings.ai_timeout_s * 3 + edge.clients.timeout


async def ai_classify(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    reply = await call(_stub(edge).Classify(ai_pb2.ClassifyRequest(
        event=_event(body, principal), lane=string_field(body, "lane")), timeout=_ai_timeout(edge)))
    return JSONResponse(as_dict(reply))


async def ai_extract(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    reply = await call(_stub(edge).Extract(ai_pb2.ExtractRequest(
        event=_event(body, principal), schema=struct(object_field(body, "schema"), "schema"),
        lane=string_field(body, "lane")), timeout=_ai_timeout(edge)))
    return JSONResponse({"data": plain(reply.data), "meta": as_dict(reply.meta)})


async def ai_reply(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    reply = await call(_stub(edge).DraftReply(ai_pb2.DraftReplyRequest(
        event=_event(body, principal), conversation_key=string_field(body, "conversation_key", required=True),
        lane=string_field(body, "lane")), timeout=_ai_timeout(edge)))
    return JSONResponse(as_dict(reply))
