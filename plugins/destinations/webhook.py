"""The ``webhook`` destination: an HTTP request signed per Standard Webhooks.

The body is the event's exact bytes (or a transform's output) with the
Content-Type they came with (``application/json`` for a payload sent as JSON).
Headers: ``webhook-id`` (the delivery id, stable across retries so receivers
can de-duplicate), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` keyed by the endpoint's
``whsec_`` secret, or ``v1a,<base64 Ed25519>`` by its ``whsk_`` key (receivers
verify with the ``whpk_`` public key); during a secret rotation's grace period
a second signature made with the previous secret follows, space-separated, as
the specification allows (docs/signatures.md). Any 2xx is success; 408, 425,
429 and 5xx are retried (honouring ``Retry-After``), or the endpoint's own
``retry_statuses``; other 4xx are final. Receivers steer retries: a ``webhook-delivery: abort-message``
response header stops them for this delivery (as Svix does), and 410 Gone
disables the endpoint.

Config: ``method`` (POST, PUT or PATCH; POST by default), ``headers``
(extra request headers; the signature headers and hop-by-hop headers cannot
be overridden) and ``header_names`` (``standard``, or ``svix`` for
``svix-id``, ``svix-timestamp`` and ``svix-signature`` with the same values).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from plugins.destinations.http_result import exchange
from plugins.destinations.signing import (
    SIGNATURE_HEADERS,
    body_of,
    check_header_names,
    check_secret,
    content_type_of,
    signed_headers,
)
from plugins.destinations.spec import (
    DestinationContext,
    EndpointTarget,
    InvalidEndpointConfig,
    OutboundMessage,
    SendResult,
)
from plugins.markers import hookimpl
from switchboard.netguard import DestinationRefused, check_url_shape

_METHODS = ("POST", "PUT", "PATCH")
_MAX_HEADERS = 20
# Set by us on every request: a tenant's header must not replace them.
_RESERVED_HEADERS = SIGNATURE_HEADERS | frozenset({
    "content-length", "content-type", "host",
    "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive", "proxy-authorization",
    "x-switchboard-event-id", "x-switchboard-event-type", "x-switchboard-attempt",
})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")


def check_webhook_config(config: Mapping[str, object]) -> None:
    """InvalidEndpointConfig unless ``config`` is a valid webhook config."""
    unknown = set(config) - {"method", "headers", "header_names"}
    if unknown:
        raise InvalidEndpointConfig(
            f"unknown webhook config: {', '.join(sorted(unknown))}; it takes method, headers, header_names",
            field="config")
    check_header_names(config)
    method = config.get("method", "POST")
    if method not in _METHODS:
        raise InvalidEndpointConfig(f"method is one of {', '.join(_METHODS)}", field="config.method")
    headers = config.get("headers", {})
    if not isinstance(headers, Mapping) or len(headers) > _MAX_HEADERS:
        raise InvalidEndpointConfig(f"headers is an object of at most {_MAX_HEADERS} names and values",
                                    field="config.headers")
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise InvalidEndpointConfig(f"header name {name!r} is not a valid HTTP header name",
                                        field="config.headers")
        if name.lower() in _RESERVED_HEADERS:
            raise InvalidEndpointConfig(f"header {name} is set by Switchboard and cannot be overridden",
                                        field="config.headers")
        if not isinstance(value, str) or len(value) > 1000 or not (value.isascii() and value.isprintable()):
            raise InvalidEndpointConfig(
                f"header {name} needs a printable ASCII string value of at most 1000 characters",
                field="config.headers")


class WebhookDestination:
    name = "webhook"
    sends_any_body = True

    def validate(self, target: EndpointTarget) -> None:
        try:
            check_url_shape(target.url)
        except (DestinationRefused, ValueError) as exc:
            raise InvalidEndpointConfig(str(exc), field="url") from None
        check_secret(target.secret)
        check_webhook_config(target.config)

    async def send(self, message: OutboundMessage, target: EndpointTarget, context: DestinationContext) -> SendResult:
        body = body_of(message)
        headers = {
            **target.config.get("headers", {}),
            "content-type": content_type_of(message),
            "user-agent": "Switchboard-Webhooks/0.1",
            **signed_headers(message, target, body),
        }
        answer = await exchange(context, target.config.get("method", "POST"), target.url, body=body,
                                headers=headers)
        if isinstance(answer, SendResult):
            return answer
        if answer.ok:
            return answer.result(context)
        if answer.headers.get("webhook-delivery", "").strip().lower() == "abort-message":
            return answer.failure(f"receiver answered {answer.status_code} with webhook-delivery: abort-message",
                                  retryable=False)
        if answer.status_code == 410:
            return answer.failure("receiver answered 410 Gone", retryable=False,
                                  disable_endpoint="receiver answered 410 Gone")
        return answer.result(context)


@hookimpl
def register_destinations(register):
    register(WebhookDestination())
