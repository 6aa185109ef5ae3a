"""Analytics at a million attempts: ingest rate, then overview, trends and breakdowns.

1. Load: 1,000,000 attempts over the last 7 days (80% for one tenant, the
   rest over four others; 20 endpoints, 10 event types, 5 sources, 6 AI
   categories; 1-3 attempts per delivery, ~3% dead, ~1% pending) through the
   ingestion path the ATTEMPTS consumer uses (``AttemptLedger.record_batch``,
   500 reports a batch, one batch at a time) into embedded PostgreSQL.
2. Through NATS: 50,000 more reports published to ATTEMPTS and consumed by
   the service's consumer (``consume`` + ``AttemptIntake``), acked after
   commit, into a database of their own: the end-to-end ingest rate.
3. Queries, as AnalyticsService answers them (``StatsReader``) for the big
   tenant, each run 15 times: p50 and max ms.

    .venv/bin/python -m tests.bench.analytics_bench      (BENCH_ATTEMPTS=... for a smaller load)
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from datetime import datetime, timedelta, UTC
from pathlib import Path
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import nats
import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from services.analytics.app import CONCURRENCY, MAX_BATCH
from services.analytics.consumer import AttemptIntake, read_report
from services.analytics.ledger import AttemptLedger
from services.analytics.stats import StatsReader
from switchboard.database import apply_migrations, open_pool
from switchboard.events import AttemptRecord, attempt_subject
from switchboard.messaging import CONSUMERS, consume, encode, ensure_consumer, ensure_streams
from switchboard.settings import Settings
from tests.bench.common import infrastructure

ATTEMPTS = int(os.environ.get("BENCH_ATTEMPTS", "1000000"))
NATS_ATTEMPTS = int(os.environ.get("BENCH_NATS_ATTEMPTS", "50000"))
RUNS = 15
MIGRATIONS = Path(__file__).parents[2] / "services/analytics/migrations"
BIG = "ten_big"
TENANTS = [BIG] * 16 + ["ten_a", "ten_b", "ten_c", "ten_d"]
ENDPOINTS = [f"ep_{n:032x}" for n in range(20)]
TYPES = [f"order.{kind}" for kind in ("created", "paid", "shipped", "refunded", "cancelled")] + \
        [f"customer.{kind}" for kind in ("created", "updated", "deleted", "merged", "flagged")]
SOURCES = [f"src_{n:032x}" for n in range(5)]
CATEGORIES = ["", "billing", "support", "sales", "spam", "other"]


def attempts(count: int, end: datetime, tenants: list[str] = TENANTS, seed: int = 1) -> Iterator[AttemptRecord]:
    """``count`` attempts over the 7 days before ``end``, in time order (as delivery reports them)."""
    rng = random.Random(seed)
    start = end - timedelta(days=7)
    # ~1.45 attempts per delivery and ~1.5 deliveries per event.
    events = int(count / 2.15) + 1
    step = (end - start).total_seconds() / events
    made, n = 0, 0
    while made < count:
        at = start.timestamp() + n * step
        event_id = f"evt_{n:032x}"
        tenant, kind = rng.choice(tenants), rng.choice(TYPES)
        source, category = rng.choice(SOURCES), rng.choice(CATEGORIES)
        for endpoint in rng.sample(ENDPOINTS, rng.choice((1, 1, 2))):
            roll = rng.random()
            outcomes = (["succeeded"] if roll < 0.90 else ["retrying", "succeeded"] if roll < 0.96
                        else ["retrying", "retrying", "failed"] if roll < 0.99 else ["retrying"])
            for number, outcome in enumerate(outcomes, start=1):
                if made == count:
                    return
                ok = outcome == "succeeded"
                yield AttemptRecord(
                    delivery_id=f"{event_id}:{endpoint}", number=number, tenant_id=tenant, endpoint_id=endpoint,
                    event_type=kind, outcome=outcome, status_code=200 if ok else 503,
                    latency_ms=rng.lognormvariate(3.5, 0.8) if ok else rng.lognormvariate(6, 1),
                    at=min(at + (number - 1) * 5, end.timestamp() - 1), source_id=source, category=category or None,
                    error=None if ok else "receiver answered 503")
                made += 1
        n += 1


async def load(pool, count: int, end: datetime) -> float:
    ledger = AttemptLedger(pool)
    batch: list[AttemptRecord] = []
    started = time.perf_counter()
    for record in attempts(count, end):
        batch.append(record)
        if len(batch) == MAX_BATCH:
            await ledger.record_batch(batch)
            batch = []
    if batch:
        await ledger.record_batch(batch)
    return count / (time.perf_counter() - started)


async def through_nats(database_url: str, nats_url: str, count: int, end: datetime) -> float:
    pool: AsyncConnectionPool[Any] = await open_pool(database_url, max_size=5)  # dict rows
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        await apply_migrations(pool, "analytics", MIGRATIONS)
        await ensure_streams(js, Settings())
        await ensure_consumer(js, CONSUMERS["analytics"])
        pending = []
        for record in attempts(count, end, ["ten_nats"], seed=2):
            pending.append(js.publish(attempt_subject(record.tenant_id), encode(record.to_message()),
                                      headers={"Nats-Msg-Id": f"{record.delivery_id}#{record.number}"}))
            if len(pending) == 1000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        intake = AttemptIntake(AttemptLedger(pool), max_batch=MAX_BATCH)
        stopping = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(consume(nc, CONSUMERS["analytics"], intake.handle, read=read_report,
                                           concurrency=CONCURRENCY, batch=250, stopping=stopping))
        while True:
            info = await js.consumer_info("ATTEMPTS", "analytics")
            if info.num_pending == 0 and info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        stopping.set()
        await task
        async with pool.connection() as conn:
            stored = (await (await conn.execute("SELECT count(*) AS n FROM analytics.attempts")).fetchone())["n"]
        assert stored == count, stored
        return count / elapsed
    finally:
        await nc.close()
        await pool.close()


async def timed(call: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    await call()  # warm
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        await call()
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs), max(runs)


async def queries(pool, end: datetime) -> list[tuple[str, float, float, str]]:
    reader = StatsReader(pool, now=lambda: end)
    week = end - timedelta(days=7)
    busiest = (await reader.breakdown(BIG, "endpoint", since=week)).rows[0].key
    cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("overview, last 24 h", lambda: reader.overview(BIG)),
        ("overview, 7 days", lambda: reader.overview(BIG, since=week)),
        ("trends, minute x 24 h", lambda: reader.trends(BIG, "minute")),
        ("trends, hour x 7 days", lambda: reader.trends(BIG, "hour", since=week)),
        ("trends, day x 7 days", lambda: reader.trends(BIG, "day", since=week)),
        ("breakdown by endpoint, 7 days", lambda: reader.breakdown(BIG, "endpoint", since=week)),
        ("breakdown by event type, 7 days", lambda: reader.breakdown(BIG, "event_type", since=week)),
        ("breakdown by source, 7 days", lambda: reader.breakdown(BIG, "source", since=week)),
        ("breakdown by category, 7 days", lambda: reader.breakdown(BIG, "category", since=week)),
        ("one endpoint, 7 days", lambda: reader.endpoint(BIG, busiest, since=week)),
        ("failing endpoints, 7 days", lambda: reader.failing_endpoints(BIG, since=week)),
    ]
    results = []
    for name, call in cases:
        p50, worst = await timed(call)
        results.append((name, p50, worst, ""))
    o = await reader.overview(BIG, since=week)
    summary = (f"{o.stats.attempts:,} attempts, {o.stats.events_received:,} events, {o.stats.dead:,} dead, "
               f"{o.pending:,} pending, p50/p95/p99 {o.stats.latency.p50_ms:.0f}/{o.stats.latency.p95_ms:.0f}/"
               f"{o.stats.latency.p99_ms:.0f} ms")
    results.append(("(the big tenant, 7 days: " + summary + ")", 0, 0, "note"))
    return results


async def main_async(database_url: str, nats_url: str) -> None:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    pool: AsyncConnectionPool[Any] = await open_pool(database_url, max_size=5)  # dict rows
    try:
        await apply_migrations(pool, "analytics", MIGRATIONS)
        rate = await load(pool, ATTEMPTS, end)
        async with pool.connection() as conn:
            await conn.execute("VACUUM ANALYZE analytics.rollups")
            await conn.execute("ANALYZE analytics.deliveries")
            sizes = await (await conn.execute(
                """SELECT (SELECT count(*) FROM analytics.attempts) AS attempts,
                          (SELECT count(*) FROM analytics.rollups) AS rollups,
                          pg_size_pretty(pg_total_relation_size('analytics.attempts')) AS attempts_size,
                          pg_size_pretty(pg_total_relation_size('analytics.rollups')) AS rollups_size""")).fetchone()
        results = await queries(pool, end)
    finally:
        await pool.close()
    nats_db = make_conninfo(database_url, dbname="analytics_nats")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE analytics_nats")
    nats_rate = await through_nats(nats_db, nats_url, NATS_ATTEMPTS, end)

    print("\nanalytics benchmark (embedded PostgreSQL and NATS on the same 2 cores)")
    print(f"  loaded {sizes['attempts']:,} attempts: {rate:,.0f} attempts/s through AttemptLedger.record_batch "
          f"({MAX_BATCH} a batch); {sizes['rollups']:,} rollup rows ({sizes['rollups_size']}), "
          f"raw attempts {sizes['attempts_size']}")
    print(f"  through NATS: {nats_rate:,.0f} attempts/s ({NATS_ATTEMPTS:,} reports consumed from ATTEMPTS, "
          "acked after commit)")
    print(f"  {'query':<34} {'p50 ms':>8} {'max ms':>8}   ({RUNS} runs)")
    for name, p50, worst, kind in results:
        print(f"  {name}" if kind == "note" else f"  {name:<34} {p50:8.1f} {worst:8.1f}")


def main() -> None:
    with infrastructure() as (nats_url, database_url, _scratch):
        asyncio.run(main_async(database_url, nats_url))


if __name__ == "__main__":
    main()
