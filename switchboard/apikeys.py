"""API keys as every server checks them: who a bearer key speaks for, verified by AuthService and cached.

The edge (REST) and every gRPC server (:mod:`switchboard.rpc_access`) share this
one cache. A verified key is cached for ``ttl_s`` (SWITCHBOARD_AUTH_CACHE_TTL,
30 s), so the hot path makes no call per request; a revoked key therefore stops
working within ``ttl_s``. Failures are not cached, and a key AuthService refuses
is forgotten at once.

Stale-if-error: when AuthService cannot answer (it, or its PostgreSQL, is
down), a key it verified within ``stale_s`` (SWITCHBOARD_AUTH_CACHE_STALE,
600 s) is still accepted with the principal it had, so API-key holders can
keep publishing events (which needs only NATS) through a database outage.
During such an outage a revoked key can therefore work for up to ``stale_s``
after its last successful verification. A key never verified, or verified
longer ago, gets 503: never "allow", never 500.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Protocol, TypedDict, Unpack
from collections.abc import Awaitable, Callable, Iterable

from switchboard.errors import PermissionDenied, Unauthenticated, Unavailable
from switchboard.outages import platform_error
from switchboard.rpc import ServiceClients, call
from switchboard.v1 import auth_pb2, auth_pb2_grpc

__all__ = ["Principal", "Authenticator", "KeyResolver", "AuthServiceKeys", "bearer_credential", "record_audit"]

logger = logging.getLogger(__name__)

# How long after AuthService failed to answer a key with a usable stale entry is
# accepted on it without asking again (a hung AuthService costs the RPC timeout each time).
UNAVAILABLE_RECHECK_S = 5.0


@dataclass(frozen=True)
class Principal:
    """Who a verified key speaks for."""

    tenant_id: str
    key_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if "admin" not in self.scopes and scope not in self.scopes:
            raise PermissionDenied(f"this key lacks the {scope!r} scope")


# Resolves a presented key to its principal, or raises Unauthenticated (refused) or Unavailable.
KeyResolver = Callable[[str], Awaitable[Principal]]


def bearer_credential(header: str | None) -> str:
    """The credential of an ``Authorization: Bearer <credential>`` header (or gRPC metadata)."""
    if not header:
        raise Unauthenticated("missing Authorization: Bearer <key> header")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("Authorization must be 'Bearer <key>'")
    return credential.strip()


class AuthServiceKeys:
    """Resolves keys with AuthService's VerifyApiKey (every process but AuthService's own)."""

    def __init__(self, clients: ServiceClients) -> None:
        self.clients = clients

    async def __call__(self, key: str) -> Principal:
        stub = self.clients.stub("auth", auth_pb2_grpc.AuthServiceStub)
        reply = await call(stub.VerifyApiKey(auth_pb2.VerifyApiKeyRequest(key=key), timeout=self.clients.timeout))
        return Principal(reply.tenant_id, reply.key_id, frozenset(reply.scopes))


async def record_audit(clients: ServiceClients, tenant_id: str, actor: str, action: str, resource: str) -> None:
    """Write one entry of AuthService's audit log (a mutation an API key made, over REST or gRPC)."""
    stub = clients.stub("auth", auth_pb2_grpc.AuthServiceStub)
    await call(stub.RecordAudit(auth_pb2.RecordAuditRequest(tenant_id=tenant_id, actor=actor, action=action,
                                                            resource=resource), timeout=clients.timeout))


class VerifiedKey(Protocol):
    """What a key store's ``verify`` answers for a key it accepts."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def key_id(self) -> str: ...
    @property
    def scopes(self) -> Iterable[str]: ...


def local_keys(verify: Callable[[str], Awaitable[VerifiedKey]]) -> KeyResolver:
    """Resolves keys in-process (AuthService's own server): ``verify`` is the key store's."""

    async def resolve(key: str) -> Principal:
        try:
            found = await verify(key)
        except Exception as exc:
            mapped = platform_error(exc)  # its database down: Unavailable, as over gRPC
            if mapped is None:
                raise
            raise mapped from None
        return Principal(found.tenant_id, found.key_id, frozenset(found.scopes))

    return resolve


class AuthenticatorOptions(TypedDict, total=False):
    """The options of :class:`Authenticator` beside its resolver."""

    ttl_s: float
    max_entries: int
    stale_s: float


class Authenticator:
    def __init__(self, resolve: KeyResolver, ttl_s: float = 30.0, max_entries: int = 10_000,
                 stale_s: float = 600.0) -> None:
        self.resolve = resolve
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self.max_entries = max_entries
        # Keyed by a digest so raw keys are not kept as dictionary keys: (verified at, principal).
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        # Set while keys are accepted on their stale entries: logged once per outage.
        self._serving_stale = False
        # After AuthService failed to answer, keys with a stale entry are not sent to it until then.
        self._unavailable_until = 0.0

    @classmethod
    def over_grpc(cls, clients: ServiceClients, **options: Unpack[AuthenticatorOptions]) -> Authenticator:
        return cls(AuthServiceKeys(clients), **options)

    async def bearer(self, header: str | None) -> Principal:
        """The principal of an ``Authorization`` header's key."""
        return await self.verify(bearer_credential(header))

    async def verify(self, key: str) -> Principal:
        digest = hashlib.sha256(key.encode()).digest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        # The principal of an entry still within the stale bound (None: there is none).
        usable_stale = cached[1] if cached is not None and now - cached[0] < self.stale_s else None
        if usable_stale is not None and now < self._unavailable_until:
            # AuthService just failed to answer: do not make every request wait for it again.
            return usable_stale
        try:
            principal = await self.resolve(key)
        except Unavailable:
            self._unavailable_until = time.monotonic() + UNAVAILABLE_RECHECK_S
            # Only an answer AuthService could not give falls back on the stale entry; a refusal
            # (Unauthenticated, PermissionDenied) is never overridden.
            if usable_stale is not None:
                if not self._serving_stale:
                    logger.warning("AuthService unavailable; accepting keys it verified within the stale bound",
                                   extra={"stale_s": self.stale_s})
                    self._serving_stale = True
                return usable_stale
            raise
        except Exception:
            self._cache.pop(digest, None)
            raise
        if self._serving_stale:
            logger.info("AuthService answers again")
            self._serving_stale = False
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        self._cache[digest] = (time.monotonic(), principal)
        return principal
