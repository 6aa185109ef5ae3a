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

from datetime import datetime

from switchboard.retention import TenantPruner

__all__ = ["EventPruner"]


_DELETE = """DELETE FROM router.events WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM router.events WHERE tenant_id = %(tenant)s AND received_at < %(cutoff)s
                 LIMIT %(batch)s))"""


class EventPruner(TenantPruner):
    """Deletes the events past retention that no active replay still needs."""

    what = "router events"
    table = "router.events"
    statement = _DELETE

    async def holds(self) -> dict[str, datetime]:
        """A tenant's queued or running replays keep their range."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT tenant_id, min(since) AS since FROM router.replays
                   WHERE status IN ('queued', 'running') GROUP BY tenant_id""")
            return {row["tenant_id"]: row["since"] for row in await cur.fetchall()}
