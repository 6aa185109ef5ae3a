"""Routes and events: the domain of RouterService (no gRPC, no NATS).

A route matches an event when its source (if set) is the event's source and
one of its event-type globs (if any) matches the event type. An event fans out
to the union of the matched routes' endpoints, one delivery per endpoint even
when several routes name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from switchboard.errors import InvalidRequest, NotFound
from switchboard.events import Event
from switchboard.ids import is_id, new_id
from switchboard.patterns import check_type_patterns, matches_any

__all__ = ["Route", "RouteStore", "EventStore", "StoredEvent", "plan_deliveries", "event_from_row"]

MAX_ENDPOINTS = 50


@dataclass(frozen=True)
class Route:
    id: str
    tenant_id: str
    name: str
    source_id: str | None
    event_types: tuple[str, ...]
    endpoint_ids: tuple[str, ...]
    enabled: bool
    created_at: datetime

    def matches(self, event: Event) -> bool:
        if not self.enabled:
            return False
        if self.source_id and self.source_id != event.source_id:
            return False
        if not self.event_types:
            return True
        return matches_any(event.type, self.event_types)


def plan_deliveries(event: Event, routes: list[Route]) -> list[tuple[Route, str]]:
    """``(route, endpoint_id)`` for each endpoint the event goes to, first route wins."""
    planned: dict[str, Route] = {}
    for route in routes:
        if route.tenant_id != event.tenant_id or not route.matches(event):
            continue
        for endpoint_id in route.endpoint_ids:
            planned.setdefault(endpoint_id, route)
    return [(route, endpoint_id) for endpoint_id, route in planned.items()]


def _route(row: dict[str, Any]) -> Route:
    return Route(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        source_id=row["source_id"],
        event_types=tuple(row["event_types"]),
        endpoint_ids=tuple(row["endpoint_ids"]),
        enabled=row["enabled"],
        created_at=row["created_at"],
    )


class RouteStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @staticmethod
    def validate(name: str, event_types: list[str], endpoint_ids: list[str]) -> None:
        if len(name) > 200:
            raise InvalidRequest("name is at most 200 characters")
        if not endpoint_ids:
            raise InvalidRequest("a route needs at least one endpoint_id")
        if len(endpoint_ids) > MAX_ENDPOINTS:
            raise InvalidRequest(f"a route has at most {MAX_ENDPOINTS} endpoints")
        check_type_patterns(event_types)

    async def create(
        self, tenant_id: str, name: str, source_id: str | None, event_types: list[str], endpoint_ids: list[str]
    ) -> Route:
        self.validate(name, event_types, endpoint_ids)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """INSERT INTO router.routes (id, tenant_id, name, source_id, event_types, endpoint_ids)
                   VALUES (%s, %s, %s, %s, %s, %s) RETURNING *""",
                (new_id("rt"), tenant_id, name or "route", source_id or None, event_types,
                 list(dict.fromkeys(endpoint_ids))),
            )
            return _route(await cur.fetchone())

    async def list(self, tenant_id: str, enabled_only: bool = False) -> list[Route]:
        query = "SELECT * FROM router.routes WHERE tenant_id = %s"
        if enabled_only:
            query += " AND enabled"
        async with self.pool.connection() as conn:
            cur = await conn.execute(query + " ORDER BY id", (tenant_id,))
            return [_route(row) for row in await cur.fetchall()]


def event_from_row(row: dict[str, Any]) -> Event:
    return Event(
        id=row["id"], tenant_id=row["tenant_id"], source_id=row["source_id"], type=row["type"],
        received_at=row["received_at"].timestamp(), payload=row["payload"], headers=row["headers"],
        provider_event_id=row["provider_event_id"], body=row["body"],
        occurred_at=row["occurred_at"].timestamp() if row["occurred_at"] else None,
        conversation_key=row["conversation_key"],
    )


@dataclass(frozen=True)
class StoredEvent:
    event: Event
    stored_at: datetime


class EventStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def store(self, event: Event) -> bool:
        """Insert the event; False when it was already stored (a redelivery)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """INSERT INTO router.events
                       (id, tenant_id, source_id, type, provider_event_id, received_at, headers, payload, body,
                        occurred_at, conversation_key)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (id) DO NOTHING""",
                (event.id, event.tenant_id, event.source_id, event.type, event.provider_event_id,
                 datetime.fromtimestamp(event.received_at, timezone.utc), Jsonb(event.headers),
                 Jsonb(event.payload), event.body,
                 datetime.fromtimestamp(event.occurred_at, timezone.utc) if event.occurred_at else None,
                 event.conversation_key),
            )
            return cur.rowcount == 1

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
        event = event_from_row(row)
        return StoredEvent(event=event, stored_at=row["stored_at"])
