"""What every service's pruning job shares: deleting in bounded batches, and running on a timer.

A service keeps its own statements (which rows of its own schema are past
retention); how they run is the same everywhere. Each batch is one short
statement in its own transaction, so pruning never holds locks for long nor
builds one huge transaction, and the event loop is yielded between batches
so the service's real work goes on meanwhile. Docs: docs/operations.md#retention.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, UTC
from typing import Any, ClassVar
from collections.abc import Awaitable, Callable, Mapping

from psycopg_pool import AsyncConnectionPool

from switchboard.database import describe_error

__all__ = ["Pruner", "TenantPruner", "DEFAULT_BATCH", "prune_in_batches", "periodic", "distinct_tenants"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 5000


async def prune_in_batches(pool: AsyncConnectionPool, statement: str, params: Mapping[str, Any],
                           batch: int = DEFAULT_BATCH) -> int:
    """Run ``statement`` (which deletes at most ``%(batch)s`` rows) until it deletes fewer; rows deleted.

    ``params`` are passed with ``batch`` added. The statement must make
    progress on its own (what it deletes is gone the next time), or this
    would not end.
    """
    total = 0
    values = {**params, "batch": batch}
    while True:
        async with pool.connection() as conn:
            cur = await conn.execute(statement, values)
            deleted = max(cur.rowcount, 0)
        total += deleted
        if deleted < batch:
            return total
        await asyncio.sleep(0)  # let queries and ingestion in between batches


async def periodic(interval_s: float, work: Callable[[], Awaitable[Any]], stopping: asyncio.Event,
                   name: str) -> None:
    """Run ``work`` now and then every ``interval_s`` seconds until ``stopping`` is set.

    A failed round is logged and the next one tries again: a database that is
    briefly away never stops the service (``Runtime.background`` stops the
    process when its task dies).
    """
    while not stopping.is_set():
        try:
            await work()
        except Exception as exc:
            logger.warning("%s failed; the next round will retry", name, extra={"error": describe_error(exc)})
        try:
            await asyncio.wait_for(stopping.wait(), interval_s)
        except TimeoutError:
            pass


class Pruner:
    """One service's pruning of its own rows, now and then every so often.

    A subclass names ``what`` it prunes (for logs) and implements
    :meth:`prune`, which returns how many rows went (or a count per kind).
    """

    what: ClassVar[str]

    async def prune(self) -> int | Mapping[str, int]:
        raise NotImplementedError

    async def prune_and_log(self) -> None:
        deleted = await self.prune()
        if deleted if isinstance(deleted, int) else any(deleted.values()):
            logger.info("%s pruned", self.what, extra={"deleted": deleted})

    async def run(self, interval_s: float, stopping: asyncio.Event) -> None:
        """Prune now and every ``interval_s`` until ``stopping``; a failed round is logged and retried next time."""
        await periodic(interval_s, self.prune_and_log, stopping, f"{self.what} pruning")


class TenantPruner(Pruner):
    """Prunes one table tenant by tenant: ``statement`` deletes one batch of a
    tenant's rows older than ``%(cutoff)s`` (with ``%(tenant)s`` and ``%(batch)s``).

    Rows kept longer (the router's events a replay needs) are the statement's
    own business, so every batch judges them afresh.
    """

    table: ClassVar[str]
    statement: ClassVar[str]

    def __init__(self, pool: AsyncConnectionPool, retention_days: int, batch_size: int = DEFAULT_BATCH,
                 now: Callable[[], datetime] | None = None) -> None:
        self.pool = pool
        self.retention_days = retention_days
        self.batch_size = batch_size
        self.now = now or (lambda: datetime.now(UTC))

    async def prune(self) -> int:
        cutoff = self.now() - timedelta(days=self.retention_days)
        deleted = 0
        for tenant in await distinct_tenants(self.pool, self.table):
            deleted += await prune_in_batches(self.pool, self.statement, {"tenant": tenant, "cutoff": cutoff},
                                              self.batch_size)
        return deleted


async def distinct_tenants(pool: AsyncConnectionPool[Any], table: str) -> list[str]:
    """The tenants that have rows in ``table`` (a trusted, schema-qualified name with an index
    leading on ``tenant_id``), read as a loose index scan: one index probe per tenant, never a
    scan of the table."""
    async with pool.connection() as conn:
        cur = await conn.execute(f"""
            WITH RECURSIVE t AS (
                (SELECT tenant_id FROM {table} ORDER BY tenant_id LIMIT 1)
                UNION ALL
                SELECT (SELECT tenant_id FROM {table} WHERE tenant_id > t.tenant_id ORDER BY tenant_id LIMIT 1)
                FROM t WHERE t.tenant_id IS NOT NULL
            )
            SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL""")
        return [row["tenant_id"] for row in await cur.fetchall()]
