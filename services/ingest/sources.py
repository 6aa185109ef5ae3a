"""Sources in PostgreSQL: the domain storage of IngestService.

PostgreSQL is the truth. Every committed change is also told to a change feed
(the KV bucket SOURCES, :mod:`services.ingest.source_feed`), which every
ingest process mirrors in memory, so the webhook hot path finds a source
without PostgreSQL: a webhook is accepted while PostgreSQL is down.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ipaddress
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast
from collections.abc import AsyncIterator, Awaitable, Iterable

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from plugins.manager import PluginRegistry, UnknownPlugin
from switchboard.database import DatabaseUnavailable, as_platform_error
from switchboard.ratelimit import RateLimit
from switchboard.errors import InvalidRequest, NotFound
from switchboard.ids import is_id, new_id
from switchboard.secretbox import SecretBox, reseal_columns

__all__ = ["Source", "SourceStore", "SourceMirror", "ChangeFeed", "rate_limit"]

logger = logging.getLogger(__name__)

# How long a webhook's look-up of a source the mirror does not hold may wait for PostgreSQL.
LOOKUP_TIMEOUT_S = 2.0


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
    # Counted up by every change in PostgreSQL: a copy with a lower one is older.
    revision: int = 0

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


def _updated(row: dict[str, Any] | None, source_id: str, box: SecretBox) -> Source:
    """The row an UPDATE returned; none when the source was deleted meanwhile (another edge's
    cache can still have shown it for a few seconds)."""
    if row is None:
        raise NotFound(f"source {source_id} not found")
    return _source(row, box)


def _source(row: dict[str, Any], box: SecretBox) -> Source:
    """The source in a row, its secrets opened (they are sealed at rest: switchboard/secretbox.py)."""
    rate = RateLimit(row["rate_per_s"], row["rate_burst"]) if row["rate_per_s"] else None
    return Source(
        id=row["id"], tenant_id=row["tenant_id"], name=row["name"], type=row["type"], config=row["config"],
        secret=box.open(row["secret"]), created_at=row["created_at"], allowed_ips=tuple(row["allowed_ips"]),
        rate_limit=rate, previous_secret=box.open_optional(row["previous_secret"]),
        previous_secret_expires_at=row["previous_secret_expires_at"], disabled_at=row["disabled_at"],
        revision=row["revision"],
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


class ChangeFeed(Protocol):
    """Where every committed change of a source is told; raising when it could not be."""

    async def publish(self, source: Source) -> None:
        """The source as PostgreSQL now has it (a copy of a newer revision is kept)."""

    async def retract(self, source_id: str) -> None:
        """The source is deleted."""


class SourceMirror:
    """Every source as the change feed last told it, in this process's memory.

    ``loaded`` once the feed's whole content has been read: before that a
    source missing here may just not have been read yet, so the mirror is not
    asked. A copy never replaces a newer revision of the same source.
    """

    def __init__(self) -> None:
        self._sources: dict[str, Source] = {}
        self.loaded = False

    def __len__(self) -> int:
        return len(self._sources)

    def get(self, source_id: str) -> Source | None:
        return self._sources.get(source_id)

    def offer(self, source: Source) -> bool:
        """Keep ``source`` unless a copy of the same or a newer revision is held; whether it was kept."""
        held = self._sources.get(source.id)
        if held is not None and held.revision >= source.revision:
            return False
        self._sources[source.id] = source
        return True

    def forget(self, source_id: str) -> None:
        self._sources.pop(source_id, None)

    def load(self, sources: Iterable[Source]) -> None:
        """The feed's whole content, read anew (at start, and after NATS came back): a source it no
        longer has is forgotten (deleted meanwhile); a newer copy held than the one read stays."""
        fresh: dict[str, Source] = {}
        for source in sources:
            held = self._sources.get(source.id)
            fresh[source.id] = held if held is not None and held.revision > source.revision else source
        self._sources = fresh
        self.loaded = True


class SourceStore:
    """Sources, and how the webhook hot path finds one.

    With a loaded ``mirror`` (fed by the change feed), a source it holds is
    answered without PostgreSQL; any other id is looked up in PostgreSQL.
    Without one (or before it is loaded) every look-up reads PostgreSQL. Those
    reads are cached, hits and misses, for ``ttl_s``; a change through this
    store updates this process's mirror and cache at once, other processes'
    mirrors as soon as the feed tells them (milliseconds; their cached misses
    within ``ttl_s``). A look-up that needs PostgreSQL while it is down raises
    :class:`~switchboard.errors.Unavailable` (503): never a 404 for a source
    that could not be checked.
    """

    def __init__(self, pool: AsyncConnectionPool[Any], registry: PluginRegistry, ttl_s: float = 5.0,
                 mirror: SourceMirror | None = None, feed: ChangeFeed | None = None, *, box: SecretBox) -> None:
        self.pool = pool
        self.registry = registry
        # Seals the secrets PostgreSQL keeps, opens them as they are read.
        self.box = box
        self.ttl_s = ttl_s
        self.mirror = mirror
        self.feed = feed
        self._cache: dict[str, tuple[float, Source | None]] = {}

    @contextlib.asynccontextmanager
    async def _connection(self, timeout_s: float | None = None) -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
        try:
            async with self.pool.connection(timeout=timeout_s) as conn:
                yield conn
        except Exception as exc:
            # PostgreSQL cannot be reached (or the pool is shutting down): 503, never 500.
            down = as_platform_error(exc)
            if isinstance(down, DatabaseUnavailable):
                raise down from None
            raise

    async def _committed(self, source: Source) -> Source:
        """Tell this process and the change feed about a committed change."""
        self._cache.pop(source.id, None)
        if self.mirror is not None:
            self.mirror.offer(source)
        if self.feed is not None:
            await self._tell_feed(self.feed.publish(source), source.id, "source change not written to the feed")
        return source

    @staticmethod
    async def _tell_feed(told: Awaitable[None], source_id: str, failure: str) -> None:
        try:
            await told
        except Exception as exc:
            # The change stands (PostgreSQL is the truth); reconciliation writes it to the feed later.
            logger.warning(failure, extra={"source_id": source_id, "error": f"{type(exc).__name__}: {exc}"})

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
        async with self._connection() as conn:
            cur = await conn.execute(
                """INSERT INTO ingest.sources (id, tenant_id, name, type, config, secret, allowed_ips,
                                              rate_per_s, rate_burst)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
                (new_id("src"), tenant_id, name, plugin.name, Jsonb(clean), self.box.seal(secret), networks,
                 rate_limit.rate_per_s if rate_limit else None, rate_limit.burst if rate_limit else None),
            )
            source = _source(cast(DictRow, await cur.fetchone()), self.box)  # INSERT ... RETURNING: always a row
        return await self._committed(source)

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
        async with self._connection() as conn:
            cur = await conn.execute(
                """UPDATE ingest.sources SET previous_secret = secret, previous_secret_expires_at = now() + %s,
                          secret = %s, revision = revision + 1
                   WHERE tenant_id = %s AND id = %s RETURNING *""",
                (grace, self.box.seal(new_secret), tenant_id, source_id),
            )
            updated = _updated(await cur.fetchone(), source_id, self.box)
        return await self._committed(updated)

    async def reseal(self) -> int:
        """Seal again, with the current master key, every secret stored in the clear (before secrets were
        sealed) or with a previous master key; how many sources changed. Each row is changed only if it
        still holds what was read, so a rotation meanwhile is never undone."""
        return await reseal_columns(self.pool, self.box, "ingest.sources", bump=", revision = revision + 1")

    async def disable(self, tenant_id: str, source_id: str) -> Source:
        return await self.set_enabled(tenant_id, source_id, False)

    async def set_enabled(self, tenant_id: str, source_id: str, enabled: bool) -> Source:
        """Disabled, its webhooks are refused with 410 (kept: nothing is deleted); enabled, taken again."""
        await self.get(tenant_id, source_id)
        async with self._connection() as conn:
            cur = await conn.execute(
                """UPDATE ingest.sources
                   SET disabled_at = CASE WHEN %s THEN NULL ELSE coalesce(disabled_at, now()) END,
                       revision = revision + 1
                   WHERE tenant_id = %s AND id = %s RETURNING *""",
                (enabled, tenant_id, source_id),
            )
            updated = _updated(await cur.fetchone(), source_id, self.box)
        return await self._committed(updated)

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
        async with self._connection() as conn:
            cur = await conn.execute(
                f"""UPDATE ingest.sources SET {assignments}, revision = revision + 1
                    WHERE tenant_id = %s AND id = %s RETURNING *""",
                (*columns.values(), tenant_id, source_id),
            )
            updated = _updated(await cur.fetchone(), source_id, self.box)
        return await self._committed(updated)

    async def delete(self, tenant_id: str, source_id: str) -> None:
        """Gone for good: its webhooks get 404 like any unknown source. The events it
        brought stay (they are the router's, with their deliveries)."""
        await self.get(tenant_id, source_id)
        async with self._connection() as conn:
            await conn.execute("DELETE FROM ingest.sources WHERE tenant_id = %s AND id = %s",
                               (tenant_id, source_id))
        self._cache.pop(source_id, None)
        if self.mirror is not None:
            self.mirror.forget(source_id)
        if self.feed is not None:
            await self._tell_feed(self.feed.retract(source_id), source_id, "source deletion not written to the feed")

    async def get(self, tenant_id: str, source_id: str) -> Source:
        source = await self.find(source_id)
        if source is None or source.tenant_id != tenant_id:
            raise NotFound(f"source {source_id} not found")
        return source

    async def find(self, source_id: str) -> Source | None:
        """The source with this id, whichever tenant owns it (for POST /in/{id})."""
        if not is_id(source_id, "src"):
            return None
        if self.mirror is not None and self.mirror.loaded:
            mirrored = self.mirror.get(source_id)
            if mirrored is not None:
                return mirrored
        now = time.monotonic()
        cached = self._cache.get(source_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            # A sender waits on this: a database that is down or hung is a prompt 503, not a 10 s wait.
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                async with self._connection(LOOKUP_TIMEOUT_S) as conn:
                    cur = await conn.execute("SELECT * FROM ingest.sources WHERE id = %s", (source_id,))
                    row = await cur.fetchone()
        except TimeoutError:
            raise DatabaseUnavailable("the database is unavailable; retry later") from None
        source = _source(row, self.box) if row else None
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[source_id] = (now + self.ttl_s, source)
        return source

    async def list(self, tenant_id: str) -> list[Source]:
        async with self._connection() as conn:
            cur = await conn.execute("SELECT * FROM ingest.sources WHERE tenant_id = %s ORDER BY id", (tenant_id,))
            return [_source(row, self.box) for row in await cur.fetchall()]

    async def revisions(self) -> dict[str, int]:
        """Every source's revision, by id, whichever tenant owns it: what reconciliation
        compares the change feed with."""
        async with self._connection() as conn:
            cur = await conn.execute("SELECT id, revision FROM ingest.sources")
            return {row["id"]: row["revision"] for row in await cur.fetchall()}

    async def read(self, source_ids: Iterable[str]) -> builtins.list[Source]:  # "list" is the method above
        """These sources as PostgreSQL has them now (those that exist), read past the cache."""
        async with self._connection() as conn:
            cur = await conn.execute("SELECT * FROM ingest.sources WHERE id = ANY(%s) ORDER BY id",
                                     (list(source_ids),))
            return [_source(row, self.box) for row in await cur.fetchall()]
