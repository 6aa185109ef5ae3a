"""The ``intercom`` source: ``X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>``.

Keyed by the app's client secret. The notification's ``topic``
(``conversation.user.replied``) is the event type, its ``id`` the provider
id, and the conversation (``data.item`` of type ``conversation``) the
conversation key. The author comes from the topic (``conversation.user.*``
and ``.contact.*``/``.lead.*``: customer; ``.admin.*``: agent;
``.operator.*``: bot; any other topic: system), overruled by the newest
conversation part's author when the notification carries one (an admin's or a
bot's part is never the customer's).
Docs: https://developers.intercom.com/docs/references/webhooks/webhook-models#signed-notifications
"""

from __future__ import annotations

from typing import Any
from collections.abc import Mapping

from plugins.markers import hookimpl
from plugins.sources.spec import InboundRequest, NormalizedEvent, SignatureInvalid
from plugins.sources.verification import (
    JSON_TYPES,
    hmac_digest,
    json_object,
    matches_any,
    no_config,
    require_content_type,
    unix_time,
)


_TOPIC_AUTHORS = {"user": "customer", "contact": "customer", "lead": "customer", "admin": "agent",
                  "operator": "bot", "bot": "bot"}
_PART_AUTHORS = {"user": "customer", "contact": "customer", "lead": "customer", "admin": "agent", "bot": "bot",
                 "team": "agent"}


def _author(topic: str, item: Mapping[str, Any]) -> str:
    kind, _, rest = topic.partition(".")
    author = _TOPIC_AUTHORS.get(rest.partition(".")[0], "system") if kind == "conversation" else "system"
    if author == "system":
        return author
    parts = item.get("conversation_parts")
    parts = parts.get("conversation_parts") if isinstance(parts, dict) else None
    newest = parts[-1] if isinstance(parts, list) and parts and isinstance(parts[-1], dict) else {}
    by = newest.get("author")
    by = by if isinstance(by, dict) else {}
    # Only ever away from customer: a part the provider says a person wrote cannot make an admin topic theirs.
    part_type = by.get("type")
    part_author = _PART_AUTHORS.get(part_type) if isinstance(part_type, str) else None
    return part_author if part_author and part_author != "customer" else author


class IntercomSource:
    name = "intercom"

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return no_config(self.name, config)

    def verify(self, request: InboundRequest, secret: str, config: Mapping[str, Any]) -> None:
        header = request.headers.get("x-hub-signature", "")
        if not header.startswith("sha1="):
            raise SignatureInvalid("missing or malformed X-Hub-Signature header")
        expected = "sha1=" + hmac_digest(secret.encode(), request.body, "sha1").hex()
        if not matches_any(expected, [header]):
            raise SignatureInvalid("X-Hub-Signature does not match the body")

    def normalize(self, request: InboundRequest, config: Mapping[str, Any]) -> NormalizedEvent:
        require_content_type(request, *JSON_TYPES)
        payload = json_object(request)
        data = payload.get("data")
        data = data if isinstance(data, dict) else {}
        item = data.get("item")
        item = item if isinstance(item, dict) else {}
        topic = str(payload.get("topic") or "intercom")
        return NormalizedEvent(
            type=topic[:200],
            payload=payload,
            provider_event_id=payload.get("id") if isinstance(payload.get("id"), str) else None,
            body=request.body,
            occurred_at=unix_time(payload.get("created_at")),
            conversation_key=str(item["id"]) if item.get("type") == "conversation" and item.get("id") else None,
            author=_author(topic, item),
        )

    def sign(self, body: bytes, secret: str, config: Mapping[str, Any], url: str) -> dict[str, str]:
        return {"x-hub-signature": "sha1=" + hmac_digest(secret.encode(), body, "sha1").hex(),
                "content-type": "application/json"}


@hookimpl
def register_sources(register):
    register(IntercomSource())
