"""The text of a message, for destinations that post to people (Slack, Intercom, SMS).

A payload that is an object with a non-blank string ``text`` field is sent as
that text: an AI-drafted reply or a transform produces such a payload. Any
other payload is summarised on one line as ``<event type>: <compact JSON>``,
the JSON cut at :data:`SUMMARY_JSON_CHARS` characters.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from plugins.destinations.spec import OutboundMessage

__all__ = ["SUMMARY_JSON_CHARS", "message_text", "truncate"]

#: How much of a payload's JSON a summary shows.
SUMMARY_JSON_CHARS = 3000
_ELLIPSIS = "…"


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, ending in "…" when cut."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - len(_ELLIPSIS))] + _ELLIPSIS


def _compact_json(payload: Any) -> str:
    try:
        return orjson.dumps(payload).decode()
    except TypeError:  # keys that are not strings, integers past 64 bits...
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)


def message_text(message: OutboundMessage, max_chars: int | None = None) -> str:
    """What to post for ``message``: its ``text`` field, else a one-line summary.

    ``max_chars`` caps the whole text (a provider's own limit, e.g. an SMS body).
    """
    payload = message.payload
    drafted = payload.get("text") if isinstance(payload, dict) else None
    if isinstance(drafted, str) and drafted.strip():
        text = drafted
    else:
        text = f"{message.event_type}: {truncate(_compact_json(payload), SUMMARY_JSON_CHARS)}"
    return truncate(text, max_chars) if max_chars is not None else text
