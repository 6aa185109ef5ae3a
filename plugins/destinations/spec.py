"""The hook specification and types for destination plugins.

A destination sends one delivery and reports what happened. The host records
the :class:`SendResult` as an attempt and decides, from ``retryable`` and
``retry_after_s``, whether to try again, and when. ``send`` must not raise for
a failed send (return a result with ``ok=False``); an exception is recorded as
a retryable error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol
from collections.abc import Callable, Mapping

from plugins.markers import hookspec
from switchboard.outbound import OutboundClient
from switchboard.errors import InvalidRequest

__all__ = [
    "OutboundMessage",
    "EndpointTarget",
    "DestinationContext",
    "SendResult",
    "Destination",
    "InvalidEndpointConfig",
    "register_destinations",
]


class InvalidEndpointConfig(InvalidRequest):
    """An endpoint's URL or config is not valid for its destination."""

    code = "invalid_endpoint_config"


@dataclass(frozen=True)
class OutboundMessage:
    """One delivery of one event to one endpoint."""

    # Stable across retries: receivers de-duplicate on it.
    delivery_id: str
    event_id: str
    tenant_id: str
    event_type: str
    payload: Any
    attempt: int
    # The exact bytes to send, when the source kept them; else encode ``payload``.
    body: bytes | None = None
    source_id: str = ""
    # The conversation the event belongs to (Intercom conversation id, Slack
    # channel and thread, Twilio phone number): where a reply goes.
    conversation_key: str | None = None
    # The Content-Type ``body`` came with (a generic source's form, XML, text
    # or binary body); None: application/json. A destination that sends the
    # body sends it with this (signing.content_type_of).
    content_type: str | None = None


@dataclass(frozen=True)
class EndpointTarget:
    url: str
    # The endpoint's signing secret (``whsec_...``).
    secret: str
    # The destination's own settings (method and headers for ``webhook``, a
    # bot token for ``slack``...); checked by :meth:`Destination.validate`.
    config: Mapping[str, Any] = field(default_factory=dict)
    # During a secret rotation's grace period, the secret being replaced:
    # signing destinations sign with both so receivers can switch at leisure.
    previous_secret: str | None = None


@dataclass(frozen=True)
class DestinationContext:
    """What the host lends a destination for one send."""

    # Send with plugins.destinations.http_result.exchange, which keeps to the host's deadline.
    http: OutboundClient
    timeout_s: float
    allow_private_networks: bool
    # Non-public networks the operator allows all the same (see switchboard.netguard).
    allowed_networks: tuple = ()
    # True when ``http`` checks every connection itself (the host's client
    # does): a destination need not resolve and check the URL per request.
    connections_guarded: bool = False
    # The platform's NATS connection, for destinations that publish to NATS.
    nats: Any = None
    # The endpoint's own list of HTTP statuses that are retried; None means
    # the destination's defaults.
    retry_statuses: frozenset[int] | None = None


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status_code: int | None = None
    response_excerpt: str = ""
    error: str | None = None
    retryable: bool = True
    # The receiver asked for this delay (Retry-After); None means "use the policy".
    retry_after_s: float | None = None
    # The receiver's response headers (the host keeps a bounded copy).
    response_headers: Mapping[str, str] = field(default_factory=dict)
    # The receiver said it never wants this endpoint used again (HTTP 410):
    # the host disables the endpoint, with this reason.
    disable_endpoint: str | None = None


class Destination(Protocol):
    #: The ``destination`` of an endpoint, e.g. "webhook".
    name: str
    # Optional, looked up with getattr: ``sends_any_body = True`` says it sends the body's exact bytes,
    # whatever they are (webhook, nats). Others read the payload, so an event without one (a generic
    # source's XML, text or binary body: payload None) fails at once, the error saying it needs JSON.

    def validate(self, target: EndpointTarget) -> None:
        """Raise InvalidEndpointConfig unless this endpoint can be sent to."""

    async def send(self, message: OutboundMessage, target: EndpointTarget, context: DestinationContext) -> SendResult:
        """Send once; return the outcome."""


@hookspec
def register_destinations(register: Callable[[Destination], None]) -> None:
    """Register destinations by calling ``register(destination)`` once for each.

    Called once at start-up on every plugin; all registrations are kept. Two
    destinations with the same ``name`` are an error at start-up.
    """
