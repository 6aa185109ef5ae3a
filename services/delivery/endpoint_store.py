"""Endpoints in PostgreSQL: where deliveries go, with their signing secrets sealed at rest."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from collections.abc import Sequence

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from switchboard.errors import InvalidRequest, NotFound
from switchboard.ids import is_id, new_id
from switchboard.ratelimit import RateLimit
from switchboard.secretbox import SecretBox, reseal_columns

__all__ = ["Endpoint", "EndpointStore", "UPDATABLE"]


@dataclass(frozen=True)
class Endpoint:
    id: str
    tenant_id: str
    url: str
    description: str
    destination: str
    secret: str
    # The destination's own settings; delivery options are in ``options``.
    config: dict[str, Any]
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # Glob patterns; empty takes every event type routed to it.
    event_types: list[str] = field(default_factory=list)
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = None
    failover_endpoint_id: str | None = None
    failing_since: datetime | None = None
    deleted_at: datetime | None = None
    updated_at: datetime | None = None
    # The tenant's customer this endpoint is for (its consumer portal shows it); None: the tenant's own.
    application_id: str | None = None

    def signing_secrets(self, now: datetime) -> tuple[str, str | None]:
        """The secret and, during a rotation's grace period, the one it replaced."""
        expires = self.previous_secret_expires_at
        return self.secret, self.previous_secret if expires is not None and expires > now else None


#: What PATCH may change, with the column each maps to.
UPDATABLE = ("url", "description", "config", "options", "event_types", "failover_endpoint_id")


def _endpoint(row: dict[str, Any], box: SecretBox) -> Endpoint:
    """The endpoint in a row, its signing secrets and config credentials opened (sealed at rest:
    switchboard/secretbox.py)."""
    endpoint = {k: row[k] for k in Endpoint.__dataclass_fields__}
    endpoint["secret"] = box.open(row["secret"])
    endpoint["previous_secret"] = box.open_optional(row["previous_secret"])
    endpoint["config"] = box.open_config(row["config"])
    return Endpoint(**endpoint)


def _check_lengths(url: str, description: str) -> None:
    if len(url) > 2000 or len(description) > 500:
        raise InvalidRequest("url is at most 2000 and description at most 500 characters")


# An endpoint's shared bucket refilled up to now (the database's clock; never backwards when a
# statement waited for the row behind another whose clock was later).
_REFILLED = ("least(%(burst)s::float8, b.tokens + %(rate)s::float8"
             " * greatest(0, extract(epoch FROM statement_timestamp() - b.updated_at)::float8))")
# Refill, take up to %(want)s whole tokens, and say how many were taken and how long until the
# next token: one statement, the row locked for its length. A first lease finds a full bucket.
_LEASE_TOKENS = f"""
INSERT INTO delivery.endpoint_rate_buckets AS b (endpoint_id, tokens, updated_at, last_lease)
VALUES (%(endpoint_id)s, %(burst)s - least(%(want)s, %(burst)s), statement_timestamp(), least(%(want)s, %(burst)s))
ON CONFLICT (endpoint_id) DO UPDATE SET
    last_lease = least(%(want)s, floor({_REFILLED})),
    tokens = {_REFILLED} - least(%(want)s, floor({_REFILLED})),
    updated_at = greatest(b.updated_at, statement_timestamp())
RETURNING last_lease AS granted, greatest(0, 1 - tokens) / %(rate)s::float8 AS wait_s"""


