"""API keys and tenants: the domain of AuthService (no gRPC, no HTTP).

Key format: ``sb_live_<key id>_<secret>``: the visible prefix and key id make a
leaked key greppable and identifiable; the secret is 200 random bits.

Storage: only ``HMAC-SHA256(pepper, key)``. A slow password hash (bcrypt,
argon2) protects low-entropy passwords against guessing; these keys are random
with 200 bits of entropy, so guessing is already hopeless and a fast keyed
hash is right: verification stays cheap on the hot path, and a stolen
database is useless without the pepper, which is derived from the master key
and never stored in the database.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from collections.abc import Sequence
from datetime import datetime, timedelta, UTC
from typing import Any

from psycopg_pool import AsyncConnectionPool

from switchboard.errors import InvalidRequest, NotFound, Unauthenticated
from switchboard.ids import new_id

__all__ = ["SCOPES", "Tenant", "ApiKey", "IssuedKey", "Principal", "KeyStore", "AuditEntry", "parse_key",
           "DEFAULT_ROTATION_GRACE"]

# How long a rotated key keeps working: long enough to roll the new key out
# to every client of a deployment, short enough that a leaked key rotated
# away dies the same day.
DEFAULT_ROTATION_GRACE = timedelta(hours=24)
MAX_EXPIRY = timedelta(days=3650)
# last_used_at is written at most this often per key (verification is hot).
LAST_USED_RESOLUTION = timedelta(minutes=1)

SCOPES = ("admin", "events:publish", "read")
KEY_PREFIX = "sb_live_"
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_KEY_RE = re.compile(r"^sb_live_([0-9a-hjkmnp-tv-z]{12})_([0-9a-hjkmnp-tv-z]{40})$")


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def parse_key(key: str) -> str:
    """The key id of a well-formed key; Unauthenticated otherwise."""
    match = _KEY_RE.match(key)
    if not match:
        raise Unauthenticated("malformed API key")
    return match.group(1)


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    tenant_id: str
    actor: str
    action: str
    resource: str
    at: datetime


_KEY_COLUMNS = "id, tenant_id, name, prefix, scopes, created_at, last_used_at, expires_at, revoked_at"


def _key(row: dict) -> ApiKey:
    return ApiKey(**{**row, "scopes": tuple(row["scopes"])})


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str


@dataclass(frozen=True)
class Principal:
    """Who a verified key speaks for."""

    tenant_id: str
    key_id: str
    scopes: tuple[str, ...]


class KeyStore:
    def __init__(self, pool: AsyncConnectionPool[Any], pepper: bytes, previous_peppers: Sequence[bytes] = ()) -> None:
        """``previous_peppers``: those of previous master keys. A key hashed with one still verifies,
        and is hashed again with the current pepper as it does (keys are never stored to re-hash)."""
        self.pool = pool
        self.pepper = pepper
        self.previous_peppers = tuple(previous_peppers)

    def _hash(self, key: str) -> bytes:
        return hmac.new(self.pepper, key.encode(), hashlib.sha256).digest()

    async def create_tenant(self, name: str) -> Tenant:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidRequest("tenant name must be 1 to 200 characters")
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO auth.tenants (id, name) VALUES (%s, %s) RETURNING id, name, created_at",
                (new_id("ten"), name),
            )
            return Tenant(**await cur.fetchone())

    async def get_tenant(self, tenant_id: str) -> Tenant:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT id, name, created_at FROM auth.tenants WHERE id = %s", (tenant_id,))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"tenant {tenant_id} not found")
        return Tenant(**row)

    async def list_tenants(self) -> list[Tenant]:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT id, name, created_at FROM auth.tenants ORDER BY id")
            return [Tenant(**row) for row in await cur.fetchall()]

    async def create_key(
        self, tenant_id: str, name: str, scopes: list[str], expires_in: timedelta | None = None
    ) -> IssuedKey:
        if not scopes:
            raise InvalidRequest("a key needs at least one scope")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise InvalidRequest(f"unknown scopes: {', '.join(unknown)}; known: {', '.join(SCOPES)}")
        if expires_in is not None and not timedelta(0) < expires_in <= MAX_EXPIRY:
            raise InvalidRequest("expiry must be between 1 second and 10 years away")
        if len(name) > 200:
            raise InvalidRequest("name is at most 200 characters")
        await self.get_tenant(tenant_id)
        key_id = _random(12)
        secret = f"{KEY_PREFIX}{key_id}_{_random(40)}"
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"""INSERT INTO auth.api_keys (id, tenant_id, name, prefix, key_hash, scopes, expires_at)
                    VALUES (%s, %s, %s, %s, %s, %s, now() + %s) RETURNING {_KEY_COLUMNS}""",
                (key_id, tenant_id, name or "key", f"{KEY_PREFIX}{key_id}", self._hash(secret),
                 sorted(set(scopes)), expires_in),
            )
            key = _key(await cur.fetchone())
        return IssuedKey(key=key, secret=secret)

    async def list_keys(self, tenant_id: str) -> list[ApiKey]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM auth.api_keys WHERE tenant_id = %s ORDER BY created_at, id",
                (tenant_id,),
            )
            return [_key(row) for row in await cur.fetchall()]

    async def revoke_key(self, tenant_id: str, key_id: str) -> ApiKey:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"""UPDATE auth.api_keys SET revoked_at = coalesce(revoked_at, now())
                    WHERE tenant_id = %s AND id = %s RETURNING {_KEY_COLUMNS}""",
                (tenant_id, key_id),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        return _key(row)

    async def rotate_key(self, tenant_id: str, key_id: str, grace: timedelta | None = None) -> IssuedKey:
        """A new key like the old one; the old one expires after ``grace``."""
        grace = DEFAULT_ROTATION_GRACE if grace is None else grace
        if not timedelta(0) <= grace <= timedelta(days=30):
            raise InvalidRequest("the grace period is between 0 and 30 days")
        old = next((k for k in await self.list_keys(tenant_id) if k.id == key_id), None)
        if old is None:
            raise NotFound(f"API key {key_id} not found")
        if old.revoked_at is not None:
            raise InvalidRequest("a revoked key cannot be rotated")
        remaining = None
        if old.expires_at is not None:
            remaining = old.expires_at - datetime.now(UTC)
            if remaining <= timedelta(0):
                raise InvalidRequest("an expired key cannot be rotated")
        issued = await self.create_key(tenant_id, old.name, list(old.scopes), remaining)
        async with self.pool.connection() as conn:
            # Never extend: a key already expiring sooner keeps its earlier end.
            await conn.execute(
                """UPDATE auth.api_keys SET expires_at = LEAST(coalesce(expires_at, 'infinity'), now() + %s)
                   WHERE tenant_id = %s AND id = %s""",
                (grace, tenant_id, key_id),
            )
        return issued

    async def record_audit(self, tenant_id: str, actor: str, action: str, resource: str) -> AuditEntry:
        if not (tenant_id and actor and action):
            raise InvalidRequest("an audit entry needs tenant_id, actor and action")
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """INSERT INTO auth.audit_log (tenant_id, actor, action, resource)
                   VALUES (%s, %s, %s, %s) RETURNING id, tenant_id, actor, action, resource, at""",
                (tenant_id, actor[:100], action[:100], resource[:200]),
            )
            return AuditEntry(**await cur.fetchone())

    async def list_audit(self, tenant_id: str, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        limit = max(1, min(limit or 100, 1000))
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT id, tenant_id, actor, action, resource, at FROM auth.audit_log
                   WHERE tenant_id = %s AND (%s::bigint IS NULL OR id < %s)
                   ORDER BY id DESC LIMIT %s""",
                (tenant_id, before_id, before_id, limit),
            )
            return [AuditEntry(**row) for row in await cur.fetchall()]

    async def verify(self, presented: str) -> Principal:
        key_id = parse_key(presented)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT tenant_id, key_hash, scopes, expires_at, revoked_at, last_used_at
                   FROM auth.api_keys WHERE id = %s""",
                (key_id,),
            )
            row = await cur.fetchone()
        # Hash even when the id is unknown so both paths take the same time.
        expected = bytes(row["key_hash"]) if row else b"\0" * 32
        current = self._hash(presented)
        if not hmac.compare_digest(current, expected) or row is None:
            if row is None or not any(
                    hmac.compare_digest(hmac.new(p, presented.encode(), hashlib.sha256).digest(), expected)
                    for p in self.previous_peppers):
                raise Unauthenticated("unknown API key")
            async with self.pool.connection() as conn:  # hashed under a previous master key: now the current
                await conn.execute("UPDATE auth.api_keys SET key_hash = %s WHERE id = %s AND key_hash = %s",
                                   (current, key_id, expected))
        if row["revoked_at"] is not None:
            raise Unauthenticated("API key revoked")
        now = datetime.now(UTC)
        if row["expires_at"] is not None and row["expires_at"] <= now:
            raise Unauthenticated("API key expired")
        if row["last_used_at"] is None or now - row["last_used_at"] > LAST_USED_RESOLUTION:
            async with self.pool.connection() as conn:
                await conn.execute("UPDATE auth.api_keys SET last_used_at = now() WHERE id = %s", (key_id,))
        return Principal(tenant_id=row["tenant_id"], key_id=key_id, scopes=tuple(row["scopes"]))
