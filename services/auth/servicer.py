"""AuthService over gRPC: a thin translation to and from :mod:`services.auth.keys`."""

from __future__ import annotations

from services.auth.keys import ApiKey, KeyStore, Tenant
from switchboard.rpc import servicer, timestamp
from switchboard.v1 import auth_pb2 as pb, auth_pb2_grpc as rpc


def _tenant(t: Tenant) -> pb.Tenant:
    return pb.Tenant(id=t.id, name=t.name, created_at=timestamp(t.created_at))


def _key(k: ApiKey) -> pb.ApiKey:
    return pb.ApiKey(
        id=k.id, tenant_id=k.tenant_id, name=k.name, prefix=k.prefix, scopes=k.scopes,
        created_at=timestamp(k.created_at),
    )


@servicer
class AuthServicer(rpc.AuthServiceServicer):
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    async def CreateTenant(self, request, context):
        return _tenant(await self.keys.create_tenant(request.name))

    async def GetTenant(self, request, context):
        return _tenant(await self.keys.get_tenant(request.id))

    async def ListTenants(self, request, context):
        return pb.ListTenantsResponse(tenants=[_tenant(t) for t in await self.keys.list_tenants()])

    async def CreateApiKey(self, request, context):
        issued = await self.keys.create_key(request.tenant_id, request.name, list(request.scopes))
        return pb.CreateApiKeyResponse(key=_key(issued.key), secret=issued.secret)

    async def VerifyApiKey(self, request, context):
        principal = await self.keys.verify(request.key)
        return pb.VerifyApiKeyResponse(
            tenant_id=principal.tenant_id, key_id=principal.key_id, scopes=principal.scopes
        )
