"""AuthService over gRPC: a thin translation to and from :mod:`services.auth.keys`.

Every mutation through this API is written to the audit log, with the
``actor`` the caller names (the edge passes the key id; the CLI says "cli").
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, UTC

from services.auth.keys import ApiKey, AuditEntry, IssuedKey, KeyStore, Tenant
from switchboard.portal_tokens import DEFAULT_TTL_S, PortalSession, PortalSigner, check_application_id, check_origins
from switchboard.rpc import forwarded_url, servicer, timestamp
from switchboard.v1 import auth_pb2 as pb, auth_pb2_grpc as rpc


def _tenant(t: Tenant) -> pb.Tenant:
    return pb.Tenant(id=t.id, name=t.name, created_at=timestamp(t.created_at))


def _key(k: ApiKey) -> pb.ApiKey:
    return pb.ApiKey(
        id=k.id, tenant_id=k.tenant_id, name=k.name, prefix=k.prefix, scopes=k.scopes,
        created_at=timestamp(k.created_at), last_used_at=timestamp(k.last_used_at),
        expires_at=timestamp(k.expires_at), revoked_at=timestamp(k.revoked_at),
    )


def _issued(issued: IssuedKey) -> pb.CreateApiKeyResponse:
    return pb.CreateApiKeyResponse(key=_key(issued.key), secret=issued.secret)


def _entry(e: AuditEntry) -> pb.AuditEntry:
    return pb.AuditEntry(id=e.id, tenant_id=e.tenant_id, actor=e.actor, action=e.action, resource=e.resource,
                         at=timestamp(e.at))


def _seconds(value: int) -> timedelta | None:
    return timedelta(seconds=value) if value else None


@servicer
class AuthServicer(rpc.AuthServiceServicer):
    def __init__(self, keys: KeyStore, portal: PortalSigner, public_url: str = "") -> None:
        """``public_url``: where users reach the edge (SWITCHBOARD_PUBLIC_URL); unset: where the REST caller
        did."""
        self.keys = keys
        self.portal = portal
        self.public_url = public_url.rstrip("/")

    async def _audit(self, tenant_id: str, actor: str, action: str, resource: str) -> None:
        await self.keys.record_audit(tenant_id, actor or "grpc", action, resource)

    async def CreateTenant(self, request, context):
        tenant = await self.keys.create_tenant(request.name)
        await self._audit(tenant.id, request.actor, "tenant.create", tenant.id)
        return _tenant(tenant)

    async def GetTenant(self, request, context):
        return _tenant(await self.keys.get_tenant(request.id))

    async def ListTenants(self, request, context):
        return pb.ListTenantsResponse(tenants=[_tenant(t) for t in await self.keys.list_tenants()])

    async def CreateApiKey(self, request, context):
        issued = await self.keys.create_key(request.tenant_id, request.name, list(request.scopes),
                                            _seconds(request.expires_in_seconds))
        await self._audit(request.tenant_id, request.actor, "key.create", issued.key.id)
        return _issued(issued)

    async def ListApiKeys(self, request, context):
        return pb.ListApiKeysResponse(keys=[_key(k) for k in await self.keys.list_keys(request.tenant_id)])

    async def RevokeApiKey(self, request, context):
        key = await self.keys.revoke_key(request.tenant_id, request.key_id)
        await self._audit(request.tenant_id, request.actor, "key.revoke", key.id)
        return _key(key)

    async def RotateApiKey(self, request, context):
        issued = await self.keys.rotate_key(request.tenant_id, request.key_id, _seconds(request.grace_seconds))
        await self._audit(request.tenant_id, request.actor, "key.rotate", f"{request.key_id}->{issued.key.id}")
        return _issued(issued)

    async def CreatePortalSession(self, request, context):
        ttl = request.ttl_seconds if request.HasField("ttl_seconds") else DEFAULT_TTL_S
        session = PortalSession(request.tenant_id, check_application_id(request.application_id),
                                time.time() + ttl, check_origins(list(request.allowed_origins)))
        token = self.portal.issue(session)
        base = self.public_url or forwarded_url(context)
        return pb.PortalSession(
            application_id=session.application_id, token=token,
            url=f"{base}/portal?frame={self.portal.frame_grant(session)}#{token}",
            expires_at=timestamp(datetime.fromtimestamp(session.expires_at, UTC)),
            allowed_origins=session.allowed_origins)

    async def VerifyApiKey(self, request, context):
        principal = await self.keys.verify(request.key)
        return pb.VerifyApiKeyResponse(
            tenant_id=principal.tenant_id, key_id=principal.key_id, scopes=principal.scopes
        )

    async def RecordAudit(self, request, context):
        return _entry(await self.keys.record_audit(request.tenant_id, request.actor, request.action,
                                                   request.resource))

    async def ListAudit(self, request, context):
        entries = await self.keys.list_audit(request.tenant_id, request.limit, request.before_id or None)
        return pb.ListAuditResponse(entries=[_entry(e) for e in entries])
