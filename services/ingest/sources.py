"""Sources in PostgreSQL: the domain storage of IngestService."""

from __future__ import annotations

import ipaddress
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from plugins.manager import PluginRegistry, UnknownPlugin
from switchboard.ratelimit import RateLimit
from switchboard.errors import InvalidRequest, NotFound
from switchboard.ids import is_id, new_id

__all__ = ["Source", "SourceStore", "rate_limit"]


@dataclass(frozen=True)
class Source:
    id: str
    tenant_id: str
    name: str
    type: str
    config: dict[str, Any]
    secret: str
    created_at: datetime
    # Who may send (CIDRs; empty: anyone) and how fast (None: the default).
    allowed_ips: tuple[str, ...] = ()
    rate_limit: RateLimit | None = None
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = None
    disabled_at: datetime | None = None

    def accepted_secrets(self, now: datetime) -> list[str]:
        """The current secret, and the previous one while its grace period lasts."""
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            return [self.secret, self.previous_secret]
        return [self.secret]

    def admits(self, client_ip: str | None) -> bool:
        if not self.allowed_ips:
            return True
        if client_ip is None:
            return False
        address = ipaddress.ip_address(client_ip)
        return any(address in ipaddress.ip_network(cidr) for cidr in self.allowed_ips)


def _updated(row: dict[str, Any] | None, source_id: str) -> Source:
    """The row an UPDATE returned; none when the source was deleted meanwhile (another edge's
    cache can still have shown it for a few seconds)."""
    if row is None:
        raise NotFound(f"source {source_id} not found")
    return _source(row)


def _source(row: dict[str, Any]) -> Source:
    rate = RateLimit(row["rate_per_s"], row["rate_burst"]) if row["rate_per_s"] else None
    return Source(
        id=row["id"], tenant_id=row["tenant_id"], name=row["name"], type=row["type"], config=row["config"],
        secret=row["secret"], created_at=row["created_at"], allowed_ips=tuple(row["allowed_ips"]),
        rate_limit=rate, previous_secret=row["previous_secret"],
        previous_secret_expires_at=row["previous_secret_expires_at"], disabled_at=row["disabled_at"],
    )


def rate_limit(per_second: float | None, burst: int | None) -> RateLimit | None:
    """A source's own limit from API input; None (the default) when not given."""
    if not per_second and not burst:
        return None
    try:
        return RateLimit.of(per_second or 0, burst)
    except (ValueError, TypeError):
        raise InvalidRequest("rate_limit needs a positive per_second and burst") from None


def _networks(values: list[str]) -> list[str]:
    if len(values) > 100:
        raise InvalidRequest("at most 100 allowed_ips")
    try:
        return [str(ipaddress.ip_network(v, strict=False)) for v in values]
    except (ValueError, TypeError):
        raise InvalidRequest("allowed_ips must be IP addresses or CIDRs, like 203.0.113.0/24") from None


