"""Replays against real PostgreSQL and JetStream: counts, filters, cancellation, and a
run that dies mid-way and is resumed by another runner without a duplicate delivery."""

import asyncio
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest

from services.router.consumer import REPLAY_ROUTE, publish_deliveries
from services.router.dispatch import Dispatcher, Outgoing
from services.router.replay import ReplayRequest, ReplayRunner, ReplayStore
from services.router.event_store import EventStore
from services.router.route_store import RouteStore
from services.router.routing import parse_route_spec
from services.router.replies import ReplyStore
from services.router.templates import TemplateStore
from switchboard.database import apply_migrations
from switchboard.errors import Conflict, InvalidRequest, NotFound
from switchboard.events import Event
from switchboard.messaging import decode, ensure_streams
from switchboard.settings import Settings
from tests.services.router.endpoint_types import NO_FILTERS
from tests.services.router.no_ai import NO_AI
from switchboard.bus import Bus

MIGRATIONS = Path(__file__).parents[3] / "services/router/migrations"
NOW = datetime.now(UTC)


@pytest.fixture
async def stores(pool, js):
    await apply_migrations(pool, "router", MIGRATIONS)
    await ensure_streams(js, Settings.from_env({}))
    events = EventStore(pool)
    for n in range(7):
        await events.store(Event(id=f"evt_{n:02}", tenant_id="t1", source_id="s1" if n < 6 else "s2",
                                 type="order.created" if n % 2 == 0 else "invoice.paid",
                                 received_at=(NOW - timedelta(minutes=10 - n)).timestamp(), payload={"n": n}))
    await events.store(Event(id="evt_other", tenant_id="t2", source_id="s1", type="order.created",
                             received_at=NOW.timestamp() - 60, payload={}))
    return ReplayStore(pool), RouteStore(pool)


def request(**kw) -> ReplayRequest:
    return ReplayRequest(since=NOW - timedelta(hours=1), until=NOW + timedelta(seconds=1), **kw)


async def test_totals_count_the_tenants_events_that_pass_the_filters(stores) -> None:
    replays, _ = stores
    assert (await replays.create("t1", request())).total == 7
    assert (await replays.create("t1", request(event_types=("order.*",)))).total == 4
    assert (await replays.create("t1", request(source_id="s2"))).total == 1
    assert (await replays.create("t2", request())).total == 1


@pytest.mark.parametrize("since,until,message", [
    (NOW, NOW - timedelta(seconds=1), "since must be before until"),
    (NOW - timedelta(days=100), NOW, "at most 90 days"),
    (NOW + timedelta(hours=1), NOW + timedelta(hours=2), "in the future"),
])
async def test_bad_ranges_are_refused(stores, since, until, message) -> None:
    replays, _ = stores
    with pytest.raises(InvalidRequest, match=message):
        await replays.create("t1", ReplayRequest(since=since, until=until))


async def test_a_run_that_dies_is_resumed_after_its_cursor_and_delivers_each_event_once(stores, js) -> None:
    replays, routes = stores
    replay = await replays.create("t1", request(endpoint_id="ep_1"))
    published: list[str] = []

    async def flaky(event, endpoint_id, replay_id):
        if len(published) == 3:
            raise ConnectionError("NATS went away")
        await publish_deliveries(Bus(js, 5.0), event, [Outgoing(REPLAY_ROUTE, endpoint_id, event.payload, None)],
                                 replay_id)
        published.append(event.id)
        return 1

    stopping = asyncio.Event()
    first = ReplayRunner(replays, flaky, batch_size=2, lease=timedelta(seconds=30))
    await first.run_one(await replays.claim(first.lease), stopping)
    half = await replays.get("t1", replay.id)
    assert half.status == "running" and half.done == 2  # the first batch; the second died part-way
    assert await replays.claim(first.lease) is None  # still leased

    # The lease lapses (as 30 s after a crash); another runner takes over.
    async with replays.pool.connection() as conn:
        await conn.execute("UPDATE router.replays SET lease_until = now() - interval '1 second' WHERE id = %s",
                           (replay.id,))

    async def steady(event, endpoint_id, replay_id):
        await publish_deliveries(Bus(js, 5.0), event, [Outgoing(REPLAY_ROUTE, endpoint_id, event.payload, None)],
                                 replay_id)
        published.append(event.id)
        return 1

    second = ReplayRunner(replays, steady, batch_size=2)
    await second.run_one(await replays.claim(second.lease), stopping)
    finished = await replays.get("t1", replay.id)
    assert (finished.status, finished.done, finished.total, finished.deliveries) == ("succeeded", 7, 7, 7)
    # evt_02 was published, then the batch died: published again on resume, and
    # JetStream kept one copy (its id is the message id).
    assert published.count("evt_02") == 2
    sub = await js.pull_subscribe("deliveries.t1.ep_1", durable="replay-check", stream="DELIVERIES")
    messages = await sub.fetch(20, timeout=2)
    bodies = [decode(m.data) for m in messages]
    assert sorted(b["event_id"] for b in bodies) == [f"evt_{n:02}" for n in range(7)]
    assert {b["replay_id"] for b in bodies} == {replay.id}


async def test_a_replay_through_routes_follows_the_current_routes_and_can_be_cancelled(stores, js) -> None:
    replays, routes = stores
    await routes.create("t1", parse_route_spec({"name": "orders", "event_types": ["order.*"],
                                                "endpoint_ids": ["ep_a", "ep_b"]}))
    sent: list[tuple[str, str]] = []
    # no route needs the AI
    dispatcher = Dispatcher(routes, TemplateStore(routes.pool), ai=NO_AI, replies=ReplyStore(routes.pool),
                            endpoint_types=NO_FILTERS)

    async def record(event, endpoint_id, replay_id):
        outgoing = (await dispatcher.dispatch(event)).outgoing
        sent.extend((event.id, o.endpoint_id) for o in outgoing)
        return len(outgoing)

    runner = ReplayRunner(replays, record, batch_size=100)
    replay = await replays.create("t1", request())
    await runner.run_one(await replays.claim(runner.lease), asyncio.Event())
    done = await replays.get("t1", replay.id)
    assert (done.done, done.deliveries) == (7, 8)  # 4 order events, each to two endpoints
    assert {e for e, _ in sent} == {"evt_00", "evt_02", "evt_04", "evt_06"}

    queued = await replays.create("t1", request())
    cancelled = await replays.cancel("t1", queued.id)
    assert cancelled.status == "cancelled" and await replays.claim(runner.lease) is None
    with pytest.raises(Conflict):
        await replays.cancel("t1", queued.id)
    with pytest.raises(NotFound):
        await replays.get("t2", queued.id)
