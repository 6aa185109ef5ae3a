"""The ingest process starts and takes webhooks while PostgreSQL is down, and applies its
migrations once it is back: a restart during a database outage does not stop the edge."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
import time
from datetime import datetime, UTC
from pathlib import Path

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from services.ingest.source_feed import SourceFeed
from services.ingest.sources import Source
from switchboard.cli.embedded import free_port
from switchboard.messaging import ensure_streams
from switchboard.settings import Settings
from tests.platform_runner import base_env
from tests.sealing import BOX, MASTER_KEY

SECRET = "s" * 32


def _until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _reachable(admin_dsn: str, database: str, reachable: bool) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(reachable).lower()}')


async def test_ingest_starts_takes_webhooks_and_migrates_once_postgresql_is_back(
        tmp_path: Path, nats_server, nc, js, database_url: str, postgres_server: str) -> None:
    await ensure_streams(js, Settings.from_env({}))
    source = Source(id="src_" + "a" * 32, tenant_id="ten_1", name="shop", type="generic", config={},
                    secret=SECRET, created_at=datetime.now(UTC), revision=1)
    await SourceFeed(nc, BOX).publish(source)
    database = conninfo_to_dict(database_url)["dbname"]
    assert isinstance(database, str)
    _reachable(postgres_server, database, False)
    http_port = free_port()
    env = base_env(tmp_path / "state", SWITCHBOARD_NATS_URL=nats_server.url, SWITCHBOARD_DATABASE_URL=database_url,
                   SWITCHBOARD_HTTP_PORT=str(http_port), SWITCHBOARD_INGEST_GRPC_PORT=str(free_port()),
                   SWITCHBOARD_INGEST_METRICS_PORT=str(free_port()), SWITCHBOARD_MASTER_KEY=MASTER_KEY)
    edge = f"http://127.0.0.1:{http_port}"
    process = subprocess.Popen([sys.executable, "-m", "services.ingest"], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = _until(lambda: (r := httpx.get(f"{edge}/readyz", timeout=5)).status_code == 200 and r.json())
        assert ready["status"] == "degraded" and ready["dependencies"]["postgres"]["state"] == "down", ready
        body = b'{"type": "order.created"}'
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        accepted = httpx.post(f"{edge}/in/{source.id}", content=body, headers={"x-signature": signature}, timeout=10)
        assert accepted.status_code == 202, accepted.text
        assert (await js.stream_info("EVENTS")).state.messages == 1

        _reachable(postgres_server, database, True)
        _until(lambda: httpx.get(f"{edge}/readyz", timeout=5).json()["status"] == "ok")

        def migrated() -> bool:
            with psycopg.connect(database_url) as conn:
                row = conn.execute("SELECT to_regclass('ingest.schema_migrations') IS NOT NULL").fetchone()
                assert row is not None
                return row[0]

        _until(migrated)
        assert process.poll() is None  # never restarted
    finally:
        _reachable(postgres_server, database, True)
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "starting without PostgreSQL" in output, output[-3000:]
