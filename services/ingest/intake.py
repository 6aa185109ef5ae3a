"""Accepting one webhook: verify, normalize, publish durably.

The domain of the edge's hot path. Publishing is injected (a :class:`Publisher`)
so this module has no NATS in it; the edge hands it a JetStream publisher.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any, Protocol

from plugins.manager import PluginRegistry
from plugins.sources.spec import AUTHORS, InboundRequest, MalformedRequest, NormalizedEvent, Reply, SignatureInvalid
from services.ingest.sources import SourceStore
from switchboard.database import contains_nul
from switchboard.errors import Gone, InvalidRequest, NotFound, PermissionDenied, RateLimited
from switchboard.events import Event
from switchboard.ids import derived_id, new_id
from switchboard.ratelimit import RateLimit
from switchboard.shared_buckets import SharedTokenBuckets

__all__ = ["Publisher", "Accepted", "WebhookIntake", "KEPT_HEADERS_EXCLUDED", "API_SOURCE"]

# The source id of events published through the API rather than a webhook.
API_SOURCE = "api"

# Credentials a sender may have attached; an event must not carry them onwards.
KEPT_HEADERS_EXCLUDED = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
# A Content-Type longer than this is kept cut (its media type and first parameters are what matter).
_MAX_CONTENT_TYPE = 200


def _ensure_storable(event: NormalizedEvent, raw: bytes) -> None:
    """PostgreSQL's text and jsonb cannot hold NUL: refuse a payload with one now, not after a 202. (The body
    is kept as bytes, NUL and all: see switchboard/bodies.py.)"""
    # The raw check keeps the walk off the hot path: NUL can only come from an escape, a form's %00 or a raw byte.
    suspicious = b"\\u0000" in raw or b"\x00" in raw or b"%00" in raw
    if "\x00" in event.type or (suspicious and contains_nul(event.payload)):
        raise MalformedRequest("the payload contains NUL characters, which cannot be stored")


def _kept_content_type(request: InboundRequest) -> str:
    """The Content-Type deliveries send the body with: as received when it is a sane header value."""
    value = request.headers.get("content-type", "").strip()
    if len(value) <= _MAX_CONTENT_TYPE and value.isascii() and value.isprintable():
        return value
    media = request.content_type
    return media if len(media) <= _MAX_CONTENT_TYPE and media.isascii() and media.isprintable() else \
        "application/octet-stream"


def _verify_with_any(plugin: Any, request: InboundRequest, secrets: list[str], config: dict) -> None:
    """Verified by the current secret, or the previous one during its grace period."""
    for secret in secrets[:-1]:
        try:
            plugin.verify(request, secret, config)
            return
        except SignatureInvalid:
            continue
    plugin.verify(request, secrets[-1], config)


class Publisher(Protocol):
    async def __call__(self, event: Event) -> bool:
        """Publish durably; return True when the store already had this event id.

        Raises :class:`switchboard.errors.Unavailable` when it was not stored.
        """


@dataclass(frozen=True)
class Accepted:
    """What the sender is told: the event (None for a handshake) and, when the
    source wants one, a particular reply instead of the default 202."""

    event_id: str | None
    duplicate: bool
    reply: Reply | None = None


class WebhookIntake:
    def __init__(
        self,
        sources: SourceStore,
        registry: PluginRegistry,
        publish: Publisher,
        default_rate: RateLimit,
        buckets: SharedTokenBuckets | None = None,
    ) -> None:
        """``buckets``: each source's, shared by every edge process (None: this process's own)."""
        self.sources = sources
        self.registry = registry
        self.publish = publish
        self.default_rate = default_rate
        self.buckets = buckets or SharedTokenBuckets(None, "source")

    async def accept(self, source_id: str, request: InboundRequest) -> Accepted:
        source = await self.sources.find(source_id)
        if source is None:
            raise NotFound(f"source {source_id} not found")
        if source.disabled_at is not None:
            raise Gone(f"source {source_id} is disabled", code="source_disabled")
        # Policy before cryptography: refused senders cost no HMAC.
        if not source.admits(request.client_ip):
            raise PermissionDenied(f"{request.client_ip} may not send to this source", code="ip_not_allowed")
        verdict = await self.buckets.take(source.id, source.rate_limit or self.default_rate)
        if not verdict.allowed:
            raise RateLimited("this source is over its rate limit", retry_after_s=verdict.retry_after_s,
                              headers=verdict.headers())
        plugin = self.registry.source(source.type)
        _verify_with_any(plugin, request, source.accepted_secrets(datetime.now(UTC)), source.config)
        handshake = getattr(plugin, "handshake", None)
        reply = handshake(request, source.config) if handshake else None
        if reply is not None:
            return Accepted(event_id=None, duplicate=False, reply=reply)
        normalized = plugin.normalize(request, source.config)
        _ensure_storable(normalized, request.body)
        event_id = (
            derived_id("evt", source.id, normalized.provider_event_id)
            if normalized.provider_event_id
            else new_id("evt")
        )
        event = Event(
            id=event_id,
            tenant_id=source.tenant_id,
            source_id=source.id,
            type=normalized.type,
            received_at=request.received_at or time.time(),
            payload=normalized.payload,
            headers={k: v for k, v in request.headers.items() if k not in KEPT_HEADERS_EXCLUDED},
            provider_event_id=normalized.provider_event_id,
            body=normalized.body,
            occurred_at=normalized.occurred_at,
            conversation_key=normalized.conversation_key,
            source_type=source.type,
            # A plugin's unknown author is no author: never taken for a customer to answer.
            author=normalized.author if normalized.author in AUTHORS else None,
            # What the kept body is; without one, deliveries send the payload as JSON.
            content_type=_kept_content_type(request) if normalized.body is not None else "",
        )
        duplicate = await self.publish(event)
        acknowledgement = getattr(plugin, "acknowledgement", None)
        return Accepted(event_id=event.id, duplicate=duplicate,
                        reply=acknowledgement(source.config) if acknowledgement else None)

    async def publish_api_event(
        self, tenant_id: str, key_id: str, event_type: str, payload: Any, idempotency_key: str | None
    ) -> Accepted:
        """An event published by an API-key holder (``POST /v1/events``), from the source ``api``.

        The same idempotency key gives the same event id; within the dedup
        window (SWITCHBOARD_DEDUP_WINDOW, like a provider's delivery id) it is
        answered duplicate and nothing new is published. Its caller (the REST
        edge's JSON reader) has refused NUL characters anywhere in the request.
        """
        if not event_type or len(event_type) > 200:
            raise InvalidRequest("type must be 1 to 200 characters")
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
            raise InvalidRequest("idempotency_key must be 1 to 200 characters")
        event_id = derived_id("evt", tenant_id, API_SOURCE, idempotency_key) if idempotency_key else new_id("evt")
        event = Event(
            id=event_id,
            tenant_id=tenant_id,
            source_id=API_SOURCE,
            type=event_type,
            received_at=time.time(),
            payload=payload,
            headers={"x-switchboard-key-id": key_id},
            provider_event_id=idempotency_key,
            source_type="api",
        )
        return Accepted(event_id=event.id, duplicate=await self.publish(event))
