"""The ``standard-webhooks`` source: ``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64> [v1,<base64> ...]`` (and the same under
``svix-*``, Svix's names for it).

The signed content is ``"{id}.{timestamp}.{body}"``, HMAC-SHA256 keyed by the
base64 part of the ``whsec_`` secret; several signatures are sent while a
secret is rotated, any match passes; the timestamp must be within the
tolerance (default 300 s). ``webhook-id`` is the provider id.
Spec: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
"""

from __future__ import annotations

import base64
import time
from typing import Any
from collections.abc import Mapping

from plugins.markers import hookimpl
from plugins.sources.spec import InboundRequest, InvalidSourceConfig, NormalizedEvent, SignatureInvalid
from plugins.sources.verification import (
    JSON_TYPES,
    check_timestamp,
    json_body,
    matches_any,
    require_content_type,
    tolerance_only,
)
from switchboard.signatures import decode_webhook_secret, generate_webhook_secret, sign_standard_webhook


def _header(request: InboundRequest, name: str) -> str | None:
    return request.headers.get(f"webhook-{name}") or request.headers.get(f"svix-{name}")


class StandardWebhooksSource:
    name = "standard-webhooks"

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return tolerance_only(config)

    def generate_secret(self) -> str:
        return generate_webhook_secret()

    def validate_secret(self, secret: str) -> None:
        try:
            decode_webhook_secret(secret)
        except ValueError as exc:
            raise InvalidSourceConfig(f"secret: {exc}") from None

    def verify(self, request: InboundRequest, secret: str, config: Mapping[str, Any]) -> None:
        msg_id = _header(request, "id")
        if not msg_id:
            raise SignatureInvalid("missing webhook-id header")
        timestamp = check_timestamp(_header(request, "timestamp"), request.received_at or time.time(),
                                    config.get("tolerance_seconds", 300), "webhook-timestamp")
        presented = [s for s in (_header(request, "signature") or "").split() if s.startswith("v1,")]
        if not presented:
            raise SignatureInvalid("missing or malformed webhook-signature header")
        try:
            expected = sign_standard_webhook(secret, msg_id, timestamp, request.body)
        except ValueError:
            raise SignatureInvalid("the source's secret is not a whsec_ secret") from None
        if not matches_any(expected, presented):
            raise SignatureInvalid("no webhook-signature matches")

    def normalize(self, request: InboundRequest, config: Mapping[str, Any]) -> NormalizedEvent:
        require_content_type(request, *JSON_TYPES)
        payload = json_body(request)
        event_type = payload.get("type") if isinstance(payload, dict) else None
        timestamp = _header(request, "timestamp")
        return NormalizedEvent(
            type=str(event_type or "webhook")[:200],
            payload=payload,
            provider_event_id=_header(request, "id"),
            body=request.body,
            occurred_at=float(timestamp) if timestamp and timestamp.isdigit() else None,
        )

    def sign(self, body: bytes, secret: str, config: Mapping[str, Any], url: str) -> dict[str, str]:
        msg_id = "msg_" + base64.b32encode(body[:10].ljust(10, b"0")).decode().lower()
        timestamp = int(time.time())
        return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                "webhook-signature": sign_standard_webhook(secret, msg_id, timestamp, body),
                "content-type": "application/json"}


@hookimpl
def register_sources(register):
    register(StandardWebhooksSource())
