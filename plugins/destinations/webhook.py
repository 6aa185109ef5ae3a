"""The ``webhook`` destination: an HTTP POST signed per Standard Webhooks.

Headers: ``webhook-id`` (the delivery id, stable across retries so receivers
can de-duplicate), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256>`` keyed by the endpoint's
``whsec_`` secret. Any 2xx is success; 408, 425, 429 and 5xx are retried
(honouring ``Retry-After``); other 4xx are final. Receivers steer retries:
a ``webhook-delivery: abort-message`` response header stops them for this
delivery (as Svix does), and 410 Gone disables the endpoint.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import httpx
import orjson

from plugins.destinations.spec import (
    DestinationContext,
    EndpointTarget,
    InvalidEndpointConfig,
    OutboundMessage,
    SendResult,
)
from plugins.markers import hookimpl
from switchboard.netguard import DestinationRefused, check_url_shape, ensure_public_destination
from switchboard.signatures import decode_webhook_secret, sign_standard_webhook

_RETRYABLE_STATUSES = {408, 425, 429}
_EXCERPT_BYTES = 512


async def _excerpt(response: httpx.Response) -> str:
    """The start of the response body; the rest is never read into memory."""
    received = b""
    async for chunk in response.aiter_bytes():
        received += chunk
        if len(received) >= _EXCERPT_BYTES:
            break
    return received[:_EXCERPT_BYTES].decode("utf-8", errors="replace")


def _header_value(text: str) -> str:
    """Header-safe text: printable ASCII as is, anything else percent-encoded."""
    if text.isascii() and text.isprintable():
        return text
    return quote(text, safe="")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), 3600.0))
    except ValueError:
        return None  # an HTTP date: rare for webhooks; the policy decides


class WebhookDestination:
    name = "webhook"

    def validate(self, target: EndpointTarget) -> None:
        try:
            check_url_shape(target.url)
            decode_webhook_secret(target.secret)
        except (DestinationRefused, ValueError) as exc:
            raise InvalidEndpointConfig(str(exc)) from None

    async def send(self, message: OutboundMessage, target: EndpointTarget, context: DestinationContext) -> SendResult:
        try:
            await ensure_public_destination(target.url, context.allow_private_networks)
        except DestinationRefused as exc:
            return SendResult(ok=False, error=str(exc), retryable=False)
        body = message.body if message.body is not None else orjson.dumps(message.payload)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "Switchboard-Webhooks/0.1",
            "webhook-id": message.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_standard_webhook(target.secret, message.delivery_id, timestamp, body),
            "x-switchboard-event-id": message.event_id,
            "x-switchboard-event-type": _header_value(message.event_type),
            "x-switchboard-attempt": str(message.attempt),
        }
        try:
            # One deadline for the whole exchange: httpx's timeouts are per read,
            # so a receiver dripping bytes could otherwise hold a slot for ever.
            async with asyncio.timeout(context.timeout_s):
                async with context.http.stream(
                    "POST", target.url, content=body, headers=headers, timeout=context.timeout_s,
                    follow_redirects=False,
                ) as response:
                    status = response.status_code
                    received_headers = dict(response.headers)
                    abort = response.headers.get("webhook-delivery", "").strip().lower() == "abort-message"
                    excerpt = await _excerpt(response)
        except (TimeoutError, httpx.TimeoutException):
            return SendResult(ok=False, error=f"timed out after {context.timeout_s:g}s", retryable=True)
        except httpx.LocalProtocolError as exc:  # our request cannot be sent as it is: retrying won't help
            return SendResult(ok=False, error=f"request not sendable: {exc}"[:500], retryable=False)
        except httpx.HTTPError as exc:
            return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}"[:500], retryable=True)
        answered = {"status_code": status, "response_excerpt": excerpt, "response_headers": received_headers}
        if 200 <= status < 300:
            return SendResult(ok=True, **answered)
        if abort:
            return SendResult(ok=False, retryable=False,
                              error=f"receiver answered {status} with webhook-delivery: abort-message", **answered)
        if status == 410:
            return SendResult(ok=False, retryable=False, error="receiver answered 410 Gone",
                              disable_endpoint="receiver answered 410 Gone", **answered)
        retryable = status >= 500 or status in _RETRYABLE_STATUSES
        return SendResult(
            ok=False,
            **answered,
            error=f"receiver answered {status}",
            retryable=retryable,
            retry_after_s=_retry_after(response) if retryable else None,
        )


@hookimpl
def register_destinations(register):
    register(WebhookDestination())
