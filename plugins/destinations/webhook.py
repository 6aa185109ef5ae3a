"""The ``webhook`` destination: an HTTP request signed per Standard Webhooks.

Headers: ``webhook-id`` (the delivery id, stable across retries so receivers
can de-duplicate), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256>`` keyed by the endpoint's
``whsec_`` secret; during a secret rotation's grace period a second ``v1,``
signature made with the previous secret follows, space-separated, as the
specification allows. Any 2xx is success; 408, 425, 429 and 5xx are retried
(honouring ``Retry-After``), or the endpoint's own ``retry_statuses``; other
4xx are final. Receivers steer retries: a ``webhook-delivery: abort-message``
response header stops them for this delivery (as Svix does), and 410 Gone
disables the endpoint.

Config: ``method`` (POST, PUT or PATCH; POST by default) and ``headers``
(extra request headers; the signature headers and hop-by-hop headers cannot
be overridden).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
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

_RETRYABLE_STATUSES = frozenset({408, 425, 429})
_EXCERPT_BYTES = 512
_METHODS = ("POST", "PUT", "PATCH")
_MAX_HEADERS = 20
# Set by us on every request: a tenant's header must not replace them.
_RESERVED_HEADERS = frozenset({
    "webhook-id", "webhook-timestamp", "webhook-signature", "content-length", "content-type", "host",
    "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive", "proxy-authorization",
    "x-switchboard-event-id", "x-switchboard-event-type", "x-switchboard-attempt",
})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")


def check_webhook_config(config: Mapping[str, object]) -> None:
    """InvalidEndpointConfig unless ``config`` is a valid webhook config."""
    unknown = set(config) - {"method", "headers"}
    if unknown:
        raise InvalidEndpointConfig(f"unknown webhook config: {', '.join(sorted(unknown))}; it takes method, headers")
    method = config.get("method", "POST")
    if method not in _METHODS:
        raise InvalidEndpointConfig(f"method is one of {', '.join(_METHODS)}")
    headers = config.get("headers", {})
    if not isinstance(headers, Mapping) or len(headers) > _MAX_HEADERS:
        raise InvalidEndpointConfig(f"headers is an object of at most {_MAX_HEADERS} names and values")
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise InvalidEndpointConfig(f"header name {name!r} is not a valid HTTP header name")
        if name.lower() in _RESERVED_HEADERS:
            raise InvalidEndpointConfig(f"header {name} is set by Switchboard and cannot be overridden")
        if not isinstance(value, str) or len(value) > 1000 or not (value.isascii() and value.isprintable()):
            raise InvalidEndpointConfig(f"header {name} needs a printable ASCII string value of at most 1000 characters")


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
        check_webhook_config(target.config)

    async def send(self, message: OutboundMessage, target: EndpointTarget, context: DestinationContext) -> SendResult:
        try:
            await ensure_public_destination(target.url, context.allow_private_networks)
        except DestinationRefused as exc:
            return SendResult(ok=False, error=str(exc), retryable=False)
        body = message.body if message.body is not None else orjson.dumps(message.payload)
        timestamp = int(time.time())
        signature = sign_standard_webhook(target.secret, message.delivery_id, timestamp, body)
        if target.previous_secret:
            signature += " " + sign_standard_webhook(target.previous_secret, message.delivery_id, timestamp, body)
        headers = {
            **target.config.get("headers", {}),
            "content-type": "application/json",
            "user-agent": "Switchboard-Webhooks/0.1",
            "webhook-id": message.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
            "x-switchboard-event-id": message.event_id,
            "x-switchboard-event-type": _header_value(message.event_type),
            "x-switchboard-attempt": str(message.attempt),
        }
        try:
            # One deadline for the whole exchange: httpx's timeouts are per read,
            # so a receiver dripping bytes could otherwise hold a slot for ever.
            async with asyncio.timeout(context.timeout_s):
                async with context.http.stream(
                    target.config.get("method", "POST"), target.url, content=body, headers=headers, timeout=context.timeout_s,
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
        retryable = (status >= 500 or status in _RETRYABLE_STATUSES if context.retry_statuses is None
                     else status in context.retry_statuses)
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
