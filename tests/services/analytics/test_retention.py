"""Retention: pruning deletes what is past each cut-off, in bounded batches, and nothing else."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from services.analytics.ledger import AttemptLedger
from services.analytics.retention import AnalyticsPruner, RetentionPolicy
from services.analytics.stats import StatsReader
from switchboard.settings import Settings
from tests.services.analytics.conftest import NOW, attempt, routed


async def counts(ledger: AttemptLedger) -> dict[str, int]:
    async with ledger.pool.connection() as conn:
        cur = await conn.execute(
            """SELECT (SELECT count(*) FROM analytics.attempts) AS attempts,
                      (SELECT count(*) FROM analytics.events) AS events,
                      (SELECT count(*) FROM analytics.deliveries) AS deliveries,
                      (SELECT count(*) FROM analytics.rollups WHERE grain = 'minute') AS minute,
                      (SELECT count(*) FROM analytics.rollups WHERE grain = 'hour' AND dim = 'all') AS hour,
                      (SELECT count(*) FROM analytics.rollups WHERE grain = 'day' AND dim = 'all') AS day""")
        return await cur.fetchone()


async def test_attempts_and_minutes_go_after_their_retention_and_hours_and_days_after_theirs(
        ledger: AttemptLedger) -> None:
    # One event a day for 60 days, at 06:00, attempted then (each its own minute, hour and day).
    days = [NOW.replace(hour=6, minute=0) - timedelta(days=d) for d in range(60)]
    await ledger.record_batch([report for d, when in enumerate(days)
                               for report in (routed(f"evt{d}", "ep_a", at=when), attempt(f"evt{d}", 1, at=when))])
    assert await counts(ledger) == {"attempts": 60, "events": 60, "deliveries": 60, "minute": 60, "hour": 60,
                                    "day": 60}

    policy = RetentionPolicy(attempts_days=10, rollups_days=40, batch_size=7)
    pruner = AnalyticsPruner(ledger.pool, policy, now=lambda: NOW)
    deleted = await pruner.prune()
    # Kept: days 0..9 of attempts and minutes (06:00 on day 10 is 10.27 days old), days 0..39
    # of hours; and day 40's day bucket, since a bucket goes only once all of it is past the cut-off.
    assert await counts(ledger) == {"attempts": 10, "events": 10, "deliveries": 10, "minute": 10, "hour": 40,
                                    "day": 41}
    assert deleted["attempts"] == 50 and deleted["hour rollups"] == 20 * 6  # the tenant and 5 dimensions
    assert await pruner.prune() == {k: 0 for k in deleted}

    # What is left still adds up: hours and days keep answering for older ranges.
    reader = StatsReader(ledger.pool, now=lambda: NOW)
    assert (await reader.overview("t1", since=NOW - timedelta(days=35))).stats.attempts == 35
    assert (await reader.overview("t1", since=NOW - timedelta(days=60))).stats.attempts == 41


async def test_the_pruning_job_runs_until_stopped(ledger: AttemptLedger) -> None:
    await ledger.record_batch([attempt("old", 1, at=NOW - timedelta(days=400))])
    stopping = asyncio.Event()
    task = asyncio.create_task(AnalyticsPruner(ledger.pool, RetentionPolicy(attempts_days=30)).run(0.05, stopping))
    for _ in range(100):
        if (await counts(ledger))["attempts"] == 0:
            break
        await asyncio.sleep(0.05)
    stopping.set()
    await asyncio.wait_for(task, 5)
    assert (await counts(ledger))["attempts"] == 0


def test_retention_is_configured_from_the_environment() -> None:
    settings = Settings.from_env({"SWITCHBOARD_RETENTION_ATTEMPTS_DAYS": "7",
                                  "SWITCHBOARD_RETENTION_ROLLUPS_DAYS": "90",
                                  "SWITCHBOARD_RETENTION_PRUNE_INTERVAL": "60"})
    assert (settings.analytics.retention_attempts_days, settings.analytics.retention_rollups_days,
            settings.retention_prune_interval_s) == (7, 90, 60.0)
    assert Settings.from_env(settings.as_env()).analytics.retention_rollups_days == 90
    defaults = Settings.from_env({})
    assert (defaults.analytics.retention_attempts_days, defaults.analytics.retention_rollups_days) == (30, 400)
