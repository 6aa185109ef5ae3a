"""Retention of the router's stored events: events older than the retention are deleted.

Every row of ``router.events`` is settled: the router stores an event only
once it has been routed (its deliveries are then the delivery service's
business, kept by its own retention). An event older than
``SWITCHBOARD_RETENTION_EVENTS_DAYS`` (by ``received_at``) is deleted, in
bounded batches per tenant, walking the ``(tenant_id, received_at)`` index.
Once pruned it can no longer be read (``GET /v1/events/{id}``) or replayed;
but a tenant's queued or running replay holds the events of its range
until it finishes (nothing from its ``since`` on is pruned meanwhile).
Docs: docs/operations.md#retention.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

from psycopg_pool import AsyncConnectionPool

from switchboard.retention import DEFAULT_BATCH, Pruner, distinct_tenants, prune_in_batches

__all__ = ["EventPruner"]


_DELETE = """DELETE FROM router.events WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM router.events WHERE tenant_id = %(tenant)s AND received_at < %(cutoff)s
                 LIMIT %(batch)s))"""


class EventPruner(Pruner):
    what = "router events"

    def __init__(self, pool: AsyncConnectionPool, retention_days: int, batch_size: int = DEFAULT_BATCH,
                 now: Callable[[], datetime] | None = None) -> None:
        self.pool = pool
        self.retention_days = retention_days
        self.batch_size = batch_size
        self.now = now or (lambda: datetime.now(timezone.utc))

    async def prune(self) -> int:
        """Delete the events past retention that no active replay still needs; how many."""
        cutoff = self.now() - timedelta(days=self.retention_days)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT tenant_id, min(since) AS since FROM router.replays
                   WHERE status IN ('queued', 'running') GROUP BY tenant_id""")
            held = {row["tenant_id"]: row["since"] for row in await cur.fetchall()}
        deleted = 0
        for tenant in await distinct_tenants(self.pool, "router.events"):
            until = min(cutoff, held[tenant]) if tenant in held else cutoff
            deleted += await prune_in_batches(self.pool, _DELETE, {"tenant": tenant, "cutoff": until},
                                              self.batch_size)
        return deleted
