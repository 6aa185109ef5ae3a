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

from services.ingest.edge.auth import Principal
from services.ingest.edge.context import EdgeContext
from services.ingest.edge.requests import read_json_object
from services.ingest.edge.rest import _message, _object, _string, _strings, _timestamp_param, audit
from switchboard.errors import InvalidRequest
from switchboard.rpc import call
from switchboard.v1 import ai_pb2, ai_pb2_grpc

__all__ = ["get_ai_settings", "update_ai_settings", "save_prompt", "get_ai_usage", "ai_classify", "ai_extract",
           "ai_reply"]


def _stub(edge: EdgeContext) -> ai_pb2_grpc.AIServiceStub:
    return edge.clients.stub("ai", ai_pb2_grpc.AIServiceStub)


def _event(body: dict[str, Any], principal: Principal) -> ai_pb2.AIEvent:
    if "payload" not in body:
        raise InvalidRequest("payload is required")
    return ai_pb2.AIEvent(tenant_id=principal.tenant_id, source_type=_string(body, "source_type", "api"),
                          event_type=_string(body, "type", required=True), payload_json=json.dumps(body["payload"]),
                          text=_string(body, "text"))


async def get_ai_settings(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_stub(edge).GetSettings(ai_pb2.GetAISettingsRequest(tenant_id=principal.tenant_id),
                                               timeout=edge.clients.timeout))
    return JSONResponse(_message(reply))


async def update_ai_settings(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    unknown = set(body) - {"providers", "categories"}
    if unknown:
        raise InvalidRequest(f"cannot change {', '.join(sorted(unknown))}; it takes providers, categories")
    update = ai_pb2.UpdateAISettingsRequest(tenant_id=principal.tenant_id)
    for name in ("providers", "categories"):
        if name in body:
            getattr(update, name).SetInParent()
            getattr(update, name).values.extend(_strings(body, name))
    reply = await call(_stub(edge).UpdateSettings(update, timeout=edge.clients.timeout))
    await audit(edge, principal, "ai.settings.update", principal.tenant_id)
    return JSONResponse(_message(reply))


async def save_prompt(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    reply = await call(_stub(edge).SavePrompt(ai_pb2.SavePromptRequest(
        tenant_id=principal.tenant_id, task=_string(body, "task", required=True),
        system=_string(body, "system", required=True), template=_string(body, "template", required=True)),
        timeout=edge.clients.timeout))
    await audit(edge, principal, "ai.prompt.save", f"{reply.task}@{reply.version}")
    return JSONResponse(_message(reply), status_code=201)


async def get_ai_usage(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_stub(edge).GetUsage(ai_pb2.GetUsageRequest(
        tenant_id=principal.tenant_id, since=_timestamp_param(request, "since")), timeout=edge.clients.timeout))
    return JSONResponse({"data": [_message(row) for row in reply.rows]})


def _ai_timeout(edge: EdgeContext) -> float:
    # A task may walk the whole provider chain: each provider gets its own deadline.
    return edge.settings.ai_timeout_s * 3 + edge.clients.timeout


async def ai_classify(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    reply = await call(_stub(edge).Classify(ai_pb2.ClassifyRequest(
        event=_event(body, principal), lane=_string(body, "lane")), timeout=_ai_timeout(edge)))
    return JSONResponse(_message(reply))


async def ai_extract(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    reply = await call(_stub(edge).Extract(ai_pb2.ExtractRequest(
        event=_event(body, principal), schema_json=json.dumps(_object(body, "schema")), lane=_string(body, "lane")),
        timeout=_ai_timeout(edge)))
    return JSONResponse({"data": json.loads(reply.json), "meta": _message(reply.meta)})


async def ai_reply(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    reply = await call(_stub(edge).DraftReply(ai_pb2.DraftReplyRequest(
        event=_event(body, principal), conversation_key=_string(body, "conversation_key", required=True),
        lane=_string(body, "lane")), timeout=_ai_timeout(edge)))
    return JSONResponse(_message(reply))
