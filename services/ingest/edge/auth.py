"""Bearer API keys at the edge, verified by AuthService and cached briefly.

A verified key is cached for ``ttl_s`` (default 30 s), so the hot path makes no
gRPC call per request; a revoked key therefore stops working within ``ttl_s``.
Failures are not cached. When AuthService cannot be reached, a key not in the
cache gets 503: never "allow", never 500.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from starlette.requests import Request

from switchboard.errors import PermissionDenied, Unauthenticated
from switchboard.rpc import ServiceClients, call
from switchboard.v1 import auth_pb2, auth_pb2_grpc

__all__ = ["Principal", "Authenticator"]


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    key_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if "admin" not in self.scopes and scope not in self.scopes:
            raise PermissionDenied(f"this key lacks the {scope!r} scope")


class Authenticator:
    def __init__(self, clients: ServiceClients, ttl_s: float = 30.0, max_entries: int = 10_000) -> None:
        self.clients = clients
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        # Keyed by a digest so raw keys are not kept as dictionary keys.
        self._cache: dict[bytes, tuple[float, Principal]] = {}

    async def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if not header:
            raise Unauthenticated("missing Authorization: Bearer <key> header")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("Authorization must be 'Bearer <key>'")
        return await self.verify(key.strip())

    async def verify(self, key: str) -> Principal:
        digest = hashlib.sha256(key.encode()).digest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        stub = self.clients.stub("auth", auth_pb2_grpc.AuthServiceStub)
        reply = await call(stub.VerifyApiKey(auth_pb2.VerifyApiKeyRequest(key=key), timeout=self.clients.timeout))
        principal = Principal(reply.tenant_id, reply.key_id, frozenset(reply.scopes))
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        self._cache[digest] = (now + self.ttl_s, principal)
        return principal
