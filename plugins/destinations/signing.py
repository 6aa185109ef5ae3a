"""The Standard Webhooks headers every signing destination (webhook, nats) sends."""

from __future__ import annotations

import time
from urllib.parse import quote

import orjson

from plugins.destinations.spec import EndpointTarget, OutboundMessage
from switchboard.signatures import sign_standard_webhook

__all__ = ["body_of", "signed_headers"]


def body_of(message: OutboundMessage) -> bytes:
    """The exact bytes to send: as the source received them, else the payload as JSON."""
    return message.body if message.body is not None else orjson.dumps(message.payload)


def _header_value(text: str) -> str:
    """Header-safe text: printable ASCII as is, anything else percent-encoded."""
    if text.isascii() and text.isprintable():
        return text
    return quote(text, safe="")


def _signatures(target: EndpointTarget, msg_id: str, timestamp: int, body: bytes) -> str:
    """By the secret and, during a rotation, by the previous one too (space-separated, as the spec allows)."""
    signatures = [sign_standard_webhook(target.secret, msg_id, timestamp, body)]
    if target.previous_secret:
        try:
            signatures.append(sign_standard_webhook(target.previous_secret, msg_id, timestamp, body))
        except ValueError:  # a malformed previous secret: the current one alone still verifies
            pass
    return " ".join(signatures)


def signed_headers(message: OutboundMessage, target: EndpointTarget, body: bytes) -> dict[str, str]:
    """``webhook-id`` (stable across retries), ``webhook-timestamp``, ``webhook-signature`` and ours."""
    timestamp = int(time.time())
    return {
        "webhook-id": message.delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": _signatures(target, message.delivery_id, timestamp, body),
        "x-switchboard-event-id": message.event_id,
        "x-switchboard-event-type": _header_value(message.event_type),
        "x-switchboard-attempt": str(message.attempt),
    }
