"""Shared fixtures: real PostgreSQL and real NATS JetStream.

With SWITCHBOARD_DATABASE_URL / SWITCHBOARD_NATS_URL unset (as in CI), the
suite starts its own servers through the same embedded code `switchboard up`
uses. Each test gets a database of its own; tests that need a private
JetStream get a NATS server of their own (it starts in well under a second).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from switchboard.database import open_pool
from switchboard.cli.embedded import EmbeddedNats, EmbeddedPostgres
from switchboard.messaging import connect_nats


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A DSN of a PostgreSQL server tests may create databases on."""
    configured = os.environ.get("SWITCHBOARD_DATABASE_URL")
    if configured:
        yield configured
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    server.start()
    try:
        yield server.dsn("postgres")
    finally:
        server.stop()


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new, empty database on ``server``, dropped afterwards."""
    name = f"sbtest_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(server, dbname=name)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator:
    pool = await open_pool(database_url, max_size=5)
    try:
        yield pool
    finally:
        await pool.close()


@contextlib.contextmanager
def running_nats(folder: Path) -> Iterator[EmbeddedNats]:
    """A NATS server with JetStream keeping its data in ``folder``, stopped afterwards."""
    server = EmbeddedNats(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A NATS server with JetStream of this test's own."""
    with running_nats(tmp_path / "nats") as server:
        yield server


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator:
    connection = await connect_nats(nats_server.url, "tests")
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def js(nc) -> AsyncIterator:
    yield nc.jetstream()

