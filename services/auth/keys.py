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
from datetime import datetime, timezone

from psycopg_pool import AsyncConnectionPool

from switchboard.errors import InvalidRequest, NotFound, Unauthenticated
from switchboard.ids import new_id

__all__ = ["SCOPES", "Tenant", "ApiKey", "IssuedKey", "Principal", "KeyStore", "parse_key"]

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
    def __init__(self, pool: AsyncConnectionPool, pepper: bytes) -> None:
        self.pool = pool
        self.pepper = pepper

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

    async def create_key(self, tenant_id: str, name: str, scopes: list[str]) -> IssuedKey:
        if not scopes:
            raise InvalidRequest("a key needs at least one scope")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise InvalidRequest(f"unknown scopes: {', '.join(unknown)}; known: {', '.join(SCOPES)}")
        await self.get_tenant(tenant_id)
        key_id = _random(12)
        secret = f"{KEY_PREFIX}{key_id}_{_random(40)}"
        prefix = f"{KEY_PREFIX}{key_id}"
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """INSERT INTO auth.api_keys (id, tenant_id, name, prefix, key_hash, scopes)
                   VALUES (%s, %s, %s, %s, %s, %s) RETURNING created_at""",
                (key_id, tenant_id, name or "key", prefix, self._hash(secret), sorted(set(scopes))),
            )
            created_at = (await cur.fetchone())["created_at"]
        key = ApiKey(key_id, tenant_id, name or "key", prefix, tuple(sorted(set(scopes))), created_at)
        return IssuedKey(key=key, secret=secret)

    async def verify(self, presented: str) -> Principal:
        key_id = parse_key(presented)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT tenant_id, key_hash, scopes, expires_at, revoked_at FROM auth.api_keys WHERE id = %s",
                (key_id,),
            )
            row = await cur.fetchone()
        # Hash even when the id is unknown so both paths take the same time.
        expected = row["key_hash"] if row else b"\0" * 32
        if not hmac.compare_digest(self._hash(presented), bytes(expected)) or row is None:
            raise Unauthenticated("unknown API key")
        if row["revoked_at"] is not None:
            raise Unauthenticated("API key revoked")
        if row["expires_at"] is not None and row["expires_at"] <= datetime.now(timezone.utc):
            raise Unauthenticated("API key expired")
        return Principal(tenant_id=row["tenant_id"], key_id=key_id, scopes=tuple(row["scopes"]))
