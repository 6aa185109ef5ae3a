"""Reading request bodies within the size limit."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

import orjson

from starlette.requests import Request
from starlette.types import Receive, Scope

from switchboard.database import contains_nul
from switchboard.errors import InvalidRequest, PayloadTooLarge

__all__ = ["read_asgi_body", "read_json_object", "client_ip"]


def client_ip(scope: Scope, trusted: tuple[IPv4Network | IPv6Network, ...]) -> str | None:
    """The sender's address: the peer, or, when the peer is a trusted proxy, the
    right-most X-Forwarded-For address that is not itself a trusted proxy."""
    peer = (scope.get("client") or (None,))[0]
    if peer is None or not trusted:
        return peer
    try:
        if not any(ip_address(peer) in net for net in trusted):
            return peer
    except ValueError:
        return peer
    forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
    hops = [h.strip() for h in ",".join(forwarded).split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            address = ip_address(hop)
        except ValueError:
            return peer  # a garbled header: trust only what we saw
        if not any(address in net for net in trusted):
            return str(address)
    return peer


async def read_asgi_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it passes ``limit`` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise InvalidRequest("invalid Content-Length") from None
            if declared > limit:
                raise PayloadTooLarge(f"body is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            raise InvalidRequest("request body incomplete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# Where the parsed body is kept: the request contract reads it before the handler does.
_PARSED_BODY = "switchboard.json_body"


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when empty); read once, then the same object."""
    parsed = request.scope.get(_PARSED_BODY)
    if parsed is not None:
        return parsed
    body = await read_asgi_body(request.scope, request.receive, limit)
    try:
        # orjson also refuses lone surrogates and absurd nesting.
        value = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest("body must be a JSON object")
    if contains_nul(value):
        raise InvalidRequest("body holds NUL characters")
    request.scope[_PARSED_BODY] = value
    return value
