"""Transform templates in PostgreSQL: versioned, per tenant (rendering is :mod:`services.router.transforms`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from services.router.transforms import Transform, check_template
from switchboard.errors import Conflict, InvalidRequest, NotFound
from switchboard.ids import is_id, new_id

__all__ = ["Template", "TemplateStore", "CACHE_ENTRIES", "CACHE_SOURCE_CHARS"]

#: The templates a store keeps in memory: at most this many, of at most this much source in all
#: (a source is up to 50,000 characters: 10,000 of them would be 500 MB).
CACHE_ENTRIES = 10_000
CACHE_SOURCE_CHARS = 4_000_000


@dataclass(frozen=True)
class Template:
    id: str
    tenant_id: str
    name: str
    version: int
    output: str
    source: str
    created_at: datetime
    updated_at: datetime

    @property
    def transform(self) -> Transform:
        return Transform(self.source, self.output)


class TemplateStore:
    def __init__(self, pool: AsyncConnectionPool[Any], cache_ttl_s: float = 2.0) -> None:
        self.pool = pool
        # Read for every routed event that uses one; a change shows within the TTL.
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[tuple[str, str], tuple[float, Template]] = {}
        self.cached_source_chars = 0

    async def create(self, tenant_id: str, name: str, source: str, output: str) -> Template:
        check_template(source, output)
        if not name or len(name) > 200:
            raise InvalidRequest("name is 1 to 200 characters")
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                """INSERT INTO router.templates (id, tenant_id, name, output, source) VALUES (%s, %s, %s, %s, %s)
                   RETURNING *""", (new_id("tpl"), tenant_id, name, output, source))
            template = Template(**await cur.fetchone())
            await conn.execute(
                "INSERT INTO router.template_versions (template_id, version, output, source) VALUES (%s, 1, %s, %s)",
                (template.id, output, source))
        return template

    async def update(self, tenant_id: str, template_id: str, name: str | None, source: str | None,
                     output: str | None) -> Template:
        """A new version when the source or output changes (a rename is not a new version)."""
        current = await self.get(tenant_id, template_id)
        source, output = source if source is not None else current.source, output or current.output
        check_template(source, output)
        if name is not None and (not name or len(name) > 200):
            raise InvalidRequest("name is 1 to 200 characters")
        changed = (source, output) != (current.source, current.output)
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                """UPDATE router.templates SET name = %s, source = %s, output = %s, version = version + %s,
                          updated_at = now()
                   WHERE tenant_id = %s AND id = %s RETURNING *""",
                (name or current.name, source, output, int(changed), tenant_id, template_id))
            template = Template(**await cur.fetchone())
            if changed:
                await conn.execute(
                    """INSERT INTO router.template_versions (template_id, version, output, source)
                       VALUES (%s, %s, %s, %s)""", (template.id, template.version, output, source))
        self._forget((tenant_id, template_id))
        return template

    async def delete(self, tenant_id: str, template_id: str) -> None:
        await self.get(tenant_id, template_id)
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT id FROM router.routes WHERE tenant_id = %s AND template_id = %s LIMIT 1",
                                     (tenant_id, template_id))
            used = await cur.fetchone()
            if used is not None:
                raise Conflict(f"template {template_id} is used by route {used['id']}; change the route first")
            await conn.execute("DELETE FROM router.templates WHERE tenant_id = %s AND id = %s",
                               (tenant_id, template_id))
        self._forget((tenant_id, template_id))

    async def get(self, tenant_id: str, template_id: str) -> Template:
        if not is_id(template_id, "tpl"):
            raise NotFound(f"template {template_id} not found")
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM router.templates WHERE tenant_id = %s AND id = %s",
                                     (tenant_id, template_id))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"template {template_id} not found")
        return Template(**row)

    async def cached(self, tenant_id: str, template_id: str) -> Template:
        key = (tenant_id, template_id)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            self._cache[key] = self._cache.pop(key)  # the most recently used last
            return hit[1]
        template = await self.get(tenant_id, template_id)
        self._forget(key)
        # Over either bound, the least recently used go first (never the whole cache at once).
        while self._cache and (len(self._cache) >= CACHE_ENTRIES
                               or self.cached_source_chars + len(template.source) > CACHE_SOURCE_CHARS):
            self._forget(next(iter(self._cache)))
        self._cache[key] = (time.monotonic() + self.cache_ttl_s, template)
        self.cached_source_chars += len(template.source)
        return template

    def _forget(self, key: tuple[str, str]) -> None:
        hit = self._cache.pop(key, None)
        if hit is not None:
            self.cached_source_chars -= len(hit[1].source)

    async def list(self, tenant_id: str) -> list[Template]:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM router.templates WHERE tenant_id = %s ORDER BY name, id",
                                     (tenant_id,))
            return [Template(**row) for row in await cur.fetchall()]
