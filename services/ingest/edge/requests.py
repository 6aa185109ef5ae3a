"""Reading request bodies within the size limit."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from switchboard.errors import InvalidRequest, PayloadTooLarge

__all__ = ["read_body", "read_json_object"]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"body is over the {limit}-byte limit")
        except ValueError:
            raise InvalidRequest("invalid Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    body = await read_body(request, limit)
    try:
        value = json.loads(body or b"{}")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest("body must be a JSON object")
    return value
