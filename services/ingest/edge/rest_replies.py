"""``/v1/replies``: AI-drafted replies, and the review of those a ``review`` route holds, over RouterService."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from switchboard.apikeys import Principal
from services.ingest.edge.context import EdgeContext
from services.ingest.edge.contract import Param, integer_param, query_value, string_param
from services.ingest.edge.fields import as_dict
from services.ingest.edge.requests import read_json_object
from services.ingest.edge.rest import audit
from switchboard.rpc import call
from switchboard.v1 import router_pb2, router_pb2_grpc

__all__ = ["LIST_REPLIES_QUERY", "REPLY_STATUSES", "list_replies", "get_reply", "approve_reply", "reject_reply"]

REPLY_STATUSES = ("drafting", "sent", "held", "approved", "rejected", "failed")

LIST_REPLIES_QUERY: tuple[Param, ...] = (
    string_param("status", "Only replies in this state (held: waiting for review)", enum=REPLY_STATUSES),
    Param("conversation_key", {"type": "string", "minLength": 1, "maxLength": 500}, "Only this conversation's"),
    Param("before", {"type": "string", "minLength": 1, "maxLength": 64},
          "The last id of the previous page: the replies older than it"),
    integer_param("limit", 1, 200, "Page size (default 50)"),
)
_PARAMS = {p.name: p for p in LIST_REPLIES_QUERY}


def _router(edge: EdgeContext) -> router_pb2_grpc.RouterServiceStub:
    return edge.clients.stub("router", router_pb2_grpc.RouterServiceStub)


def _reply(draft: router_pb2.ReplyDraft) -> dict[str, Any]:
    data = as_dict(draft)
    data.setdefault("endpoint_ids", [])
    for name in ("text", "error", "decided_at", "decided_by"):
        data.setdefault(name, None)
    return data


async def list_replies(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router(edge).ListReplies(router_pb2.ListRepliesRequest(
        tenant_id=principal.tenant_id, status=query_value(request, _PARAMS["status"], ""),
        conversation_key=query_value(request, _PARAMS["conversation_key"], ""),
        before=query_value(request, _PARAMS["before"], ""), limit=query_value(request, _PARAMS["limit"], 50),
    ), timeout=edge.clients.timeout))
    return JSONResponse({"data": [_reply(r) for r in reply.replies]})


async def get_reply(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    reply = await call(_router(edge).GetReply(router_pb2.GetReplyRequest(
        tenant_id=principal.tenant_id, id=request.path_params["reply_id"]), timeout=edge.clients.timeout))
    return JSONResponse(_reply(reply))


async def approve_reply(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    body = await read_json_object(request, edge.settings.max_body_bytes)
    decided = await call(_router(edge).ApproveReply(router_pb2.DecideReplyRequest(
        tenant_id=principal.tenant_id, id=request.path_params["reply_id"], text=body.get("text"),
        actor=principal.key_id), timeout=edge.clients.timeout))
    await audit(edge, principal, "reply.approve", decided.id)
    return JSONResponse(_reply(decided))


async def reject_reply(request: Request, principal: Principal, edge: EdgeContext) -> JSONResponse:
    decided = await call(_router(edge).RejectReply(router_pb2.DecideReplyRequest(
        tenant_id=principal.tenant_id, id=request.path_params["reply_id"], actor=principal.key_id),
        timeout=edge.clients.timeout))
    await audit(edge, principal, "reply.reject", decided.id)
    return JSONResponse(_reply(decided))
