"""The Standard Webhooks headers every signing destination (webhook, nats) sends.

The scheme follows the endpoint's secret: a ``whsec_`` secret signs ``v1,``
(HMAC-SHA256), a ``whsk_`` key ``v1a,`` (Ed25519); see switchboard/signatures.py.
``config.header_names`` names the three signature headers: ``standard``
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``, the default) or
``svix`` (``svix-id``, ``svix-timestamp``, ``svix-signature``, the same values),
so receivers written against Svix keep verifying while they move over.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from plugins.destinations.spec import EndpointTarget, InvalidEndpointConfig, OutboundMessage
from switchboard.signatures import check_signing_secret, sign_webhook

__all__ = ["HEADER_NAMES", "SIGNATURE_HEADERS", "body_of", "content_type_of", "check_header_names", "check_secret",
           "signed_headers"]

#: The id, timestamp and signature headers' names, by ``config.header_names``.
HEADER_NAMES = {
    "standard": ("webhook-id", "webhook-timestamp", "webhook-signature"),
    "svix": ("svix-id", "svix-timestamp", "svix-signature"),
}
#: Every name a signature header may have: a tenant's own headers must not take one.
SIGNATURE_HEADERS = frozenset(name for names in HEADER_NAMES.values() for name in names)


def check_header_names(config: Mapping[str, Any]) -> None:
    """InvalidEndpointConfig unless ``config.header_names``, when given, is one we know."""
    names = config.get("header_names", "standard")
    if not isinstance(names, str) or names not in HEADER_NAMES:
        raise InvalidEndpointConfig(f"header_names is one of {', '.join(HEADER_NAMES)}",
                                    field="config.header_names")


def check_secret(secret: str) -> None:
    """InvalidEndpointConfig unless ``secret`` is a ``whsec_`` secret (v1) or a ``whsk_`` key (v1a)."""
    try:
        check_signing_secret(secret)
    except ValueError as exc:
        raise InvalidEndpointConfig(str(exc), field="secret") from None


def body_of(message: OutboundMessage) -> bytes:
    """The exact bytes to send: as the source received them, else the payload as JSON."""
    return message.body if message.body is not None else orjson.dumps(message.payload)


def content_type_of(message: OutboundMessage) -> str:
    """The Content-Type of :func:`body_of`: the one the body came with, else JSON's."""
    return message.content_type if message.body is not None and message.content_type else "application/json"


def _header_value(text: str) -> str:
    """Header-safe text: printable ASCII as is, anything else percent-encoded."""
    if text.isascii() and text.isprintable():
        return text
    return quote(text, safe="")


def _signatures(target: EndpointTarget, msg_id: str, timestamp: int, body: bytes) -> str:
    """By the secret and, during a rotation, by the previous one too (space-separated, as the spec allows);
    each by its own scheme, so a rotation from v1 to v1a sends one of each."""
    signatures = [sign_webhook(target.secret, msg_id, timestamp, body)]
    if target.previous_secret:
        try:
            signatures.append(sign_webhook(target.previous_secret, msg_id, timestamp, body))
        except ValueError:  # a malformed previous secret: the current one alone still verifies
            pass
    return " ".join(signatures)


def signed_headers(message: OutboundMessage, target: EndpointTarget, body: bytes) -> dict[str, str]:
    """The id (stable across retries), timestamp and signature headers, named as the endpoint says, and ours."""
    id_name, timestamp_name, signature_name = HEADER_NAMES[target.config.get("header_names", "standard")]
    timestamp = int(time.time())
    return {
        id_name: message.delivery_id,
        timestamp_name: str(timestamp),
        signature_name: _signatures(target, message.delivery_id, timestamp, body),
        "x-switchboard-event-id": message.event_id,
        "x-switchboard-event-type": _header_value(message.event_type),
        "x-switchboard-attempt": str(message.attempt),
    }
