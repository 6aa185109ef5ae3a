"""Retention of the delivery log against real PostgreSQL: settled deliveries older than the retention
go with their attempts, in bounded batches, for every tenant; pending ones never go."""

import asyncio
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest

from services.delivery.retention import DeliveryPruner
from switchboard.database import apply_migrations

MIGRATIONS = Path(__file__).parents[3] / "services/delivery/migrations"
NOW = datetime.now(UTC)


@pytest.fixture
async def pool_with_log(pool):
    await apply_migrations(pool, "delivery", MIGRATIONS)
    async with pool.connection() as conn:
        for tenant in ("t1", "t2"):
            await conn.execute(
                """INSERT INTO delivery.endpoints (id, tenant_id, url, destination, secret)
                   VALUES (%s, %s, 'https://example.com/hook', 'webhook', 'whsec_x')""", (f"ep_{tenant}", tenant))
    return pool


async def delivery(pool, tenant: str, name: str, status: str, days_ago: float, attempts: int = 2,
                   settled_days_ago: float | None = None) -> str:
    """A delivery created ``days_ago`` and last changed ``settled_days_ago`` (default: the same)."""
    created = NOW - timedelta(days=days_ago)
    updated = NOW - timedelta(days=days_ago if settled_days_ago is None else settled_days_ago)
    delivery_id = f"evt_{name}:ep_{tenant}"
    async with pool.connection() as conn:
        await conn.execute(
            """INSERT INTO delivery.deliveries (id, tenant_id, event_id, endpoint_id, route_id, event_type, status,
                                                attempts, created_at, updated_at)
               VALUES (%s, %s, %s, %s, 'rte_1', 'order.created', %s, %s, %s, %s)""",
            (delivery_id, tenant, f"evt_{name}", f"ep_{tenant}", status, attempts, created, updated))
        for number in range(1, attempts + 1):
            await conn.execute(
                """INSERT INTO delivery.attempts (delivery_id, number, started_at, outcome, latency_ms)
                   VALUES (%s, %s, %s, %s, 5)""",
                (delivery_id, number, created, "retrying" if number < attempts or status == "pending" else
                 ("succeeded" if status == "succeeded" else "failed")))
    return delivery_id


async def left(pool) -> tuple[set[str], int]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM delivery.deliveries")
        ids = {row["id"].split(":")[0].removeprefix("evt_") for row in await cur.fetchall()}
        cur = await conn.execute("SELECT count(*) AS n FROM delivery.attempts")
        return ids, (await cur.fetchone())["n"]


async def test_settled_deliveries_past_retention_go_with_their_attempts_and_pending_ones_stay(
        pool_with_log) -> None:
    pool = pool_with_log
    for n in range(5):
        await delivery(pool, "t1", f"old_ok{n}", "succeeded", 40 + n)
    await delivery(pool, "t1", "old_dead", "failed", 31)
    await delivery(pool, "t2", "other_old", "failed", 60)
    await delivery(pool, "t1", "old_pending", "pending", 90, attempts=3)  # never pruned
    await delivery(pool, "t1", "recent", "succeeded", 2)
    # Created long ago, failed for good (or retried by hand) recently: kept for the retention from then.
    await delivery(pool, "t1", "retried", "failed", 45, settled_days_ago=3)

    pruner = DeliveryPruner(pool, retention_days=30, batch_size=2, now=lambda: NOW)
    assert await pruner.prune() == 7
    assert await left(pool) == ({"old_pending", "recent", "retried"}, 3 + 2 + 2)
    assert await pruner.prune() == 0


async def test_the_pruning_job_runs_until_stopped(pool_with_log) -> None:
    await delivery(pool_with_log, "t1", "old", "succeeded", 100)
    stopping = asyncio.Event()
    task = asyncio.create_task(DeliveryPruner(pool_with_log, retention_days=30).run(0.05, stopping))
    for _ in range(100):
        if not (await left(pool_with_log))[0]:
            break
        await asyncio.sleep(0.05)
    stopping.set()
    await asyncio.wait_for(task, 5)
    assert await left(pool_with_log) == (set(), 0)
