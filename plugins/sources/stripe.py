"""The ``stripe`` source: ``Stripe-Signature: t=<ts>,v1=<sig>[,v1=<sig>...]``.

Stripe signs ``"{t}.{body}"`` with HMAC-SHA256 keyed by the endpoint's signing
secret (``whsec_...``, used as is). During a secret roll it sends one ``v1``
per active secret: any match passes. Timestamps older or newer than the
tolerance (default 300 s) are refused as replays.
Docs: https://docs.stripe.com/webhooks#verify-manually
"""

from __future__ import annotations

import time
from typing import Any
from collections.abc import Mapping

from plugins.markers import hookimpl
from plugins.sources.spec import InboundRequest, NormalizedEvent, SignatureInvalid
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


class StripeSource:
    name = "stripe"

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return tolerance_only(config)

    def verify(self, request: InboundRequest, secret: str, config: Mapping[str, Any]) -> None:
        header = request.headers.get("stripe-signature")
        if not header:
            raise SignatureInvalid("missing Stripe-Signature header")
        parts: dict[str, list[str]] = {}
        for item in header.split(","):
            key, sep, value = item.strip().partition("=")
            if sep:
                parts.setdefault(key, []).append(value)
        if not parts.get("v1"):
            raise SignatureInvalid("Stripe-Signature has no v1 signature")
        timestamp = check_timestamp(parts["t"][0] if parts.get("t") else None, request.received_at or time.time(),
                                    config.get("tolerance_seconds", 300), "Stripe-Signature t")
        expected = hmac_digest(secret.encode(), f"{timestamp}.".encode() + request.body).hex()
        if not matches_any(expected, parts["v1"]):
            raise SignatureInvalid("no Stripe-Signature v1 signature matches")

    def normalize(self, request: InboundRequest, config: Mapping[str, Any]) -> NormalizedEvent:
        require_content_type(request, *JSON_TYPES)
        event = json_object(request)
        return NormalizedEvent(
            type=str(event.get("type") or "stripe.event")[:200],
            payload=event,
            provider_event_id=event.get("id") if isinstance(event.get("id"), str) else None,
            body=request.body,
            occurred_at=unix_time(event.get("created")),
        )

    def sign(self, body: bytes, secret: str, config: Mapping[str, Any], url: str) -> dict[str, str]:
        timestamp = int(time.time())
        signature = hmac_digest(secret.encode(), f"{timestamp}.".encode() + body).hex()
        return {"stripe-signature": f"t={timestamp},v1={signature}", "content-type": "application/json"}


@hookimpl
def register_sources(register):
    register(StripeSource())
