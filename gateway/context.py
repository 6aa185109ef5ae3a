"""What every gateway handler can reach, built once per process by the process that serves it.

The gateway imports no service: what it asks of the intake is the :class:`Intake` protocol below
(services/ingest's ``WebhookIntake`` is it, in the same process, so a webhook reaches JetStream
without a hop), and everything else is a gRPC call through ``clients``.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Protocol

from nats.aio.client import Client as NATS
from psycopg_pool import AsyncConnectionPool

from gateway.event_schemas import EventSchemas
from plugins.sources.spec import InboundRequest, Reply
from switchboard.apikeys import Authenticator
from switchboard.portal_tokens import PortalSigner
from switchboard.ratelimit import RateLimit
from switchboard.shared_buckets import SharedTokenBuckets
from switchboard.rpc import ServiceClients
from switchboard.settings import Settings

__all__ = ["Accepted", "EdgeContext", "Intake"]


class Accepted(Protocol):
    """What the sender is told: the event (None for a handshake), and the source's own reply if it has one."""

    @property
    def event_id(self) -> str | None: ...
    @property
    def duplicate(self) -> bool: ...
    @property
    def reply(self) -> Reply | None: ...


class Intake(Protocol):
    """Where accepted webhooks and published events become durable (answered once JetStream has them)."""

    async def accept(self, source_id: str, request: InboundRequest) -> Accepted: ...

    async def publish_api_event(self, tenant_id: str, key_id: str, event_type: str, payload: Any,
                                idempotency_key: str | None) -> Accepted: ...


@dataclass(frozen=True)
class EdgeContext:
    settings: Settings
    intake: Intake
    # Probed by /readyz: the intake reads sources from it until the bucket SOURCES has them.
    database: AsyncConnectionPool
    authenticator: Authenticator
    clients: ServiceClients
    nc: NATS
    # Each API key's on /v1, shared by every edge process.
    key_buckets: SharedTokenBuckets
    key_rate: RateLimit
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...]
    # The tenants' validating event types, which POST /v1/events checks payloads against.
    event_schemas: EventSchemas
    # Verifies the consumer portal's session tokens and frame grants (gateway/portal.py).
    portal: PortalSigner
