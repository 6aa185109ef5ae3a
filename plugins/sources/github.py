"""The ``github`` source: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.

The event type is ``X-GitHub-Event`` plus the payload's ``action`` when it has
one (``issues.opened``); ``X-GitHub-Delivery`` is the provider id (a
redelivery from GitHub's UI keeps it, so it collapses into one event).
GitHub's ``ping`` (sent when a hook is created) is answered and not stored.
Bodies may be JSON or a form with a ``payload`` field, as GitHub allows.
Docs: https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
"""

from __future__ import annotations

from typing import Any
from collections.abc import Mapping

from plugins.markers import hookimpl
from plugins.sources.spec import InboundRequest, MalformedRequest, NormalizedEvent, Reply, SignatureInvalid
from plugins.sources.verification import (
    FORM_TYPE,
    form_body,
    hmac_digest,
    json_object,
    matches_any,
    no_config,
    parse_json_object,
    require_content_type,
)


def _payload(request: InboundRequest) -> dict[str, Any]:
    if require_content_type(request, "application/json", FORM_TYPE) == FORM_TYPE:
        raw = form_body(request).get("payload")
        if not isinstance(raw, str):
            raise MalformedRequest("a form-encoded GitHub delivery carries a payload field")
        return parse_json_object(raw, "payload")
    return json_object(request)


class GitHubSource:
    name = "github"

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return no_config(self.name, config)

    def verify(self, request: InboundRequest, secret: str, config: Mapping[str, Any]) -> None:
        header = request.headers.get("x-hub-signature-256", "")
        if not header.startswith("sha256="):
            raise SignatureInvalid("missing or malformed X-Hub-Signature-256 header")
        expected = "sha256=" + hmac_digest(secret.encode(), request.body).hex()
        if not matches_any(expected, [header]):
            raise SignatureInvalid("X-Hub-Signature-256 does not match the body")

    def handshake(self, request: InboundRequest, config: Mapping[str, Any]) -> Reply | None:
        if request.headers.get("x-github-event") == "ping":
            return Reply(200, b'{"ok":true,"ping":"pong"}')
        return None

    def normalize(self, request: InboundRequest, config: Mapping[str, Any]) -> NormalizedEvent:
        payload = _payload(request)
        event = request.headers.get("x-github-event") or "github"
        action = payload.get("action")
        event_type = f"{event}.{action}" if isinstance(action, str) and action else event
        keep_raw = request.content_type in ("", "application/json")
        return NormalizedEvent(
            type=event_type[:200],
            payload=payload,
            provider_event_id=request.headers.get("x-github-delivery") or None,
            body=request.body if keep_raw else None,
        )

    def sign(self, body: bytes, secret: str, config: Mapping[str, Any], url: str) -> dict[str, str]:
        return {
            "x-hub-signature-256": "sha256=" + hmac_digest(secret.encode(), body).hex(),
            "x-github-event": "issues",
            "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "content-type": "application/json",
        }


@hookimpl
def register_sources(register):
    register(GitHubSource())
