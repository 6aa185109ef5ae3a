"""What every edge handler can reach, built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from nats.aio.client import Client as NATS

from switchboard.apikeys import Authenticator
from services.ingest.intake import WebhookIntake
from switchboard.ratelimit import RateLimit, TokenBuckets
from services.ingest.sources import SourceStore
from switchboard.rpc import ServiceClients
from switchboard.settings import Settings

__all__ = ["EdgeContext"]


@dataclass(frozen=True)
class EdgeContext:
    settings: Settings
    intake: WebhookIntake
    sources: SourceStore
    authenticator: Authenticator
    clients: ServiceClients
    nc: NATS
    key_buckets: TokenBuckets
    key_rate: RateLimit
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...]
