"""``POST /in/{source_id}``: where third-party services send webhooks.

This is the platform's hottest path, so it is plain ASGI, reached before
Starlette (``app.py``: no router, middleware or Request/Response objects on
the way): it reads the body straight from ``receive`` (stopping at the size
limit) and answers with pre-encoded JSON. Errors take the same shape as
everywhere else (``responses.py``), a dependency that failed under it is a 503.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

import orjson
from starlette.types import Receive, Scope, Send

from plugins.sources.spec import InboundRequest
from gateway.context import EdgeContext
from gateway.requests import client_ip, read_asgi_body
from gateway.responses import error_parts, unexpected_error
from switchboard.errors import SwitchboardError

__all__ = ["EVENT_ID_HEADER", "WEBHOOK_ROUTE", "webhook_source_id", "receive_webhook"]

#: The route's template, as metrics and spans name it.
WEBHOOK_ROUTE = "/in/{source_id}"

#: On every answer to a webhook that was accepted (a duplicate too): the event's id.
EVENT_ID_HEADER = "Switchboard-Event-Id"


# Every answer on /in is data for a sender, never a page: a browser must not
# sniff it into HTML nor run anything in it, whatever a source plugin answers
# (the dashboard, with its key, lives on the same origin).
_CONTAINED = [(b"x-content-type-options", b"nosniff"), (b"content-security-policy", b"default-src 'none'; sandbox")]


_JSON = b"application/json"


async def _respond(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None,
                   content_type: bytes = _JSON) -> int:
    raw_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *_CONTAINED]
    if headers:
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
    return status


def webhook_source_id(method: str, path: str) -> str | None:
    """The source id when this is ``POST /in/{source_id}`` (one non-empty segment), else None."""
    if method != "POST" or not path.startswith("/in/"):
        return None
    source_id = path[4:]
    return source_id if source_id and "/" not in source_id else None


async def receive_webhook(edge: EdgeContext, source_id: str, scope: Scope, receive: Receive, send: Send) -> int:
    """Answer one webhook; returns the status sent.

    202 with the event id once JetStream has stored it (or the source's own
    reply), the id also in ``Switchboard-Event-Id``; 400/401/403/404/410/413/
    429/503 otherwise.
    """
    try:
        return await _receive(edge, source_id, scope, receive, send)
    except SwitchboardError as exc:
        status, payload, headers = error_parts(exc)
    except Exception as exc:
        status, payload, headers = unexpected_error(exc, scope["path"])
    return await _respond(send, status, orjson.dumps(payload), headers)


async def _receive(edge: EdgeContext, source_id: str, scope: Scope, receive: Receive, send: Send) -> int:
    received_at = time.time()
    body = await read_asgi_body(scope, receive, edge.settings.edge.max_body_bytes)
    query_string = scope["query_string"].decode("latin-1")
    inbound = InboundRequest(
        method=scope["method"],
        path=scope["path"],
        # ASGI servers give header names in lower case already.
        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        body=body,
        query=dict(parse_qsl(query_string)) if query_string else {},
        received_at=received_at,
        client_ip=client_ip(scope, edge.trusted_proxies),
        url=_url_as_seen(scope, query_string),
        query_string=query_string,
    )
    accepted = await edge.intake.accept(source_id, inbound)
    # Whatever the answer's shape (ours, or a plugin's own such as TwiML), a
    # sender can always tell which event it became; a handshake stored none.
    event_header = {EVENT_ID_HEADER: accepted.event_id} if accepted.event_id else None
    if accepted.reply is not None:
        reply = accepted.reply
        return await _respond(send, reply.status, reply.body, event_header, content_type=reply.content_type.encode())
    return await _respond(send, 202, orjson.dumps({"event_id": accepted.event_id, "duplicate": accepted.duplicate}),
                          event_header)


def _url_as_seen(scope: Scope, query: str) -> str:
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else server[0]
    return f"{scope.get('scheme', 'http')}://{host}{scope['path']}" + (f"?{query}" if query else "")