class SourceStore:
    """Sources, with a short-lived cache for the webhook hot path.

    The cache holds hits and misses for ``ttl_s``; a change through this
    store invalidates its entry in this process at once, and other edge
    processes see it within ``ttl_s``.
    """

    def __init__(self, pool: AsyncConnectionPool, registry: PluginRegistry, ttl_s: float = 5.0) -> None:
        self.pool = pool
        self.registry = registry
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Source | None]] = {}

    async def create(
        self,
        tenant_id: str,
        name: str,
        type_: str,
        config: dict[str, Any],
        secret: str,
        allowed_ips: list[str] | None = None,
        rate_limit: RateLimit | None = None,
    ) -> Source:
        if not isinstance(config, dict):
            raise InvalidRequest("config must be a JSON object")
        if not name or len(name) > 200:
            raise InvalidRequest("name must be 1 to 200 characters")
        try:
            plugin = self.registry.source(type_ or "generic")
        except UnknownPlugin as exc:
            raise InvalidRequest(str(exc)) from None
        clean = plugin.validate_config(config)
        secret = self._checked_secret(plugin, secret)
        networks = _networks(allowed_ips or [])
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """INSERT INTO ingest.sources (id, tenant_id, name, type, config, secret, allowed_ips,
                                              rate_per_s, rate_burst)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
                (new_id("src"), tenant_id, name, plugin.name, Jsonb(clean), secret, networks,
                 rate_limit.rate_per_s if rate_limit else None, rate_limit.burst if rate_limit else None),
            )
            source = _source(await cur.fetchone())
        self._cache.pop(source.id, None)
        return source

    @staticmethod
    def _checked_secret(plugin: Any, secret: str) -> str:
        if not secret:
            generate = getattr(plugin, "generate_secret", None)
            if generate:
                return generate()
            # Drawn again when "-" comes first (1 in 64): command lines take such a value for an option.
            secret = secrets.token_urlsafe(32)
            while secret.startswith("-"):
                secret = secrets.token_urlsafe(32)
            return secret
        if len(secret) < 16 or len(secret) > 500:
            raise InvalidRequest("a source secret has 16 to 500 characters")
        validate = getattr(plugin, "validate_secret", None)
        if validate:
            validate(secret)
        return secret

    async def rotate_secret(self, tenant_id: str, source_id: str, grace: timedelta, secret: str = "") -> Source:
        """A new secret; the current one keeps verifying for ``grace``."""
        if not timedelta(0) <= grace <= timedelta(days=30):
            raise InvalidRequest("the grace period is between 0 and 30 days")
        source = await self.get(tenant_id, source_id)
        new_secret = self._checked_secret(self.registry.source(source.type), secret)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE ingest.sources SET previous_secret = secret, previous_secret_expires_at = now() + %s,
                          secret = %s
                   WHERE tenant_id = %s AND id = %s RETURNING *""",
                (grace, new_secret, tenant_id, source_id),
            )
            updated = _updated(await cur.fetchone(), source_id)
        self._cache.pop(source_id, None)
        return updated

    async def disable(self, tenant_id: str, source_id: str) -> Source:
        return await self.set_enabled(tenant_id, source_id, False)

    async def set_enabled(self, tenant_id: str, source_id: str, enabled: bool) -> Source:
        """Disabled, its webhooks are refused with 410 (kept: nothing is deleted); enabled, taken again."""
        await self.get(tenant_id, source_id)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE ingest.sources
                   SET disabled_at = CASE WHEN %s THEN NULL ELSE coalesce(disabled_at, now()) END
                   WHERE tenant_id = %s AND id = %s RETURNING *""",
                (enabled, tenant_id, source_id),
            )
            updated = _updated(await cur.fetchone(), source_id)
        self._cache.pop(source_id, None)
        return updated

    async def update(self, tenant_id: str, source_id: str, changes: dict[str, Any]) -> Source:
        """Change the name, config (checked by the source's plugin), allowed_ips or rate_limit
        (a RateLimit, or None for the default): only the keys in ``changes``."""
        source = await self.get(tenant_id, source_id)
        unknown = set(changes) - {"name", "config", "allowed_ips", "rate_limit"}
        if unknown:
            raise InvalidRequest(f"cannot change {', '.join(sorted(unknown))}")
        columns: dict[str, Any] = {}
        if "name" in changes:
            name = changes["name"]
            if not isinstance(name, str) or not name or len(name) > 200:
                raise InvalidRequest("name must be 1 to 200 characters")
            columns["name"] = name
        if "config" in changes:
            if not isinstance(changes["config"], dict):
                raise InvalidRequest("config must be a JSON object")
            columns["config"] = Jsonb(self.registry.source(source.type).validate_config(changes["config"]))
        if "allowed_ips" in changes:
            columns["allowed_ips"] = _networks(changes["allowed_ips"] or [])
        if "rate_limit" in changes:
            limit: RateLimit | None = changes["rate_limit"]
            columns["rate_per_s"] = limit.rate_per_s if limit else None
            columns["rate_burst"] = limit.burst if limit else None
        if not columns:
            return source
        assignments = ", ".join(f"{column} = %s" for column in columns)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE ingest.sources SET {assignments} WHERE tenant_id = %s AND id = %s RETURNING *",
                (*columns.values(), tenant_id, source_id),
            )
            updated = _updated(await cur.fetchone(), source_id)
        self._cache.pop(source_id, None)
        return updated

    async def delete(self, tenant_id: str, source_id: str) -> None:
        """Gone for good: its webhooks get 404 like any unknown source. The events it
        brought stay (they are the router's, with their deliveries)."""
        await self.get(tenant_id, source_id)
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM ingest.sources WHERE tenant_id = %s AND id = %s",
                               (tenant_id, source_id))
        self._cache.pop(source_id, None)

    async def get(self, tenant_id: str, source_id: str) -> Source:
        source = await self.find(source_id)
        if source is None or source.tenant_id != tenant_id:
            raise NotFound(f"source {source_id} not found")
        return source

    async def find(self, source_id: str) -> Source | None:
        """The source with this id, whichever tenant owns it (for POST /in/{id})."""
        if not is_id(source_id, "src"):
            return None
        now = time.monotonic()
        cached = self._cache.get(source_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM ingest.sources WHERE id = %s", (source_id,))
            row = await cur.fetchone()
        source = _source(row) if row else None
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[source_id] = (now + self.ttl_s, source)
        return source

    async def list(self, tenant_id: str) -> list[Source]:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM ingest.sources WHERE tenant_id = %s ORDER BY id", (tenant_id,))
            return [_source(row) for row in await cur.fetchall()]