class EndpointStore:
    def __init__(self, pool: AsyncConnectionPool[Any], ttl_s: float = 5.0, *, box: SecretBox) -> None:
        self.pool = pool
        # Seals the signing secrets PostgreSQL keeps, opens them as they are read.
        self.box = box
        # Endpoints are read for every delivery and change rarely: a short cache.
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str, str], tuple[float, Endpoint]] = {}
    async def create(
        self, tenant_id: str, url: str, description: str, destination: str, secret: str,
        config: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
        event_types: list[str] | None = None, failover_endpoint_id: str | None = None,
        application_id: str | None = None,
    ) -> Endpoint:
        _check_lengths(url, description)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """INSERT INTO delivery.endpoints (id, tenant_id, url, description, destination, secret, config,
                                                   options, event_types, failover_endpoint_id, application_id)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
                (new_id("ep"), tenant_id, url, description, destination, self.box.seal(secret),
                 Jsonb(self.box.seal_config(config or {})), Jsonb(options or {}), event_types or [],
                 failover_endpoint_id, application_id),
            )
            return _endpoint(await cur.fetchone(), self.box)

    async def update(self, tenant_id: str, endpoint_id: str, changes: dict[str, Any]) -> Endpoint:
        """Change some of the :data:`UPDATABLE` fields (already validated)."""
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise InvalidRequest(f"cannot change {', '.join(sorted(unknown))}")
        _check_lengths(changes.get("url", ""), changes.get("description", ""))
        sealed = {"config": self.box.seal_config(changes["config"])} if "config" in changes else {}
        values = {k: Jsonb(v) if k in ("config", "options") else v for k, v in {**changes, **sealed}.items()}
        assignments = "".join(f"{column} = %({column})s, " for column in values)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"""UPDATE delivery.endpoints SET {assignments}updated_at = now()
                    WHERE tenant_id = %(tenant)s AND id = %(id)s AND deleted_at IS NULL RETURNING *""",
                {**values, "tenant": tenant_id, "id": endpoint_id},
            )
            row = await cur.fetchone()
        return self._changed(tenant_id, endpoint_id, row)

    async def rotate_secret(self, tenant_id: str, endpoint_id: str, secret: str, grace: timedelta) -> Endpoint:
        """A new signing secret; the old one still signs (beside it) for ``grace``."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE delivery.endpoints
                   SET previous_secret = secret, previous_secret_expires_at = now() + %s, secret = %s,
                       updated_at = now()
                   WHERE tenant_id = %s AND id = %s AND deleted_at IS NULL RETURNING *""",
                (grace, self.box.seal(secret), tenant_id, endpoint_id),
            )
            row = await cur.fetchone()
        return self._changed(tenant_id, endpoint_id, row)

    async def reseal(self) -> int:
        """Seal again, with the current master key, signing secrets and config credentials stored in the
        clear (before secrets were sealed) or with a previous master key; how many endpoints changed."""
        return await reseal_columns(self.pool, self.box, "delivery.endpoints", with_config=True)

    async def delete(self, tenant_id: str, endpoint_id: str) -> None:
        """Delete an endpoint; its log stays, its pending deliveries fail, nothing fails over to it."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                """UPDATE delivery.endpoints SET deleted_at = now(), failover_endpoint_id = NULL, updated_at = now()
                   WHERE tenant_id = %s AND id = %s AND deleted_at IS NULL RETURNING *""",
                (tenant_id, endpoint_id),
            )
            row = await cur.fetchone()
            if row is not None:
                await conn.execute(
                    """UPDATE delivery.endpoints SET failover_endpoint_id = NULL, updated_at = now()
                       WHERE tenant_id = %s AND failover_endpoint_id = %s""", (tenant_id, endpoint_id))
                await conn.execute(
                    """UPDATE delivery.deliveries SET status = 'failed', updated_at = now()
                       WHERE endpoint_id = %s AND status = 'pending'""", (endpoint_id,))
        self._changed(tenant_id, endpoint_id, row)

    async def note_failures(self, endpoint_ids: Sequence[str]) -> list[datetime]:
        """The endpoints failed again: when each one's current streak of failures began (one statement
        for all: see services/delivery/health.py)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE delivery.endpoints SET failing_since = coalesce(failing_since, now())
                   WHERE id = ANY(%s) RETURNING id, failing_since""", (sorted(set(endpoint_ids)),))
            since = {row["id"]: row["failing_since"] for row in await cur.fetchall()}
        return [since[endpoint_id] for endpoint_id in endpoint_ids]

    async def note_successes(self, endpoint_ids: Sequence[str]) -> list[None]:
        """The endpoints answered: their streaks of failures, if any, are over."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE delivery.endpoints SET failing_since = NULL WHERE id = ANY(%s) AND failing_since IS NOT NULL",
                (sorted(set(endpoint_ids)),))
        return [None] * len(endpoint_ids)

    async def lease_tokens(self, endpoint_id: str, limit: RateLimit, want: int) -> tuple[int, float]:
        """Take up to ``want`` tokens from the endpoint's bucket shared by every delivery process:
        ``(tokens taken, seconds until the bucket holds a whole token again)``."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_LEASE_TOKENS, {"endpoint_id": endpoint_id, "rate": limit.rate_per_s,
                                                     "burst": limit.burst, "want": want})
            row = await cur.fetchone()
        return int(row["granted"]), float(row["wait_s"])

    def _changed(self, tenant_id: str, endpoint_id: str, row: dict[str, Any] | None) -> Endpoint:
        self._cache.pop((tenant_id, endpoint_id), None)
        if row is None:
            raise NotFound(f"endpoint {endpoint_id} not found")
        return _endpoint(row, self.box)

    async def cached(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        """Like :meth:`get`, from a cache at most ``ttl_s`` old."""
        key = (tenant_id, endpoint_id)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        endpoint = await self.get(tenant_id, endpoint_id, include_deleted=True)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self.ttl_s, endpoint)
        return endpoint

    async def get(self, tenant_id: str, endpoint_id: str, include_deleted: bool = False) -> Endpoint:
        if not is_id(endpoint_id, "ep"):
            raise NotFound(f"endpoint {endpoint_id} not found")
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM delivery.endpoints WHERE tenant_id = %s AND id = %s", (tenant_id, endpoint_id)
            )
            row = await cur.fetchone()
        if row is None or (row["deleted_at"] is not None and not include_deleted):
            raise NotFound(f"endpoint {endpoint_id} not found")
        return _endpoint(row, self.box)

    async def for_tenant(self, tenant_id: str, application_id: str | None = None) -> list[Endpoint]:
        """The tenant's endpoints; with ``application_id``, only that application's."""
        mine = " AND application_id = %s" if application_id is not None else ""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT * FROM delivery.endpoints WHERE tenant_id = %s AND deleted_at IS NULL{mine} ORDER BY id",
                (tenant_id, application_id) if application_id is not None else (tenant_id,))
            return [_endpoint(row, self.box) for row in await cur.fetchall()]

    async def disable_enabled(self, tenant_id: str, endpoint_id: str, reason: str) -> bool:
        """Disable the endpoint if it is enabled; False if it was disabled already (its reason is kept).

        Attempts in flight when an endpoint crosses its limit each see it enabled (and other processes'
        copies are up to ``ttl_s`` old): the first to arrive disables it, the rest find it done."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE delivery.endpoints SET disabled_at = now(), disabled_reason = %s, updated_at = now()
                   WHERE tenant_id = %s AND id = %s AND deleted_at IS NULL AND disabled_at IS NULL RETURNING id""",
                (reason, tenant_id, endpoint_id),
            )
            disabled = await cur.fetchone() is not None
        self._cache.pop((tenant_id, endpoint_id), None)
        return disabled

    async def set_disabled(self, tenant_id: str, endpoint_id: str, reason: str | None) -> Endpoint:
        """Disable (with a reason) or, with None, re-enable an endpoint."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE delivery.endpoints
                   SET disabled_at = CASE WHEN %(reason)s::text IS NULL THEN NULL ELSE coalesce(disabled_at, now()) END,
                       disabled_reason = %(reason)s,
                       -- Re-enabled: a fresh start, not the old streak of failures.
                       failing_since = CASE WHEN %(reason)s::text IS NULL THEN NULL ELSE failing_since END,
                       updated_at = now()
                   WHERE tenant_id = %(tenant)s AND id = %(id)s AND deleted_at IS NULL RETURNING *""",
                {"reason": reason, "tenant": tenant_id, "id": endpoint_id},
            )
            row = await cur.fetchone()
        return self._changed(tenant_id, endpoint_id, row)
