"""Retention of router.events against real PostgreSQL: old events go in bounded batches, per tenant,
except those a queued or running replay still needs."""

import asyncio
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest

from services.router.replay import ReplayRequest, ReplayStore
from services.router.retention import EventPruner
from services.router.event_store import EventStore
from switchboard.database import apply_migrations
from switchboard.errors import NotFound
from switchboard.events import Event
from switchboard.ids import derived_id
from switchboard.settings import Settings

MIGRATIONS = Path(__file__).parents[3] / "services/router/migrations"
NOW = datetime.now(UTC)


@pytest.fixture
async def events(pool) -> EventStore:
    await apply_migrations(pool, "router", MIGRATIONS)
    return EventStore(pool)


async def store_days_ago(events: EventStore, tenant: str, days: list[float]) -> list[str]:
    ids = []
    for n, d in enumerate(days):
        event_id = derived_id("evt", tenant, str(n))
        await events.store(Event(id=event_id, tenant_id=tenant, source_id="s1", type="order.created",
                                 received_at=(NOW - timedelta(days=d)).timestamp(), payload={"n": n}))
        ids.append(event_id)
    return ids


async def left(events: EventStore) -> dict[str, int]:
    async with events.pool.connection() as conn:
        cur = await conn.execute("SELECT tenant_id, count(*) AS n FROM router.events GROUP BY tenant_id")
        return {row["tenant_id"]: row["n"] for row in await cur.fetchall()}


async def test_events_older_than_the_retention_are_pruned_for_every_tenant(events: EventStore) -> None:
    await store_days_ago(events, "t1", [40, 35, 31, 30.5, 29, 1, 0])
    await store_days_ago(events, "t2", [100, 90, 2])
    await store_days_ago(events, "t3", [5])
    pruner = EventPruner(events.pool, retention_days=30, batch_size=2, now=lambda: NOW)
    assert await pruner.prune() == 6
    assert await left(events) == {"t1": 3, "t2": 1, "t3": 1}
    assert await pruner.prune() == 0


async def test_a_running_replay_keeps_the_events_of_its_range(events: EventStore) -> None:
    ids = await store_days_ago(events, "t1", [45, 40, 35, 1])
    await store_days_ago(events, "t2", [45])
    replays = ReplayStore(events.pool)
    replay = await replays.create("t1", ReplayRequest(since=NOW - timedelta(days=42), until=NOW))
    assert replay.total == 3
    pruner = EventPruner(events.pool, retention_days=30, now=lambda: NOW)
    # Only what is older than the replay's start goes; another tenant's events are not held.
    assert await pruner.prune() == 2
    assert await left(events) == {"t1": 3}
    with pytest.raises(NotFound):
        await events.get("t1", ids[0])
    # Once the replay is over, the rest of the old events go.
    await replays.cancel("t1", replay.id)
    assert await pruner.prune() == 2
    assert await left(events) == {"t1": 1}
    assert (await events.get("t1", ids[3])).event.payload == {"n": 3}


async def test_the_pruning_job_runs_until_stopped(events: EventStore) -> None:
    await store_days_ago(events, "t1", [60])
    stopping = asyncio.Event()
    task = asyncio.create_task(EventPruner(events.pool, retention_days=30).run(0.05, stopping))
    for _ in range(100):
        if not await left(events):
            break
        await asyncio.sleep(0.05)
    stopping.set()
    await asyncio.wait_for(task, 5)
    assert await left(events) == {}


def test_retention_of_events_and_deliveries_is_configured_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert (defaults.router.retention_days, defaults.delivery.retention_days) == (30, 30)
    settings = Settings.from_env({"SWITCHBOARD_RETENTION_EVENTS_DAYS": "7",
                                  "SWITCHBOARD_RETENTION_DELIVERIES_DAYS": "14"})
    again = Settings.from_env(settings.as_env())
    assert (again.router.retention_days, again.delivery.retention_days) == (7, 14)


async def test_drafted_replies_past_retention_go_but_held_ones_wait_for_a_person(events: EventStore) -> None:
    from services.router.retention import ReplyPruner

    async with events.pool.connection() as conn:
        for n, (days, status) in enumerate([(40, "sent"), (40, "held"), (40, "rejected"), (1, "sent")]):
            await conn.execute(
                """INSERT INTO router.replies (id, tenant_id, event_id, conversation_key, route_id, endpoint_ids,
                                               status, created_at)
                   VALUES (%s, 't1', %s, 'c1', 'rt_1', '{}', %s, %s)""",
                (derived_id("rpl", str(n)), derived_id("evt", str(n)), status, NOW - timedelta(days=days)))
    assert await ReplyPruner(events.pool, retention_days=30, now=lambda: NOW).prune() == 2
    async with events.pool.connection() as conn:
        cur = await conn.execute("SELECT status FROM router.replies ORDER BY status")
        assert [row["status"] for row in await cur.fetchall()] == ["held", "sent"]


async def test_an_event_whose_reply_waits_for_review_is_kept_past_retention(events: EventStore) -> None:
    ids = await store_days_ago(events, "t1", [40, 40])
    async with events.pool.connection() as conn:
        for n, status in enumerate(("held", "sent")):
            await conn.execute(
                """INSERT INTO router.replies (id, tenant_id, event_id, conversation_key, route_id, endpoint_ids,
                                               status)
                   VALUES (%s, 't1', %s, 'c1', 'rt_1', '{}', %s)""", (derived_id("rpl", ids[n]), ids[n], status))
    assert await EventPruner(events.pool, retention_days=30, now=lambda: NOW).prune() == 1
    assert (await events.get("t1", ids[0])).event.id == ids[0]
    with pytest.raises(NotFound):
        await events.get("t1", ids[1])
