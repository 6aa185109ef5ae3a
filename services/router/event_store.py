"""The events' store: each event with its explained routing decision in PostgreSQL
(``router.events``), inserted in batches, once per event (see :meth:`EventStore.insert`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any
from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from switchboard.batching import Batcher, distinct_rounds
from switchboard.bodies import body_fields
from switchboard.database import atomically, each_alone_on_bad_data, jsonb
from switchboard.errors import NotFound
from switchboard.events import Event
from switchboard.ids import is_id

__all__ = ["EventStore", "Stored", "StoredEvent", "event_from_row"]


def event_from_row(row: dict[str, Any]) -> Event:
    raw, text = row["raw_body"], row["body"]
    return Event(
        id=row["id"], tenant_id=row["tenant_id"], source_id=row["source_id"], type=row["type"],
        received_at=row["received_at"].timestamp(), payload=row["payload"], headers=row["headers"],
        provider_event_id=row["provider_event_id"],
        body=bytes(raw) if raw is not None else text.encode() if text is not None else None,
        occurred_at=row["occurred_at"].timestamp() if row["occurred_at"] else None,
        conversation_key=row["conversation_key"], source_type=row["source_type"], author=row["author"],
        content_type=row["content_type"],
    )


def _body_columns(body: bytes | None) -> dict[str, str | None]:
    """``body`` text, or ``raw_body`` (base64 here, bytea in the table) for bytes text cannot hold."""
    fields = body_fields(body)
    return {"body": fields["body"], "raw_body": fields.get("body_base64")}


@dataclass(frozen=True)
class StoredEvent:
    event: Event
    stored_at: datetime
    # The explained routing decision (None until routed).
    routing: dict[str, Any] | None = None


class Stored(enum.Enum):
    """What storing an event found."""

    NEW = "new"  # inserted now
    # Already stored within the streams' duplicate window (its decision replaced), or stored by this
    # very message before (its router stopped before queueing the deliveries).
    AGAIN = "again"
    # Stored by another message before that window (or no new decision given): left as it was.
    BEFORE = "before"


class EventStore:
    """``duplicate_window_s``: the streams' duplicate window; an event stored longer ago
    than that keeps its decision (see :meth:`insert`). None: always replaced."""

    def __init__(self, pool: AsyncConnectionPool[Any], duplicate_window_s: int | None = None) -> None:
        self.pool = pool
        # The events routed at once are stored in one statement and one commit (see Batcher).
        # (Batcher raises an Exception result to its item's caller, which its type for run leaves out.)
        self._stores: Batcher[tuple[Event, dict[str, Any] | None, int | None], Stored] = Batcher(
            self._store_all, max_concurrent=4)
        self._recent = ("true" if duplicate_window_s is None
                        else f"router.events.stored_at > now() - interval '{int(duplicate_window_s)} seconds'")

    async def store(self, event: Event, routing: dict[str, Any] | None = None) -> bool:
        """Insert the event with its explained routing decision; False when it was already
        stored (a redelivery: its decision is replaced by the new one, if given).

        Concurrent calls share one statement and one durable commit. Data
        PostgreSQL refuses (psycopg.DataError) fails only its own call.
        """
        return await self.insert(event, routing) is Stored.NEW

    async def insert(self, event: Event, routing: dict[str, Any] | None = None,
                     stream_seq: int | None = None) -> Stored:
        """:meth:`store`, telling also whether the event was already stored by another message
        (``stream_seq``: the EVENTS message routing it) before the streams' duplicate window:
        then its deliveries, queued then, are no longer de-duplicated by JetStream, and its
        decision is left as it was."""
        return await self._stores.submit((event, routing, stream_seq))

    async def _store_all(self, items: Sequence[tuple[Event, dict[str, Any] | None, int | None]]
                         ) -> list[Stored | Exception]:
        return await each_alone_on_bad_data(self._store_rows, items)

    async def _store_rows(self, items: Sequence[tuple[Event, dict[str, Any] | None, int | None]]) -> list[Stored]:
        stored = [Stored.BEFORE] * len(items)
        # An event twice in a batch (a redelivered copy) is written again in a statement of its own.
        rounds = distinct_rounds([event.id for event, _, _ in items])
        async with self.pool.connection() as conn, atomically(conn, len(rounds)):
            for taken in rounds:
                rows = [items[i] for i in taken.values()]
                # The rows as one jsonb parameter: one value to encode and parse, where an array per
                # column cost the client and PostgreSQL twice as much per statement.
                given = [{"id": e.id, "tenant_id": e.tenant_id, "source_id": e.source_id, "type": e.type,
                          "provider_event_id": e.provider_event_id,
                          "received_at": datetime.fromtimestamp(e.received_at, UTC),
                          "headers": e.headers, "payload": e.payload, **_body_columns(e.body),
                          "content_type": e.content_type,
                          "occurred_at": datetime.fromtimestamp(e.occurred_at, UTC) if e.occurred_at else None,
                          "conversation_key": e.conversation_key, "source_type": e.source_type, "routing": routing,
                          "author": e.author, "stream_seq": seq}
                         for e, routing, seq in rows]
                cur = await conn.execute(
                    f"""INSERT INTO router.events
                           (id, tenant_id, source_id, type, provider_event_id, received_at, headers, payload, body,
                            raw_body, content_type, occurred_at, conversation_key, source_type, routing, author,
                            stream_seq)
                       -- A JSON null in the records is SQL NULL: a payload of null is kept as jsonb null.
                       SELECT id, tenant_id, source_id, type, provider_event_id, received_at, headers,
                              coalesce(payload, 'null'::jsonb), body, decode(raw_body, 'base64'),
                              coalesce(content_type, ''), occurred_at, conversation_key, source_type, routing,
                              author, stream_seq
                       FROM jsonb_to_recordset(%s::jsonb)
                           AS g(id text, tenant_id text, source_id text, type text, provider_event_id text,
                                received_at timestamptz, headers jsonb, payload jsonb, body text, raw_body text,
                                content_type text, occurred_at timestamptz, conversation_key text,
                                source_type text, routing jsonb, author text, stream_seq int8)
                       ON CONFLICT (id) DO UPDATE
                           SET routing = CASE WHEN {self._recent} THEN EXCLUDED.routing ELSE router.events.routing END
                           WHERE EXCLUDED.routing IS NOT NULL
                       RETURNING id, (xmax = 0) AS inserted, {self._recent} AS recent, stream_seq""",
                    (jsonb(given),))
                for row in await cur.fetchall():
                    seq = items[taken[row["id"]]][2]
                    again = row["recent"] or (seq is not None and row["stream_seq"] == seq)
                    stored[taken[row["id"]]] = (Stored.NEW if row["inserted"]
                                                else Stored.AGAIN if again else Stored.BEFORE)
        return stored

    async def get(self, tenant_id: str, event_id: str) -> StoredEvent:
        if not is_id(event_id, "evt"):
            raise NotFound(f"event {event_id} not found")
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM router.events WHERE tenant_id = %s AND id = %s", (tenant_id, event_id)
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"event {event_id} not found")
        return StoredEvent(event=event_from_row(row), stored_at=row["stored_at"], routing=row["routing"])
