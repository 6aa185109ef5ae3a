"""The sources change feed against real NATS JetStream and PostgreSQL: every change through a
SourceStore reaches the KV bucket SOURCES, every edge's mirror follows the bucket, and webhooks
find their source with PostgreSQL unreachable; reconciliation heals what the bucket missed."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, UTC
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from nats.aio.client import Client as NATS
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from plugins.manager import load_registry
from gateway.app import build_edge
from switchboard.apikeys import Authenticator
from gateway.context import EdgeContext
from gateway.event_schemas import EventSchemas
from switchboard.portal_tokens import PortalSigner
from services.ingest.intake import WebhookIntake
from services.ingest.publisher import JetStreamPublisher
from services.ingest.source_feed import SourceFeed, SourceReconciler, SourceWatcher, decode_record, encode_record
from services.ingest.sources import LOOKUP_TIMEOUT_S, Source, SourceMirror, SourceStore
from switchboard.database import apply_migrations
from switchboard.cli.embedded import EmbeddedNats, free_port
from switchboard.errors import Unavailable
from switchboard.messaging import SOURCES_BUCKET, connect_nats, ensure_streams
from switchboard.ratelimit import RateLimit
from switchboard.shared_buckets import SharedTokenBuckets
from switchboard.rpc import ServiceClients
from switchboard.settings import Settings
from tests.sealing import BOX

MIGRATIONS = Path(__file__).parents[3] / "services/ingest/migrations"
SETTINGS = Settings()
REGISTRY = load_registry(env={})


@dataclass
class Edge:
    """One ingest process's view of sources: its store, mirror, watcher and NATS connection."""

    store: SourceStore
    mirror: SourceMirror
    watcher: SourceWatcher
    feed: SourceFeed
    nc: NATS


@pytest.fixture
async def unreachable_pool() -> AsyncIterator[AsyncConnectionPool]:
    """A pool whose PostgreSQL is not there (nothing listens on its port): every query fails."""
    pool = AsyncConnectionPool(f"host=127.0.0.1 port={free_port()} dbname=gone user=gone connect_timeout=1",
                               open=False, timeout=0.5, kwargs={"autocommit": True, "row_factory": dict_row})
    await pool.open(wait=False)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def edges(nats_server: EmbeddedNats, pool) -> AsyncIterator[Callable[..., Awaitable[Edge]]]:
    """Start edges on the test's NATS; each with its own connection, mirror and watcher."""
    await apply_migrations(pool, "ingest", MIGRATIONS)
    setup = await connect_nats(nats_server.url, "tests-setup")
    await ensure_streams(setup.jetstream(), SETTINGS)
    await setup.close()
    stopping = asyncio.Event()
    tasks: list[asyncio.Task] = []
    connections = []

    async def start(database=None, *, watch: bool = True) -> Edge:
        nc = await connect_nats(nats_server.url, "tests-edge")
        connections.append(nc)
        mirror = SourceMirror()
        feed = SourceFeed(nc, BOX)
        store = SourceStore(database if database is not None else pool, REGISTRY, mirror=mirror, feed=feed, box=BOX)
        watcher = SourceWatcher(nc, mirror, BOX)
        if watch:
            tasks.append(asyncio.create_task(watcher.run(stopping)))
            await eventually(lambda: mirror.loaded)
        return Edge(store, mirror, watcher, feed, nc)

    yield start
    stopping.set()
    await asyncio.gather(*tasks)
    for nc in connections:
        await nc.close()


