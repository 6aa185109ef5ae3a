"""Replays: re-deliver the stored events of a time range, in the background, with progress.

A replay names a time range and, optionally, a source and event-type
patterns; it delivers to one endpoint or through the routes as they are now.
Each replayed delivery is new (its id carries the replay id), so receivers
that de-duplicate by ``webhook-id`` still take it. Through the routes, an event
is dispatched as a new one would be now: classified if a route needs it,
transformed, replies drafted.

Runs survive crashes: a runner holds a replay under a lease it renews after
every batch and records its cursor (the last event done) with the progress.
If the process dies, another runner takes the replay over when the lease
lapses and resumes after the cursor; a batch published twice is harmless
because every delivery's id is its JetStream message id.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, UTC
from typing import Any
from collections.abc import Awaitable, Callable

from psycopg_pool import AsyncConnectionPool

from services.router.event_store import event_from_row
from switchboard.database import describe_error
from switchboard.errors import Conflict, InvalidRequest, NotFound
from switchboard.events import Event
from switchboard.ids import is_id, new_id
from switchboard.patterns import check_type_patterns, matches_any

__all__ = ["Replay", "ReplayRequest", "ReplayStore", "ReplayRunner"]

logger = logging.getLogger(__name__)

MAX_RANGE = timedelta(days=90)
_COLUMNS = ("id, tenant_id, since, until, source_id, event_types, endpoint_id, status, total, done, deliveries, "
            "error, created_at, updated_at, finished_at")


@dataclass(frozen=True)
class ReplayRequest:
    since: datetime
    until: datetime
    source_id: str | None = None
    event_types: tuple[str, ...] = ()
    # None: through the current routes.
    endpoint_id: str | None = None


@dataclass(frozen=True)
class Replay:
    id: str
    tenant_id: str
    since: datetime
    until: datetime
    source_id: str | None
    event_types: list[str]
    endpoint_id: str | None
    status: str
    total: int
    done: int
    deliveries: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


def _filters(tenant_id: str, since: datetime, until: datetime, source_id: str | None) -> tuple[str, list[Any]]:
    clauses = ["tenant_id = %s", "received_at >= %s", "received_at < %s"]
    params: list[Any] = [tenant_id, since, until]
    if source_id:
        clauses.append("source_id = %s")
        params.append(source_id)
    return " AND ".join(clauses), params


class ReplayStore:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def create(self, tenant_id: str, request: ReplayRequest) -> Replay:
        since, until = request.since, request.until
        if since >= until:
            raise InvalidRequest("since must be before until")
        if until - since > MAX_RANGE:
            raise InvalidRequest(f"a replay covers at most {MAX_RANGE.days} days")
        if since > datetime.now(UTC):
            raise InvalidRequest("since is in the future: there is nothing to replay")
        patterns = check_type_patterns(list(request.event_types))
        where, params = _filters(tenant_id, since, until, request.source_id)
        async with self.pool.connection() as conn:
            # Counted per type so the patterns (globs) can be applied here, as the run applies them.
            cur = await conn.execute(f"SELECT type, count(*) AS n FROM router.events WHERE {where} GROUP BY type",
                                     params)
            total = sum(row["n"] for row in await cur.fetchall() if not patterns or matches_any(row["type"], patterns))
            cur = await conn.execute(
                f"""INSERT INTO router.replays (id, tenant_id, since, until, source_id, event_types, endpoint_id, total)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
                (new_id("rpl"), tenant_id, since, until, request.source_id or None, patterns,
                 request.endpoint_id or None, total),
            )
            return Replay(**await cur.fetchone())

    async def get(self, tenant_id: str, replay_id: str) -> Replay:
        if not is_id(replay_id, "rpl"):
            raise NotFound(f"replay {replay_id} not found")
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM router.replays WHERE tenant_id = %s AND id = %s",
                                     (tenant_id, replay_id))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"replay {replay_id} not found")
        return Replay(**row)

    async def list(self, tenant_id: str, limit: int = 50) -> list[Replay]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM router.replays WHERE tenant_id = %s ORDER BY created_at DESC LIMIT %s",
                (tenant_id, max(1, min(limit, 500))))
            return [Replay(**row) for row in await cur.fetchall()]

    async def cancel(self, tenant_id: str, replay_id: str) -> Replay:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE router.replays SET status = 'cancelled', finished_at = now(), updated_at = now()
                   WHERE tenant_id = %s AND id = %s AND status IN ('queued', 'running')""", (tenant_id, replay_id))
        if cur.rowcount == 0:
            replay = await self.get(tenant_id, replay_id)  # 404 for others' and unknown ids
            raise Conflict(f"replay {replay_id} is already {replay.status}")
        return await self.get(tenant_id, replay_id)

    # -- the runner's side ---------------------------------------------------------

    async def claim(self, lease: timedelta) -> dict[str, Any] | None:
        """Take the oldest replay nobody holds (queued, or running under a lapsed lease)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE router.replays SET status = 'running', lease_until = now() + %s, updated_at = now()
                   WHERE id = (SELECT id FROM router.replays
                               WHERE status IN ('queued', 'running') AND (lease_until IS NULL OR lease_until < now())
                               ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                   RETURNING *""", (lease,))
            return await cur.fetchone()

    async def batch(self, job: dict[str, Any], size: int) -> builtins.list[Event]:  # "list" is the method above
        """The next events after the job's cursor, oldest first."""
        where, params = _filters(job["tenant_id"], job["since"], job["until"], job["source_id"])
        if job["cursor_received_at"] is not None:
            where += " AND (received_at, id) > (%s, %s)"
            params += [job["cursor_received_at"], job["cursor_id"]]
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT * FROM router.events WHERE {where} ORDER BY received_at, id LIMIT %s", (*params, size))
            rows = await cur.fetchall()
        if rows:
            job["cursor_received_at"], job["cursor_id"] = rows[-1]["received_at"], rows[-1]["id"]
        return [event_from_row(row) for row in rows]

    async def advance(self, job: dict[str, Any], done: int, deliveries: int, lease: timedelta,
                      finished: bool) -> bool:
        """Record progress (and renew the lease); False when the replay was cancelled meanwhile."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE router.replays
                   SET done = done + %s, deliveries = deliveries + %s, cursor_received_at = %s, cursor_id = %s,
                       lease_until = now() + %s, updated_at = now(),
                       status = CASE WHEN %s THEN 'succeeded' ELSE status END,
                       finished_at = CASE WHEN %s THEN now() ELSE finished_at END,
                       -- Counted when created; events cannot appear in the past, but keep it honest.
                       total = GREATEST(total, done + %s)
                   WHERE id = %s AND status = 'running'""",
                (done, deliveries, job["cursor_received_at"], job["cursor_id"], lease, finished, finished, done,
                 job["id"]))
            return cur.rowcount == 1


