"""Retention: what analytics keeps, and the pruning that deletes the rest.

Raw attempts, the events and deliveries tables and the per-minute rollups are
kept for ``attempts_days``; hour and day rollups for ``rollups_days``. Rows
are deleted oldest first in batches of ``batch_size`` (one short transaction
each, so pruning never holds locks long or bloats one transaction), until
none older than the cut-off is left.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from psycopg_pool import AsyncConnectionPool

from switchboard.database import describe_error

__all__ = ["RetentionPolicy", "Pruner"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    attempts_days: int = 30
    rollups_days: int = 400
    batch_size: int = 5000


# (what, the statement deleting one batch older than %(cutoff)s, which cut-off)
_PRUNES = (
    ("attempts", """DELETE FROM analytics.attempts WHERE ctid = ANY(ARRAY(
                        SELECT ctid FROM analytics.attempts WHERE at < %(cutoff)s LIMIT %(batch)s))""", "attempts"),
    ("events", """DELETE FROM analytics.events WHERE ctid = ANY(ARRAY(
                      SELECT ctid FROM analytics.events WHERE first_at < %(cutoff)s LIMIT %(batch)s))""", "attempts"),
    ("deliveries", """DELETE FROM analytics.deliveries WHERE ctid = ANY(ARRAY(
                          SELECT ctid FROM analytics.deliveries WHERE first_at < %(cutoff)s LIMIT %(batch)s))""",
     "attempts"),
    # A rollup row goes once all of its bucket is past the cut-off.
    ("minute rollups", """DELETE FROM analytics.rollups WHERE ctid = ANY(ARRAY(
                              SELECT ctid FROM analytics.rollups WHERE grain = 'minute'
                              AND bucket < %(cutoff)s - interval '1 minute'
                              LIMIT %(batch)s))""", "attempts"),
    ("hour rollups", """DELETE FROM analytics.rollups WHERE ctid = ANY(ARRAY(
                            SELECT ctid FROM analytics.rollups WHERE grain = 'hour'
                            AND bucket < %(cutoff)s - interval '1 hour'
                            LIMIT %(batch)s))""", "rollups"),
    ("day rollups", """DELETE FROM analytics.rollups WHERE ctid = ANY(ARRAY(
                           SELECT ctid FROM analytics.rollups WHERE grain = 'day' AND bucket < %(cutoff)s - interval '1 day'
                           LIMIT %(batch)s))""", "rollups"),
)


class Pruner:
    def __init__(self, pool: AsyncConnectionPool, policy: RetentionPolicy,
                 now: Callable[[], datetime] | None = None) -> None:
        self.pool = pool
        self.policy = policy
        self.now = now or (lambda: datetime.now(timezone.utc))

    async def prune(self) -> dict[str, int]:
        """Delete everything past retention; rows deleted per kind."""
        now = self.now()
        cutoffs = {"attempts": now - timedelta(days=self.policy.attempts_days),
                   "rollups": now - timedelta(days=self.policy.rollups_days)}
        deleted: dict[str, int] = {}
        for what, statement, which in _PRUNES:
            total = 0
            while True:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(statement, {"cutoff": cutoffs[which], "batch": self.policy.batch_size})
                    total += cur.rowcount
                if cur.rowcount < self.policy.batch_size:
                    break
                await asyncio.sleep(0)  # let queries and ingestion in between batches
            deleted[what] = total
        return deleted

    async def run(self, interval_s: float, stopping: asyncio.Event) -> None:
        """Prune now and every ``interval_s`` until ``stopping``; a failed round is logged and retried next time."""
        while not stopping.is_set():
            try:
                deleted = await self.prune()
                if any(deleted.values()):
                    logger.info("analytics pruned", extra={"deleted": deleted})
            except Exception as exc:
                logger.warning("analytics pruning failed; next round will retry", extra={"error": describe_error(exc)})
            try:
                await asyncio.wait_for(stopping.wait(), interval_s)
            except asyncio.TimeoutError:
                pass
