"""Deliveries and their attempts in PostgreSQL: the delivery log.

A delivery's row is written once its first attempt settles (or before it is
queued, for a test event), and moves only forward from pending.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from datetime import datetime
from collections.abc import Sequence
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from switchboard.batching import Batcher, distinct_rounds
from switchboard.database import atomically, each_alone_on_bad_data, jsonb, storable_json
from switchboard.errors import Conflict, InvalidRequest, NotFound
from switchboard.events import DeliveryMessage

__all__ = ["Attempt", "Delivery", "DeliveryFilter", "DeliveryLog"]


@dataclass(frozen=True)
class Attempt:
    number: int
    started_at: datetime
    outcome: str
    status_code: int | None
    latency_ms: float
    response_excerpt: str
    error: str | None
    response_headers: dict[str, str] = field(default_factory=dict)
    # The failover endpoint this attempt went to; None for the delivery's own.
    sent_to: str | None = None


@dataclass(frozen=True)
class Delivery:
    id: str
    tenant_id: str
    event_id: str
    endpoint_id: str
    status: str
    attempts: int
    created_at: datetime
    updated_at: datetime
    history: list[Attempt] = field(default_factory=list)
    event_type: str = ""
    # What was sent (the message's exact body, or its payload as JSON) and its Content-Type; read by get() alone.
    request_body: bytes | None = None
    request_content_type: str | None = None


#: A delivery's status after an attempt with this outcome ("retrying" keeps it pending).
_STATUS_AFTER = {"succeeded": "succeeded", "failed": "failed"}

_DELIVERY_COLUMNS = ("id, tenant_id, event_id, endpoint_id, status, attempts, created_at, updated_at,"
                     " COALESCE(event_type, '') AS event_type")


@dataclass(frozen=True)
class DeliveryFilter:
    event_id: str | None = None
    endpoint_id: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None
    limit: int = 50


def _encode_cursor(last: Delivery) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([last.created_at.isoformat(), last.id])).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, last_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created), str(last_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidRequest("invalid cursor") from None



def _sent_body(message: dict[str, Any] | None) -> tuple[bytes | None, str | None]:
    """The body a stored message is sent with (its exact body, else its payload as JSON), and its Content-Type."""
    if message is None:
        return None, None
    sent = DeliveryMessage.from_message(message)
    if sent.body is None:
        return orjson.dumps(sent.payload), "application/json"
    return sent.body, sent.content_type or "application/json"


class DeliveryLog:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        # The two statements of every delivery attempt (read its state, record the attempt),
        # shared by concurrent sends. Several batches at once: a commit waits for the disk,
        # and concurrent commits share that wait. (Batcher raises an Exception result to its item's
        # caller, which its type for run leaves out.)
        self._states: Batcher[str, tuple[str, int, int] | None] = Batcher(
            self._state_all, max_concurrent=4)
        self._attempts: Batcher[tuple[str, Attempt, DeliveryMessage | None], bool] = Batcher(
            self._record_all, max_concurrent=4)
    async def state(self, delivery_id: str) -> tuple[str, int, int] | None:
        """``(status, attempts so far, cycle start)`` of a stored delivery; None before its first
        attempt is recorded (the row is written once, with that attempt's outcome).

        Concurrent calls share one statement (see :class:`Batcher`).
        """
        return await self._states.submit(delivery_id)

    async def _state_all(self, ids: Sequence[str]) -> list[tuple[str, int, int] | None | Exception]:
        return await each_alone_on_bad_data(self._state_rows, ids)

    async def _state_rows(self, ids: Sequence[str]) -> list[tuple[str, int, int] | None]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, status, attempts, cycle_start FROM delivery.deliveries WHERE id = ANY(%b::text[])",
                (sorted(set(ids)),))
            found = {row["id"]: (row["status"], row["attempts"], row["cycle_start"]) for row in await cur.fetchall()}
        return [found.get(i) for i in ids]

    async def add_pending(self, message: DeliveryMessage) -> None:
        """Store a delivery as pending before it is queued, for one followed at once (a test event):
        otherwise a delivery is stored when its first attempt is recorded."""
        async with self.pool.connection() as conn:
            await conn.execute(
                """INSERT INTO delivery.deliveries (id, tenant_id, event_id, endpoint_id, route_id, event_type, message)
                   VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING""",
                (message.delivery_id, message.tenant_id, message.event_id, message.endpoint_id, message.route_id,
                 message.event_type, jsonb(message.to_message())))

    async def record_attempt(self, delivery_id: str, attempt: Attempt, new: DeliveryMessage | None = None) -> bool:
        """Keep the attempt and move the delivery to its new status, atomically.

        ``new`` is the message of a delivery not stored yet (:meth:`state` said
        None): its row is inserted with this attempt's outcome, in the same
        statement, so a delivery's row is written once when its first attempt
        settles it. Otherwise only a pending delivery moves, and only when this
        attempt number was not recorded before: a late duplicate worker can
        never turn a success back into pending. Returns False when nothing
        changed (a new delivery someone else stored first, an attempt already
        recorded, an unknown delivery). Concurrent calls share one statement
        (see :class:`Batcher`).
        """
        return await self._attempts.submit((delivery_id, attempt, new))

    async def _record_all(self, attempts: Sequence[tuple[str, Attempt, DeliveryMessage | None]]
                          ) -> list[bool | Exception]:
        return await each_alone_on_bad_data(self._record_rows, attempts)

    async def _record_rows(self, attempts: Sequence[tuple[str, Attempt, DeliveryMessage | None]]) -> list[bool]:
        # A delivery twice in a batch (two copies of one message) has its second attempt
        # in a statement of its own; see distinct_rounds.
        rounds = distinct_rounds([delivery_id for delivery_id, _, _ in attempts])
        recorded = [False] * len(attempts)
        # One transaction: a caller is never told "failed" for an attempt that was kept.
        async with self.pool.connection() as conn, atomically(conn, len(rounds)):
            for taken in rounds:
                rows = [attempts[i] for i in taken.values()]
                # The rows as one jsonb parameter: one value to encode and parse, where an array per
                # column cost the client and PostgreSQL twice as much per statement.
                given = [{"delivery_id": delivery_id, "number": a.number, "started_at": a.started_at,
                          "outcome": a.outcome, "status_code": a.status_code, "latency_ms": a.latency_ms,
                          "response_excerpt": a.response_excerpt, "error": a.error,
                          "response_headers": a.response_headers, "sent_to": a.sent_to,
                          "status": _STATUS_AFTER.get(a.outcome, "pending"), "is_new": m is not None,
                          **({"tenant_id": m.tenant_id, "event_id": m.event_id, "endpoint_id": m.endpoint_id,
                              "route_id": m.route_id, "event_type": m.event_type,
                              "message": storable_json(m.to_message())} if m is not None else {})}
                         for delivery_id, a, m in rows]
                cur = await conn.execute(
                    """WITH given AS (
                           SELECT * FROM jsonb_to_recordset(%s::jsonb)
                               AS g(delivery_id text, number int, started_at timestamptz, outcome text, status_code int,
                                    latency_ms float8, response_excerpt text, error text, response_headers jsonb,
                                    sent_to text, status text, is_new bool, tenant_id text, event_id text,
                                    endpoint_id text, route_id text, event_type text, message jsonb)),
                       created AS (
                           INSERT INTO delivery.deliveries (id, tenant_id, event_id, endpoint_id, route_id, event_type,
                                                            message, status, attempts)
                           SELECT delivery_id, tenant_id, event_id, endpoint_id, route_id, event_type, message, status,
                                  number
                           FROM given WHERE is_new
                           ON CONFLICT (id) DO NOTHING
                           RETURNING id),
                       recorded AS (
                           INSERT INTO delivery.attempts (delivery_id, number, started_at, outcome, status_code,
                                                          latency_ms, response_excerpt, error, response_headers,
                                                          sent_to)
                           SELECT delivery_id, number, started_at, outcome, status_code, latency_ms, response_excerpt,
                                  error, response_headers, sent_to FROM given g
                           -- A new delivery's attempt only with the row this statement created; a known
                           -- one's only if it exists (one unknown delivery must not fail the others).
                           WHERE CASE WHEN g.is_new THEN g.delivery_id IN (SELECT id FROM created)
                                      ELSE EXISTS (SELECT 1 FROM delivery.deliveries d WHERE d.id = g.delivery_id) END
                           ON CONFLICT DO NOTHING
                           RETURNING delivery_id, number),
                       moved AS (
                           UPDATE delivery.deliveries d
                           SET status = g.status, attempts = GREATEST(d.attempts, g.number), updated_at = now()
                           FROM given g JOIN recorded r USING (delivery_id, number)
                           WHERE NOT g.is_new AND d.id = g.delivery_id AND d.status = 'pending'
                           RETURNING d.id)
                   SELECT id FROM moved
                   UNION ALL
                   SELECT r.delivery_id FROM recorded r JOIN created c ON c.id = r.delivery_id""",
                    (jsonb(given),))
                for row in await cur.fetchall():
                    recorded[taken[row["id"]]] = True
        return recorded

    async def page(self, tenant_id: str, filters: DeliveryFilter) -> tuple[list[Delivery], str]:
        """A page of deliveries, newest first, and the cursor of the next page ("" on the last)."""
        if filters.status and filters.status not in ("pending", "succeeded", "failed"):
            raise InvalidRequest("status is pending, succeeded or failed")
        limit = max(1, min(filters.limit or 50, 1000))
        clauses = ["tenant_id = %s"]
        params: list[Any] = [tenant_id]
        for column in ("event_id", "endpoint_id", "status"):
            value = getattr(filters, column)
            if value:
                clauses.append(f"{column} = %s")
                params.append(value)
        if filters.since:
            clauses.append("created_at >= %s")
            params.append(filters.since)
        if filters.until:
            clauses.append("created_at < %s")
            params.append(filters.until)
        if filters.cursor:
            created, last_id = _decode_cursor(filters.cursor)
            clauses.append("(created_at, id) < (%s, %s)")
            params += [created, last_id]
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"""SELECT {_DELIVERY_COLUMNS} FROM delivery.deliveries WHERE {" AND ".join(clauses)}
                    ORDER BY created_at DESC, id DESC LIMIT %s""",
                (*params, limit + 1),
            )
            rows = await cur.fetchall()
        deliveries = [Delivery(**row) for row in rows[:limit]]
        await self._attach_attempts(deliveries)
        more = len(rows) > limit
        return deliveries, _encode_cursor(deliveries[-1]) if more else ""

    async def get(self, tenant_id: str, delivery_id: str) -> Delivery:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_DELIVERY_COLUMNS}, message FROM delivery.deliveries WHERE tenant_id = %s AND id = %s",
                (tenant_id, delivery_id),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"delivery {delivery_id} not found")
        message = row.pop("message")
        body, content_type = _sent_body(message)
        delivery = Delivery(**row, request_body=body, request_content_type=content_type)
        await self._attach_attempts([delivery])
        return delivery

    async def restart(self, tenant_id: str, delivery_id: str) -> DeliveryMessage:
        """Make a failed delivery pending again, for a new cycle of attempts; its message, of that cycle."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE delivery.deliveries SET status = 'pending', cycle_start = attempts, updated_at = now()
                   WHERE tenant_id = %s AND id = %s AND status = 'failed' AND message IS NOT NULL
                   RETURNING message, cycle_start""",
                (tenant_id, delivery_id),
            )
            row = await cur.fetchone()
        if row is None:
            current = await self.get(tenant_id, delivery_id)  # 404 for others' and unknown ids
            raise Conflict(f"delivery {delivery_id} is {current.status}; only failed deliveries are retried")
        return replace(DeliveryMessage.from_message(row["message"]), cycle=row["cycle_start"])

    async def mark_failed(self, tenant_id: str, delivery_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE delivery.deliveries SET status = 'failed', updated_at = now() WHERE tenant_id = %s AND id = %s",
                (tenant_id, delivery_id),
            )

    async def failed_ids(self, tenant_id: str, endpoint_id: str) -> list[str]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT id FROM delivery.deliveries
                   WHERE tenant_id = %s AND endpoint_id = %s AND status = 'failed' ORDER BY created_at""",
                (tenant_id, endpoint_id),
            )
            return [row["id"] for row in await cur.fetchall()]

    async def _attach_attempts(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        by_id = {d.id: d for d in deliveries}
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT delivery_id, number, started_at, outcome, status_code, latency_ms, response_excerpt, error,
                          response_headers, sent_to
                   FROM delivery.attempts WHERE delivery_id = ANY(%s) ORDER BY delivery_id, number""",
                ([d.id for d in deliveries],),
            )
            for row in await cur.fetchall():
                by_id[row.pop("delivery_id")].history.append(Attempt(**row))