# Re-delivers one event for a replay: (event, the endpoint, or None for the
# current routes, replay id) -> the number of deliveries queued.
Deliver = Callable[[Event, "str | None", str], Awaitable[int]]


class ReplayRunner:
    """Runs replays one batch at a time, in every router process (each takes its own replays)."""

    def __init__(self, replays: ReplayStore, deliver: Deliver, batch_size: int = 200,
                 lease: timedelta = timedelta(seconds=30), idle_s: float = 1.0) -> None:
        self.replays = replays
        self.deliver = deliver
        self.batch_size = batch_size
        self.lease = lease
        self.idle_s = idle_s

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                job = await self.replays.claim(self.lease)
                if job is not None:
                    await self.run_one(job, stopping)
                    continue
            except Exception as exc:  # the database is away: try again shortly
                logger.warning("replay runner step failed", extra={"error": describe_error(exc)})
            try:
                await asyncio.wait_for(stopping.wait(), self.idle_s)
            except TimeoutError:
                pass

    async def run_one(self, job: dict[str, Any], stopping: asyncio.Event) -> None:
        patterns = job["event_types"]
        logger.info("replay running", extra={"replay_id": job["id"], "tenant_id": job["tenant_id"]})
        while not stopping.is_set():
            events = await self.replays.batch(job, self.batch_size)
            sent = 0
            try:
                for event in events:
                    if patterns and not matches_any(event.type, patterns):
                        continue
                    sent += await self.deliver(event, job["endpoint_id"], job["id"])
            except Exception as exc:  # NATS trouble: the lease lapses and the batch is done again
                logger.warning("replay batch not published; it will be resumed",
                               extra={"replay_id": job["id"], "error": describe_error(exc)})
                return
            done = sum(1 for e in events if not patterns or matches_any(e.type, patterns))
            finished = len(events) < self.batch_size
            if not await self.replays.advance(job, done, sent, self.lease, finished):
                logger.info("replay cancelled", extra={"replay_id": job["id"]})
                return
            if finished:
                logger.info("replay finished", extra={"replay_id": job["id"]})
                return
