"""The routes' store: a tenant's routes in PostgreSQL (``router.routes``), and the
short cache of its enabled ones that every event reads.

What a route is, and the rules it must follow, are in :mod:`services.router.routing`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any
from collections.abc import Mapping

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.router.conditions import AIConditions, Filters
from services.router.routing import Route, RouteSet, check_route, route_from_spec
from switchboard.errors import NotFound
from switchboard.ids import is_id, new_id

__all__ = ["RouteStore"]


def _route(row: dict[str, Any]) -> Route:
    return Route(
        id=row["id"], tenant_id=row["tenant_id"], name=row["name"], source_id=row["source_id"],
        event_types=tuple(row["event_types"]), endpoint_ids=tuple(row["endpoint_ids"]), enabled=row["enabled"],
        created_at=row["created_at"], action=row["action"], position=row["position"],
        filters=Filters.parse(row["filters"]), ai=AIConditions.parse(row["ai"]), template_id=row["template_id"],
        updated_at=row["updated_at"], review=row["review"],
    )


def _columns(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Spec values as stored: conditions as JSON."""
    values = dict(spec)
    for name in ("filters", "ai"):
        if name in values:
            values[name] = Jsonb(values[name].to_json()) if values[name] is not None else None
    return values


class RouteStore:
    def __init__(self, pool: AsyncConnectionPool[Any], cache_ttl_s: float = 1.0) -> None:
        self.pool = pool
        # Every event reads its tenant's enabled routes: a short cache keeps
        # that off the database (a change shows within the TTL in every
        # router process, at once in the one that made it).
        self.cache_ttl_s = cache_ttl_s
        self._enabled: dict[str, tuple[float, RouteSet]] = {}

    async def enabled(self, tenant_id: str) -> RouteSet:
        """The tenant's enabled routes in evaluation order, at most ``cache_ttl_s`` old."""
        now = time.monotonic()
        cached = self._enabled.get(tenant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        routes = RouteSet(await self.list(tenant_id, enabled_only=True))
        if len(self._enabled) > 10_000:
            self._enabled.clear()
        self._enabled[tenant_id] = (now + self.cache_ttl_s, routes)
        return routes

    async def create(self, tenant_id: str, spec: Mapping[str, Any]) -> Route:
        """A route from a checked spec (:func:`parse_route_spec`)."""
        draft = route_from_spec(tenant_id, spec)
        self._enabled.pop(tenant_id, None)
        values = _columns({"name": draft.name, "source_id": draft.source_id, "event_types": list(draft.event_types),
                           "endpoint_ids": list(draft.endpoint_ids), "enabled": draft.enabled,
                           "action": draft.action, "position": draft.position, "filters": draft.filters,
                           "ai": draft.ai, "template_id": draft.template_id, "review": draft.review})
        names = ", ".join(values)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"""INSERT INTO router.routes (id, tenant_id, {names})
                    VALUES (%(id)s, %(tenant)s, {", ".join(f"%({n})s" for n in values)}) RETURNING *""",
                {**values, "id": new_id("rt"), "tenant": tenant_id})
            return _route(await cur.fetchone())

    async def update(self, tenant_id: str, route_id: str, changes: Mapping[str, Any]) -> Route:
        current = await self.get(tenant_id, route_id)
        changed: dict[str, Any] = {k: tuple(v) if k in ("event_types", "endpoint_ids") else v
                                   for k, v in changes.items()}
        check_route(replace(current, **changed))
        if not changes:
            return current
        self._enabled.pop(tenant_id, None)
        values = _columns(changes)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"""UPDATE router.routes SET {"".join(f"{n} = %({n})s, " for n in values)}updated_at = now()
                    WHERE tenant_id = %(tenant)s AND id = %(id)s RETURNING *""",
                {**values, "tenant": tenant_id, "id": route_id})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"route {route_id} not found")
        return _route(row)

    async def delete(self, tenant_id: str, route_id: str) -> None:
        self._enabled.pop(tenant_id, None)
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM router.routes WHERE tenant_id = %s AND id = %s",
                                     (tenant_id, route_id))
        if cur.rowcount == 0:
            raise NotFound(f"route {route_id} not found")

    async def get(self, tenant_id: str, route_id: str) -> Route:
        if not is_id(route_id, "rt"):
            raise NotFound(f"route {route_id} not found")
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM router.routes WHERE tenant_id = %s AND id = %s",
                                     (tenant_id, route_id))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"route {route_id} not found")
        return _route(row)

    async def list(self, tenant_id: str, enabled_only: bool = False) -> list[Route]:
        query = "SELECT * FROM router.routes WHERE tenant_id = %s"
        if enabled_only:
            query += " AND enabled"
        async with self.pool.connection() as conn:
            cur = await conn.execute(query + " ORDER BY position, created_at, id", (tenant_id,))
            return [_route(row) for row in await cur.fetchall()]
