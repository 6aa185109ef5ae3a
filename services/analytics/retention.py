"""Retention: what analytics keeps, and the pruning that deletes the rest.

Raw attempts, the events and deliveries tables and the per-minute rollups are
kept for ``attempts_days``; hour and day rollups for ``rollups_days``. Rows
are deleted oldest first in batches of ``batch_size`` (one short transaction
each, so pruning never holds locks long or bloats one transaction), until
none older than the cut-off is left (``switchboard.retention``). Resolved
alerts (``alerts.py``) go with the raw attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, UTC
from collections.abc import Callable

from psycopg_pool import AsyncConnectionPool

from switchboard.retention import Pruner, prune_in_batches

__all__ = ["RetentionPolicy", "AnalyticsPruner"]


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
                           SELECT ctid FROM analytics.rollups WHERE grain = 'day'
                           AND bucket < %(cutoff)s - interval '1 day'
                           LIMIT %(batch)s))""", "rollups"),
    # An alert whose resolution was published long ago is only history.
    ("resolved alerts", """DELETE FROM analytics.alerts WHERE ctid = ANY(ARRAY(
                               SELECT ctid FROM analytics.alerts WHERE state = 'resolved' AND emitted
                               AND resolved_at < %(cutoff)s LIMIT %(batch)s))""", "attempts"),
)


class AnalyticsPruner(Pruner):
    what = "analytics data"

    def __init__(self, pool: AsyncConnectionPool, policy: RetentionPolicy,
                 now: Callable[[], datetime] | None = None) -> None:
        self.pool = pool
        self.policy = policy
        self.now = now or (lambda: datetime.now(UTC))

    async def prune(self) -> dict[str, int]:
        """Delete everything past retention; rows deleted per kind."""
        now = self.now()
        cutoffs = {"attempts": now - timedelta(days=self.policy.attempts_days),
                   "rollups": now - timedelta(days=self.policy.rollups_days)}
        deleted: dict[str, int] = {}
        for what, statement, which in _PRUNES:
            deleted[what] = await prune_in_batches(self.pool, statement, {"cutoff": cutoffs[which]},
                                                   self.policy.batch_size)
        return deleted