async def eventually(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


async def bucket(edge: Edge):
    return await edge.nc.jetstream().key_value(SOURCES_BUCKET)


def test_a_mirror_keeps_the_newest_revision_and_forgets_what_a_new_read_lacks() -> None:
    created_at = datetime(2026, 1, 1, tzinfo=UTC)
    first = Source("src_" + "1" * 32, "t1", "a", "generic", {}, "s" * 32, created_at, revision=1)
    second = dataclasses.replace(first, secret="n" * 32, revision=2)
    other = dataclasses.replace(first, id="src_" + "2" * 32)
    mirror = SourceMirror()
    assert mirror.offer(second) and not mirror.offer(first) and not mirror.offer(second)
    assert not mirror.loaded

    mirror.load([first])  # a read of the bucket that is behind what this process wrote: the newer stays
    assert mirror.loaded and mirror.get(first.id) == second
    mirror.offer(other)
    mirror.load([second])  # a read without it: deleted meanwhile
    assert mirror.get(other.id) is None and len(mirror) == 1


async def test_a_source_created_on_one_edge_is_found_by_another_without_postgresql(edges, unreachable_pool) -> None:
    here = await edges()
    there = await edges(unreachable_pool)

    source = await here.store.create("t1", "shop", "generic", {}, "s" * 32, ["10.0.0.0/8"], RateLimit(5.0, 10))
    await eventually(lambda: there.mirror.get(source.id) is not None)

    found = await there.store.find(source.id)
    assert found == source
    assert found.revision == 1 and found.allowed_ips == ("10.0.0.0/8",) and found.rate_limit == RateLimit(5.0, 10)


async def test_the_record_carries_every_field_a_source_needs(edges) -> None:
    here = await edges()
    source = await here.store.create("t1", "shop", "generic", {"event_type_field": "type"}, "s" * 32)
    rotated = await here.store.rotate_secret("t1", source.id, timedelta(hours=1), "n" * 32)
    disabled = await here.store.disable("t1", source.id)

    entry = await (await bucket(here)).get(source.id)
    assert decode_record(entry.value, BOX) == disabled
    assert b"s" * 32 not in entry.value and b"n" * 32 not in entry.value  # the secrets are sealed there too
    assert decode_record(encode_record(rotated, BOX), BOX) == rotated
    assert disabled.previous_secret == "s" * 32 and disabled.revision == 3


async def test_with_postgresql_unreachable_a_known_source_is_found_and_an_unknown_one_is_unavailable(
        edges, unreachable_pool) -> None:
    here = await edges()
    source = await here.store.create("t1", "shop", "generic", {}, "s" * 32)
    there = await edges(unreachable_pool)

    assert await there.store.find(source.id) == source
    with pytest.raises(Unavailable):
        await there.store.find("src_" + "0" * 32)
    # Never a 404 for an id we could not check, nor a crash for one that cannot be ours.
    assert await there.store.find("not-a-source-id") is None


async def test_a_hung_database_makes_a_look_up_unavailable_in_two_seconds_not_the_pool_timeout(edges) -> None:
    """A stopped PostgreSQL accepts connections and answers nothing: the sender gets a prompt 503."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    host, port = silent.getsockname()
    pool = AsyncConnectionPool(f"host={host} port={port} dbname=hung user=hung", open=False, timeout=30,
                               kwargs={"autocommit": True, "row_factory": dict_row})
    await pool.open(wait=False)
    try:
        hung = await edges(pool)
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await hung.store.find("src_" + "0" * 32)
        assert time.monotonic() - started < LOOKUP_TIMEOUT_S + 1
    finally:
        await pool.close(timeout=1)
        silent.close()


async def test_before_its_snapshot_a_store_reads_postgresql_and_is_unavailable_without_it(
        edges, pool, unreachable_pool) -> None:
    here = await edges()
    source = await here.store.create("t1", "shop", "generic", {}, "s" * 32)

    cold = await edges(watch=False)
    assert not cold.mirror.loaded
    assert await cold.store.find(source.id) == source  # from PostgreSQL, as before the feed
    blind = await edges(unreachable_pool, watch=False)
    with pytest.raises(Unavailable):
        await blind.store.find(source.id)


async def test_a_rotation_a_disable_and_a_delete_reach_the_other_mirrors(edges, unreachable_pool) -> None:
    here = await edges()
    there = await edges(unreachable_pool)
    source = await here.store.create("t1", "shop", "generic", {}, "s" * 32)

    rotated = await here.store.rotate_secret("t1", source.id, timedelta(hours=1), "n" * 32)
    await eventually(lambda: there.mirror.get(source.id) == rotated)
    assert (await there.store.find(source.id)).secret == "n" * 32

    disabled = await here.store.disable("t1", source.id)
    await eventually(lambda: there.mirror.get(source.id) == disabled)
    assert (await there.store.find(source.id)).disabled_at is not None

    renamed = await here.store.update("t1", source.id, {"name": "renamed", "rate_limit": None})
    await eventually(lambda: there.mirror.get(source.id) == renamed)
    assert renamed.revision == 4

    await here.store.delete("t1", source.id)
    await eventually(lambda: there.mirror.get(source.id) is None)
    with pytest.raises(Unavailable):  # no longer known, and PostgreSQL cannot say
        await there.store.find(source.id)


async def test_an_older_revision_never_replaces_a_newer_one(edges) -> None:
    here = await edges()
    there = await edges()
    source = await here.store.create("t1", "shop", "generic", {}, "s" * 32)
    rotated = await here.store.rotate_secret("t1", source.id, timedelta(0), "n" * 32)
    await eventually(lambda: there.mirror.get(source.id) == rotated)

    # A late write of the first revision (a slow edge) lands in the bucket after the second.
    await (await bucket(here)).put(source.id, encode_record(source, BOX))
    marker = await here.store.create("t1", "marker", "generic", {}, "m" * 32)  # written after the stale copy
    await eventually(lambda: there.mirror.get(marker.id) is not None)
    assert there.mirror.get(source.id) == rotated
    assert (await there.store.find(source.id)).secret == "n" * 32

    # And the feed does not write an older revision over a newer one.
    await here.feed.publish(rotated)
    await here.feed.publish(source)
    assert decode_record((await (await bucket(here)).get(source.id)).value, BOX) == rotated


async def test_reconciliation_restores_what_the_bucket_lost_and_removes_what_postgresql_has_not(
        edges, pool) -> None:
    here = await edges()
    there = await edges()
    kv = await bucket(here)
    deleted_by_hand = await here.store.create("t1", "a", "generic", {}, "a" * 32)
    await kv.delete(deleted_by_hand.id)  # nats kv del SOURCES <id>
    # Changes whose KV write was lost (NATS was down): PostgreSQL has them, the bucket does not.
    offline = SourceStore(pool, REGISTRY, box=BOX)
    never_written = await offline.create("t1", "b", "generic", {}, "b" * 32)
    behind = await here.store.create("t1", "c", "generic", {}, "c" * 32)
    newer = await offline.rotate_secret("t1", behind.id, timedelta(0), "n" * 32)
    # A source PostgreSQL no longer has (its KV delete was lost).
    ghost = dataclasses.replace(behind, id="src_" + "e" * 32)
    await kv.put(ghost.id, encode_record(ghost, BOX))
    for edge in (here, there):
        await eventually(lambda: ghost.id in edge.watcher.bucket_view())

    # Two edges reconciling at once: each repair is written once, and neither fails.
    outcomes = [o for o in await asyncio.gather(*(SourceReconciler(edge.store, edge.feed, edge.watcher).reconcile()
                                                  for edge in (here, there))) if o is not None]

    assert len(outcomes) == 2  # each edge ran its round
    assert (sum(o.put for o in outcomes), sum(o.deleted for o in outcomes)) == (3, 1)
    for expected in (deleted_by_hand, never_written, newer):
        assert decode_record((await kv.get(expected.id)).value, BOX) == expected
        await eventually(lambda: there.mirror.get(expected.id) == expected)
    with pytest.raises(Exception, match="not found"):
        await kv.get(ghost.id)
    await eventually(lambda: there.mirror.get(ghost.id) is None)
    # Once the edges have watched the repairs, there is nothing left to do.
    for edge in (here, there):
        await eventually(lambda: edge.watcher.bucket_view()[behind.id].revision == newer.revision
                         and edge.watcher.bucket_view()[ghost.id].deleted)
    again = await SourceReconciler(there.store, there.feed, there.watcher).reconcile()
    assert again is not None and (again.put, again.deleted) == (0, 0)


async def test_reconciliation_without_postgresql_waits_for_the_next_round(edges, unreachable_pool) -> None:
    blind = await edges(unreachable_pool)
    reconciler = SourceReconciler(blind.store, blind.feed, blind.watcher, interval_s=0.05)
    assert await reconciler.reconcile() is None
    stopping = asyncio.Event()
    running = asyncio.create_task(reconciler.run(stopping))
    await asyncio.sleep(0.3)  # several rounds, none of them fatal
    assert not running.done()
    stopping.set()
    await asyncio.wait_for(running, 5)


async def test_the_watch_resumes_after_nats_restarts(edges, nats_server: EmbeddedNats, unreachable_pool) -> None:
    here = await edges()
    there = await edges(unreachable_pool)
    before = await here.store.create("t1", "before", "generic", {}, "b" * 32)
    await eventually(lambda: there.mirror.get(before.id) is not None)

    port = nats_server.port
    nats_server.stop()
    await eventually(lambda: not here.nc.is_connected and not there.nc.is_connected)
    assert await there.store.find(before.id) == before  # NATS and PostgreSQL both gone: still known
    during = await here.store.create("t1", "during", "generic", {}, "d" * 32)  # its KV write fails
    nats_server.port = port  # the same address: the clients reconnect by themselves
    nats_server.start()
    assert nats_server.port == port
    await eventually(lambda: here.nc.is_connected and there.nc.is_connected, timeout_s=30)

    after = await here.store.create("t1", "after", "generic", {}, "a" * 32)
    await eventually(lambda: there.mirror.get(after.id) is not None, timeout_s=30)
    assert await there.store.find(after.id) == after
    assert await there.store.find(before.id) == before
    # What the bucket missed meanwhile, reconciliation writes, and the watch brings.
    assert there.mirror.get(during.id) is None
    await eventually(lambda: here.watcher.synced, timeout_s=30)
    outcome = await SourceReconciler(here.store, here.feed, here.watcher).reconcile()
    assert outcome is not None and outcome.put == 1
    await eventually(lambda: there.mirror.get(during.id) == during)


async def test_a_webhook_is_accepted_with_postgresql_unreachable(edges, nats_server, unreachable_pool) -> None:
    here = await edges()
    source = await here.store.create("t1", "shop", "generic", {}, "s" * 32)
    there = await edges(unreachable_pool)
    await eventually(lambda: there.mirror.get(source.id) is not None)
    settings = Settings()
    publisher = JetStreamPublisher(there.nc, 5.0, settings.max_message_bytes)
    clients = ServiceClients(settings)
    edge = EdgeContext(
        settings=settings,
        intake=WebhookIntake(there.store, REGISTRY, publisher, RateLimit(100.0, 100)),
        database=there.store.pool, authenticator=Authenticator.over_grpc(clients), clients=clients, nc=there.nc,
        key_buckets=SharedTokenBuckets(None, "key"), key_rate=RateLimit(10.0, 10), trusted_proxies=(),
        event_schemas=EventSchemas(clients),
        portal=PortalSigner("test-master-key"),
    )
    body = b'{"type": "order.created"}'
    signature = hmac.new(b"s" * 32, body, hashlib.sha256).hexdigest()
    transport = httpx.ASGITransport(app=build_edge(edge))
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
        accepted = await client.post(f"/in/{source.id}", content=body,
                                     headers={"content-type": "application/json", "x-signature": signature})
        unknown = await client.post(f"/in/src_{'0' * 32}", content=body,
                                    headers={"content-type": "application/json", "x-signature": signature})
    await clients.close()

    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["event_id"].startswith("evt_")
    assert unknown.status_code == 503
    info = await there.nc.jetstream().stream_info("EVENTS", subjects_filter=f"events.t1.{source.id}")
    assert sum((info.state.subjects or {}).values()) == 1
