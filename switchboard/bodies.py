"""Event bodies as they travel: the exact bytes a sender sent, and what their Content-Type says of them.

A body crosses the bus and PostgreSQL's jsonb (where delivery messages are
kept) inside JSON, which holds text and, in jsonb, no NUL. So a message
carries it as ``body`` (text) when it is UTF-8 without NUL, which every JSON
body is, else as ``body_base64``. Messages written before bodies could be
anything have ``body`` text alone, and read the same.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

__all__ = ["JSON_MEDIA", "media_type", "is_json_media", "body_text", "body_fields", "body_from_fields",
           "needs_json"]

JSON_MEDIA = "application/json"


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type value, lower-case, without parameters ("" when none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_media(content_type: str | None) -> bool:
    """Whether a body of this Content-Type is JSON text (no Content-Type: JSON, as it always was)."""
    media = media_type(content_type)
    return not media or media == JSON_MEDIA or media.endswith("+json")


def body_text(body: bytes | None) -> str | None:
    """The body as text when it is UTF-8 without NUL (what text and jsonb hold); else None."""
    if body is None or b"\x00" in body:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def body_fields(body: bytes | None) -> dict[str, str | None]:
    """The message fields that carry ``body``: ``body`` text, or ``body_base64`` for any other bytes."""
    text = body_text(body)
    if text is not None or body is None:
        return {"body": text}
    return {"body": None, "body_base64": base64.b64encode(body).decode("ascii")}


def body_from_fields(data: dict[str, Any]) -> bytes | None:
    """The body :func:`body_fields` wrote (or a message from before it: ``body`` text); ValueError when garbled."""
    encoded = data.get("body_base64")
    if encoded is not None:
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, TypeError):
            raise ValueError("body_base64 is not base64") from None
    text = data.get("body")
    return text.encode("utf-8") if isinstance(text, str) else None


def needs_json(what: str, content_type: str | None) -> str:
    """Why a JSON-only feature refuses an event whose body has no payload, e.g.
    ``filters need a JSON payload (this event is text/plain)``."""
    return f"{what} a JSON payload (this event is {media_type(content_type) or 'without a content type'})"
