"""Accepting one webhook: verify, normalize, publish durably.

The domain of the edge's hot path. Publishing is injected (a :class:`Publisher`)
so this module has no NATS in it; the edge hands it a JetStream publisher.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from plugins.manager import PluginRegistry
from plugins.sources.spec import InboundRequest
from services.ingest.sources import SourceStore
from switchboard.errors import NotFound
from switchboard.events import Event
from switchboard.ids import derived_id, new_id

__all__ = ["Publisher", "Accepted", "WebhookIntake", "KEPT_HEADERS_EXCLUDED"]

# Credentials a sender may have attached; an event must not carry them onwards.
KEPT_HEADERS_EXCLUDED = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})


class Publisher(Protocol):
    async def __call__(self, event: Event) -> bool:
        """Publish durably; return True when the store already had this event id.

        Raises :class:`switchboard.errors.Unavailable` when it was not stored.
        """


@dataclass(frozen=True)
class Accepted:
    event_id: str
    duplicate: bool


class WebhookIntake:
    def __init__(self, sources: SourceStore, registry: PluginRegistry, publish: Publisher) -> None:
        self.sources = sources
        self.registry = registry
        self.publish = publish

    async def accept(self, source_id: str, request: InboundRequest) -> Accepted:
        source = await self.sources.find(source_id)
        if source is None:
            raise NotFound(f"source {source_id} not found")
        plugin = self.registry.source(source.type)
        plugin.verify(request, source.secret, source.config)
        normalized = plugin.normalize(request, source.config)
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
        )
        duplicate = await self.publish(event)
        return Accepted(event_id=event.id, duplicate=duplicate)
