"""The auth service process."""

from __future__ import annotations

from services.auth.keys import KeyStore
from services.auth.servicer import AuthServicer
from switchboard.masterkey import derive_key, previous_master_keys, require_master_key
from switchboard.service import Runtime, ServiceApp
from switchboard.v1 import auth_pb2_grpc as rpc


class AuthApp(ServiceApp):
    name = "auth"
    grpc_services = ["switchboard.v1.AuthService"]

    def register(self, server, runtime: Runtime) -> None:
        s = runtime.settings
        pepper = derive_key(require_master_key(s), "api-key-pepper")
        previous = [derive_key(key, "api-key-pepper") for key in previous_master_keys(s)]
        rpc.add_AuthServiceServicer_to_server(AuthServicer(KeyStore(runtime.pool, pepper, previous)), server)
