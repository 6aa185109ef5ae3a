"""The ``slack`` source: ``X-Slack-Signature: v0=<hex>`` over ``v0:{timestamp}:{body}``.

HMAC-SHA256 with the app's signing secret; ``X-Slack-Request-Timestamp``
must be within five minutes. ``url_verification`` is answered with its
challenge. Slack retries (``X-Slack-Retry-Num``) carry the same
``event_id``, so they collapse into the first event. The event type is the
inner event's type (and subtype): ``message``, ``app_mention``,
``message.channel_join``; the conversation is the channel (and thread).
The author is ``bot`` for a bot's or an app's post (``bot_id``, subtype
``bot_message``, or the app's own bot user named in ``authorizations``: the
platform's own replies come back this way), ``customer`` for a person's
message or mention, and ``system`` for everything else (edits, joins,
reactions).
Docs: https://api.slack.com/authentication/verifying-requests-from-slack
"""

from __future__ import annotations

import time
from typing import Any
from collections.abc import Mapping

import orjson

from plugins.markers import hookimpl
from plugins.sources.spec import InboundRequest, NormalizedEvent, Reply, SignatureInvalid
from plugins.sources.verification import (
    JSON_TYPES,
    check_timestamp,
    hmac_digest,
    json_object,
    matches_any,
    require_content_type,
    tolerance_only,
    unix_time,
)


# Subtypes that are still a person's message; every other subtype is Slack's bookkeeping.
_PERSON_SUBTYPES = frozenset({"thread_broadcast", "file_share", "me_message"})


def _author(payload: Mapping[str, Any], inner: Mapping[str, Any]) -> str:
    if inner.get("type") not in ("message", "app_mention"):
        return "system"
    subtype = inner.get("subtype")
    if inner.get("bot_id") or inner.get("bot_profile") or subtype == "bot_message":
        return "bot"
    authorizations = payload.get("authorizations")
    bots = {a.get("user_id") for a in authorizations if isinstance(a, dict) and a.get("is_bot")} \
        if isinstance(authorizations, list) else set()
    if not inner.get("user") or inner.get("user") in bots:
        return "bot"
    return "customer" if subtype is None or subtype in _PERSON_SUBTYPES else "system"


class SlackSource:
    name = "slack"

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return tolerance_only(config)

    def verify(self, request: InboundRequest, secret: str, config: Mapping[str, Any]) -> None:
        timestamp = check_timestamp(request.headers.get("x-slack-request-timestamp"),
                                    request.received_at or time.time(), config.get("tolerance_seconds", 300),
                                    "X-Slack-Request-Timestamp")
        presented = request.headers.get("x-slack-signature", "")
        if not presented.startswith("v0="):
            raise SignatureInvalid("missing or malformed X-Slack-Signature header")
        expected = "v0=" + hmac_digest(secret.encode(), f"v0:{timestamp}:".encode() + request.body).hex()
        if not matches_any(expected, [presented]):
            raise SignatureInvalid("X-Slack-Signature does not match")

    def handshake(self, request: InboundRequest, config: Mapping[str, Any]) -> Reply | None:
        if b"url_verification" not in request.body:
            return None
        payload = json_object(request)
        if payload.get("type") == "url_verification":
            return Reply(200, orjson.dumps({"challenge": payload.get("challenge", "")}))
        return None

    def normalize(self, request: InboundRequest, config: Mapping[str, Any]) -> NormalizedEvent:
        require_content_type(request, *JSON_TYPES)
        payload = json_object(request)
        event = payload.get("event")
        inner = event if isinstance(event, dict) else {}
        event_type = str(inner.get("type") or payload.get("type") or "slack")
        if inner.get("subtype"):
            event_type += f".{inner['subtype']}"
        channel = inner.get("channel")
        thread = inner.get("thread_ts") or inner.get("ts")
        return NormalizedEvent(
            type=event_type[:200],
            payload=payload,
            provider_event_id=payload.get("event_id") if isinstance(payload.get("event_id"), str) else None,
            body=request.body,
            occurred_at=unix_time(payload.get("event_time")),
            conversation_key=f"{channel}:{thread}" if channel and thread else channel,
            author=_author(payload, inner),
        )

    def sign(self, body: bytes, secret: str, config: Mapping[str, Any], url: str) -> dict[str, str]:
        timestamp = str(int(time.time()))
        signature = "v0=" + hmac_digest(secret.encode(), f"v0:{timestamp}:".encode() + body).hex()
        return {"x-slack-signature": signature, "x-slack-request-timestamp": timestamp,
                "content-type": "application/json"}


@hookimpl
def register_sources(register):
    register(SlackSource())
