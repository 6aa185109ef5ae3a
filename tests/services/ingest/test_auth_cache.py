"""The edge's API-key cache against a real AuthService (its servicer over PostgreSQL, on a loopback
port): stale-if-error keeps recently verified keys working while AuthService or its database is
down, within SWITCHBOARD_AUTH_CACHE_STALE, and never admits a key AuthService did not accept."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from services.auth.keys import KeyStore
from services.auth.servicer import AuthServicer
from switchboard.apikeys import Authenticator, AuthServiceKeys, Principal
from switchboard.database import apply_migrations, open_pool
from switchboard.errors import Unauthenticated, Unavailable
from switchboard.rpc import GrpcServer, ServiceClients
from switchboard.settings import Settings
from switchboard.v1 import auth_pb2_grpc
from switchboard.portal_tokens import PortalSigner
from tests.credentials import SERVICE_TOKEN, service_only

MIGRATIONS = Path(__file__).parents[3] / "services/auth/migrations"


class AuthService:
    """AuthService as its process runs it: the servicer over a KeyStore, on a loopback port."""

    def __init__(self, keys: KeyStore, database_url: str) -> None:
        self.keys = keys
        self.database_url = database_url
        self.server = GrpcServer("auth", ["switchboard.v1.AuthService"], service_only())
        auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(keys, PortalSigner("test")), self.server.server)

    def kill_database(self) -> None:
        """PostgreSQL gone for AuthService: its sessions are ended and no new one is allowed."""
        name = conninfo_to_dict(self.database_url)["dbname"]
        with psycopg.connect(make_conninfo(self.database_url, dbname="postgres"), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


@pytest.fixture
async def auth(pool, database_url: str) -> AsyncIterator[AuthService]:
    await apply_migrations(pool, "auth", MIGRATIONS)
    # Its own pool with a short wait, as a dead database should answer quickly.
    keys_pool = await open_pool(database_url, max_size=2, timeout=1.0)
    service = AuthService(KeyStore(keys_pool, pepper=b"p" * 32), database_url)
    await service.server.start("127.0.0.1", 0)
    try:
        yield service
    finally:
        await service.server.stop(0)
        await keys_pool.close()


@pytest.fixture
async def clients(auth: AuthService) -> AsyncIterator[ServiceClients]:
    connected = ServiceClients(Settings(service_token=SERVICE_TOKEN, rpc_timeout_s=3.0,
                                        grpc_targets={"auth": f"127.0.0.1:{auth.server.port}"}))
    try:
        yield connected
    finally:
        await connected.close()


async def issue_key(auth: AuthService) -> tuple[str, Principal]:
    tenant = await auth.keys.create_tenant("acme")
    issued = await auth.keys.create_key(tenant.id, "ci", ["events:publish"])
    return issued.secret, Principal(tenant.id, issued.key.id, frozenset({"events:publish"}))


async def test_a_key_verified_recently_is_accepted_while_the_database_is_down(auth, clients) -> None:
    key, principal = await issue_key(auth)
    authenticator = Authenticator.over_grpc(clients, ttl_s=0.05, stale_s=60.0)
    assert await authenticator.verify(key) == principal
    await asyncio.sleep(0.1)  # past the TTL: the next use asks AuthService again

    auth.kill_database()
    assert await authenticator.verify(key) == principal
    assert await authenticator.verify(key) == principal


async def test_a_key_verified_recently_is_accepted_while_auth_service_is_gone(auth, clients) -> None:
    key, principal = await issue_key(auth)
    authenticator = Authenticator.over_grpc(clients, ttl_s=0.05, stale_s=60.0)
    assert await authenticator.verify(key) == principal
    await asyncio.sleep(0.1)

    await auth.server.stop(0)
    assert await authenticator.verify(key) == principal


async def test_beyond_the_stale_bound_the_answer_is_unavailable(auth, clients) -> None:
    key, principal = await issue_key(auth)
    authenticator = Authenticator.over_grpc(clients, ttl_s=0.05, stale_s=0.3)
    assert await authenticator.verify(key) == principal

    auth.kill_database()
    await asyncio.sleep(0.4)
    with pytest.raises(Unavailable):
        await authenticator.verify(key)


async def test_a_key_never_verified_is_not_accepted_while_auth_service_is_down(auth, clients) -> None:
    key, _ = await issue_key(auth)
    other, principal = await issue_key(auth)
    authenticator = Authenticator.over_grpc(clients, ttl_s=0.05, stale_s=60.0)
    assert await authenticator.verify(other) == principal

    auth.kill_database()
    with pytest.raises(Unavailable):
        await authenticator.verify(key)
    with pytest.raises(Unavailable):
        await authenticator.verify(key[:-1] + ("a" if key[-1] != "a" else "b"))


async def test_a_key_auth_service_refused_is_never_served_stale(auth, clients) -> None:
    key, principal = await issue_key(auth)
    authenticator = Authenticator.over_grpc(clients, ttl_s=0.05, stale_s=60.0)
    assert await authenticator.verify(key) == principal
    await auth.keys.revoke_key(principal.tenant_id, principal.key_id)
    await asyncio.sleep(0.1)
    with pytest.raises(Unauthenticated, match="revoked"):
        await authenticator.verify(key)

    auth.kill_database()
    with pytest.raises(Unavailable):
        await authenticator.verify(key)


def test_the_stale_bound_is_a_setting() -> None:
    assert Settings.from_env({}).access.auth_cache_stale_s == 600.0
    settings = Settings.from_env({"SWITCHBOARD_AUTH_CACHE_STALE": "120"})
    assert settings.access.auth_cache_stale_s == 120.0
    assert Settings.from_env(settings.as_env()).access.auth_cache_stale_s == 120.0


async def test_a_hung_auth_service_costs_one_timeout_not_one_per_request(auth, clients) -> None:
    """AuthService that accepts connections and answers nothing: after one call ran into its
    deadline, keys with a usable stale entry are accepted at once for a few seconds."""
    key, principal = await issue_key(auth)
    authenticator = Authenticator.over_grpc(clients, ttl_s=0.05, stale_s=60.0)
    assert await authenticator.verify(key) == principal
    await asyncio.sleep(0.1)

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    hung = ServiceClients(Settings(service_token=SERVICE_TOKEN, rpc_timeout_s=1.0,
                                   grpc_targets={"auth": f"127.0.0.1:{silent.getsockname()[1]}"}))
    assert isinstance(authenticator.resolve, AuthServiceKeys)
    authenticator.resolve.clients = hung
    try:
        assert await authenticator.verify(key) == principal  # after the deadline
        started = time.monotonic()
        for _ in range(5):
            assert await authenticator.verify(key) == principal
        assert time.monotonic() - started < 0.5
    finally:
        await hung.close()
        silent.close()
