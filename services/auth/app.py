"""The auth service process."""

from __future__ import annotations

from services.auth.keys import KeyStore
from services.auth.servicer import AuthServicer
from switchboard.apikeys import Authenticator, local_keys
from switchboard.masterkey import derive_key, previous_master_keys, require_master_key
from switchboard.portal_tokens import PortalSigner
from switchboard.service import Runtime, ServiceApp
from switchboard.v1 import auth_pb2_grpc as rpc


class AuthApp(ServiceApp):
    name = "auth"
    grpc_services = ["switchboard.v1.AuthService"]
    keys: KeyStore

    def api_keys(self, runtime: Runtime) -> Authenticator:
        # Called before register(): the key store is made here, and keys are verified in-process.
        s = runtime.settings
        pepper = derive_key(require_master_key(s), "api-key-pepper")
        previous = [derive_key(key, "api-key-pepper") for key in previous_master_keys(s)]
        self.keys = KeyStore(runtime.pool, pepper, previous)
        access = s.access
        return Authenticator(local_keys(self.keys.verify), ttl_s=access.auth_cache_ttl_s,
                             stale_s=access.auth_cache_stale_s)

    async def record_audit(self, runtime: Runtime, tenant_id: str, actor: str, action: str, resource: str) -> None:
        await self.keys.record_audit(tenant_id, actor, action, resource)

    def register(self, server, runtime: Runtime) -> None:
        s = runtime.settings
        portal = PortalSigner(require_master_key(s), previous_master_keys(s))
        rpc.add_AuthServiceServicer_to_server(AuthServicer(self.keys, portal, s.edge.public_url), server)
