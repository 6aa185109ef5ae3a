"""The hook specification and types for source plugins.

A source type verifies one provider's webhooks and normalizes them. The host
calls, for every request to ``POST /in/{source_id}``:

1. ``verify(request, secret, config)`` - raise :class:`SignatureInvalid` when
   the request is not authentic (the sender gets 401, nothing is stored);
   with a secret being rotated it is called once per secret still accepted;
2. ``handshake(request, config)`` (optional) - return a :class:`Reply` to
   answer a provider's handshake (Slack's ``url_verification``, GitHub's
   ``ping``) instead of accepting an event; None otherwise;
3. ``normalize(request, config)`` - return a :class:`NormalizedEvent`, or raise
   :class:`MalformedRequest` (400) or :class:`UnsupportedContentType` (415);
4. ``acknowledgement(config)`` (optional) - the :class:`Reply` an accepted
   event gets when the provider expects a particular body (Twilio: TwiML);
   None means the default ``202 {"event_id", "duplicate"}``.

``sign(body, secret, config, url)`` (optional) makes the headers a genuine
sender would send: ``switchboard send-sample`` and the benchmarks use it.
``generate_secret()`` and ``validate_secret(secret)`` (optional) are for
providers whose secrets have a format (Standard Webhooks' ``whsec_``).

All are plain synchronous functions: they run on the event loop for every
webhook, so they must be fast and must not do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol
from collections.abc import Callable, Mapping

from plugins.markers import hookspec
from switchboard.errors import InvalidRequest, Unauthenticated, UnsupportedMediaType

__all__ = [
    "AUTHORS",
    "Reply",
    "UnsupportedContentType",
    "InboundRequest",
    "NormalizedEvent",
    "SourceType",
    "SignatureInvalid",
    "MalformedRequest",
    "InvalidSourceConfig",
    "register_sources",
]


class SignatureInvalid(Unauthenticated):
    """The request's signature is missing, malformed or wrong, or its timestamp is too old."""

    code = "invalid_signature"


class MalformedRequest(InvalidRequest):
    """The request is authentic but its body cannot be understood."""

    code = "malformed_request"


class UnsupportedContentType(UnsupportedMediaType):
    """The request's content type is not one this source reads (415)."""


class InvalidSourceConfig(InvalidRequest):
    """The configuration given when creating a source is not valid for its type."""

    code = "invalid_source_config"


@dataclass(frozen=True)
class InboundRequest:
    """One webhook as received. Header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)
    # Unix seconds when the edge received it; use it for timestamp tolerance.
    received_at: float = 0.0
    # The sender's address (after trusted proxies), when known.
    client_ip: str | None = None
    # The URL as the edge saw it (scheme://host/path?query); behind a proxy a
    # source that signs URLs (Twilio) is configured with its public base URL.
    url: str = ""
    query_string: str = ""

    @property
    def content_type(self) -> str:
        """The media type, lower-case, without parameters ("" when absent)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


#: Who wrote a conversational event (``NormalizedEvent.author``): a person
#: writing in (``customer``), a human agent of the business (``agent``), a bot
#: or app (``bot``; the platform's own replies come back as this), or the
#: provider's bookkeeping (``system``: status callbacks, edits, joins).
AUTHORS = ("customer", "agent", "bot", "system")


@dataclass(frozen=True)
class NormalizedEvent:
    """What a source makes of a request."""

    type: str
    payload: Any
    # The provider's own id for this delivery; two requests with the same one
    # collapse into one event.
    provider_event_id: str | None = None
    # The exact bytes to deliver onwards (UTF-8 JSON text), when they are the
    # payload as received: receivers then get the sender's bytes, not a
    # re-encoding (big integers and number formats survive). None: deliver
    # the payload re-encoded.
    body: bytes | None = None
    # When the provider says it happened (Unix seconds), if it says.
    occurred_at: float | None = None
    # Conversational sources: what identifies the conversation (an Intercom
    # conversation, a Slack channel/thread, a Twilio From/To pair).
    conversation_key: str | None = None
    # Conversational sources: who wrote it, one of AUTHORS. A ``reply`` route
    # answers only ``customer`` messages, so a source that cannot tell must
    # not say customer; None (non-conversational sources) is never answered.
    author: str | None = None


@dataclass(frozen=True)
class Reply:
    """An answer for the sender other than the default 202."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


class SourceType(Protocol):
    """What ``register_sources`` registers."""

    #: The ``type`` of a source, e.g. "stripe".
    name: str

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Return the config with defaults filled in; raise InvalidSourceConfig."""

    def verify(self, request: InboundRequest, secret: str, config: Mapping[str, Any]) -> None:
        """Raise SignatureInvalid unless the request is authentic."""

    def normalize(self, request: InboundRequest, config: Mapping[str, Any]) -> NormalizedEvent:
        """Return the event; raise MalformedRequest."""


@hookspec
def register_sources(register: Callable[[SourceType], None]) -> None:
    """Register source types by calling ``register(source_type)`` once for each.

    Called once at start-up on every plugin; all registrations are kept. Two
    source types with the same ``name`` are an error at start-up.
    """
