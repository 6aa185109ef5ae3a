"""The auth service process."""

from __future__ import annotations

from pathlib import Path

from services.auth.keys import KeyStore
from services.auth.servicer import AuthServicer
from switchboard.masterkey import derive_key, require_master_key
from switchboard.service import Runtime, ServiceApp
from switchboard.v1 import auth_pb2 as pb, auth_pb2_grpc as rpc


class AuthApp(ServiceApp):
    name = "auth"
    schema = "auth"
    migrations = Path(__file__).parent / "migrations"
    grpc_services = [pb.DESCRIPTOR.services_by_name["AuthService"].full_name]

    def register(self, server, runtime: Runtime) -> None:
        pepper = derive_key(require_master_key(runtime.settings), "api-key-pepper")
        rpc.add_AuthServiceServicer_to_server(AuthServicer(KeyStore(runtime.pool, pepper)), server)
