"""AIService's storage: tenant settings, prompt overrides, usage and conversation turns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from datetime import date, datetime, timedelta
from collections.abc import Mapping
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from plugins.ai.spec import Turn
from services.ai.priority_scale import PriorityScale
from services.ai.prompts import BUILTIN, PromptTemplate
from switchboard.secretbox import SecretBox

__all__ = ["TenantAISettings", "UsageRow", "AIStore"]

# A conversation's context: its last turns, within a size and an age.
MAX_TURNS = 20
MAX_TURN_CHARS = 4000
MAX_CONTEXT_CHARS = 12_000
TURN_MAX_AGE = timedelta(days=7)


@dataclass(frozen=True)
class TenantAISettings:
    providers: tuple[str, ...]
    categories: tuple[str, ...]
    # The tenant's own provider keys, by provider name (opened: held in memory only).
    provider_keys: Mapping[str, str] = field(default_factory=dict)
    # The category for events that fit none ("": "other", else the last category).
    fallback_category: str = ""
    # The tenant's priority levels, most urgent first (none: the built-in ones), and the level each built-in
    # one becomes (empty: the default fold).
    priority_levels: tuple[str, ...] = ()
    priority_mapping: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def priority_scale(self) -> PriorityScale:
        # Read for every classification, from settings cached per tenant: made once per copy.
        return PriorityScale.stored(self.priority_levels, self.priority_mapping)


@dataclass(frozen=True)
class UsageRow:
    provider: str
    day: date
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cached: int
    failures: int


class AIStore:
    def __init__(self, pool: AsyncConnectionPool[Any], box: SecretBox, cache_ttl_s: float = 2.0) -> None:
        """``box`` seals the tenants' provider keys at rest."""
        self.pool = pool
        self.box = box
        # Settings and prompts are read for every request and change rarely:
        # other AI processes see a change within the TTL, this one at once.
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[tuple[str, ...], tuple[float, object]] = {}

    async def _cached(self, key: tuple[str, ...], load):
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        value = await load()
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + self.cache_ttl_s, value)
        return value

    def _forget(self, tenant_id: str) -> None:
        self._cache = {k: v for k, v in self._cache.items() if k[1] != tenant_id}

    async def settings(self, tenant_id: str) -> TenantAISettings:
        return await self._cached(("settings", tenant_id), lambda: self._load_settings(tenant_id))

    async def _load_settings(self, tenant_id: str) -> TenantAISettings:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT providers, categories, provider_keys, fallback_category, priority_levels, priority_mapping "
                "FROM ai.tenant_settings WHERE tenant_id = %s",
                (tenant_id,))
            row = await cur.fetchone()
        if row is None:
            return TenantAISettings((), ())
        return self._settings(row)

    def _settings(self, row: Mapping) -> TenantAISettings:
        keys = {name: self.box.open(sealed) for name, sealed in row["provider_keys"].items()}
        return TenantAISettings(tuple(row["providers"]), tuple(row["categories"]), keys, row["fallback_category"],
                                tuple(row["priority_levels"]), dict(row["priority_mapping"]))

    async def save_settings(self, tenant_id: str, providers: tuple[str, ...] | None,
                            categories: tuple[str, ...] | None,
                            provider_keys: Mapping[str, str | None] | None = None,
                            fallback_category: str | None = None, priority_levels: tuple[str, ...] | None = None,
                            priority_mapping: Mapping[str, str] | None = None) -> TenantAISettings:
        """Change the fields given (None keeps one as it is); ``provider_keys`` sets the keys it names
        (None removes one) and keeps the others."""
        self._forget(tenant_id)
        sealed = {name: self.box.seal(key) for name, key in (provider_keys or {}).items() if key}
        removed = [name for name, key in (provider_keys or {}).items() if not key]
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """INSERT INTO ai.tenant_settings (tenant_id, providers, categories, provider_keys, fallback_category,
                                                  priority_levels, priority_mapping)
                   VALUES (%(tenant)s, coalesce(%(providers)s::text[], '{}'), coalesce(%(categories)s::text[], '{}'),
                           %(sealed)s, coalesce(%(fallback)s, ''), coalesce(%(levels)s::text[], '{}'),
                           coalesce(%(mapping)s::jsonb, '{}'))
                   ON CONFLICT (tenant_id) DO UPDATE
                   SET providers = coalesce(%(providers)s::text[], tenant_settings.providers),
                       categories = coalesce(%(categories)s::text[], tenant_settings.categories),
                       provider_keys = (tenant_settings.provider_keys - %(removed)s::text[]) || %(sealed)s,
                       fallback_category = coalesce(%(fallback)s, tenant_settings.fallback_category),
                       priority_levels = coalesce(%(levels)s::text[], tenant_settings.priority_levels),
                       priority_mapping = coalesce(%(mapping)s::jsonb, tenant_settings.priority_mapping),
                       updated_at = now()
                   RETURNING providers, categories, provider_keys, fallback_category, priority_levels,
                             priority_mapping""",
                {"tenant": tenant_id, "providers": list(providers) if providers is not None else None,
                 "categories": list(categories) if categories is not None else None, "sealed": Jsonb(sealed),
                 "removed": removed, "fallback": fallback_category,
                 "levels": list(priority_levels) if priority_levels is not None else None,
                 "mapping": Jsonb(dict(priority_mapping)) if priority_mapping is not None else None},
            )
            row = await cur.fetchone()
        return self._settings(row)

    async def reseal(self) -> int:
        """Seal again, with the current master key, the provider keys sealed with a previous one (or stored
        in the clear); how many tenants' keys changed. A row changed meanwhile is left as it is."""
        changed = 0
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT tenant_id, provider_keys FROM ai.tenant_settings "
                                     "WHERE provider_keys <> '{}'")
            for row in await cur.fetchall():
                keys = row["provider_keys"]
                if all(self.box.is_current(sealed) for sealed in keys.values()):
                    continue
                resealed = {name: self.box.seal(self.box.open(sealed)) for name, sealed in keys.items()}
                cur = await conn.execute(
                    "UPDATE ai.tenant_settings SET provider_keys = %s WHERE tenant_id = %s AND provider_keys = %s",
                    (Jsonb(resealed), row["tenant_id"], Jsonb(keys)))
                changed += cur.rowcount
        self._cache.clear()
        return changed

    async def prompt(self, tenant_id: str, task: str) -> PromptTemplate:
        """The tenant's latest override of the task's template, else the built-in one."""
        return await self._cached(("prompt", tenant_id, task), lambda: self._load_prompt(tenant_id, task))

    async def _load_prompt(self, tenant_id: str, task: str) -> PromptTemplate:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT task, version, system, template FROM ai.prompts WHERE tenant_id = %s AND task = %s
                   ORDER BY version DESC LIMIT 1""", (tenant_id, task))
            row = await cur.fetchone()
        return PromptTemplate(**row) if row else BUILTIN[task]

    async def save_prompt(self, tenant_id: str, task: str, system: str, template: str) -> PromptTemplate:
        """A new version of the tenant's template for the task (checked by the caller)."""
        self._forget(tenant_id)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """INSERT INTO ai.prompts (tenant_id, task, version, system, template)
                   SELECT %(tenant)s, %(task)s, coalesce(max(version), 0) + 1, %(system)s, %(template)s
                   FROM ai.prompts WHERE tenant_id = %(tenant)s AND task = %(task)s
                   RETURNING task, version, system, template""",
                {"tenant": tenant_id, "task": task, "system": system, "template": template})
            return PromptTemplate(**await cur.fetchone())

    async def record_usage(self, tenant_id: str, provider: str, input_tokens: int, output_tokens: int,
                           cost_usd: float, cached: bool, failed: bool) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                """INSERT INTO ai.usage (tenant_id, provider, day, requests, input_tokens, output_tokens, cost_usd,
                                         cached, failures)
                   VALUES (%s, %s, current_date, 1, %s, %s, %s, %s, %s)
                   ON CONFLICT (tenant_id, provider, day) DO UPDATE
                   SET requests = usage.requests + 1, input_tokens = usage.input_tokens + EXCLUDED.input_tokens,
                       output_tokens = usage.output_tokens + EXCLUDED.output_tokens,
                       cost_usd = usage.cost_usd + EXCLUDED.cost_usd, cached = usage.cached + EXCLUDED.cached,
                       failures = usage.failures + EXCLUDED.failures""",
                (tenant_id, provider, input_tokens, output_tokens, cost_usd, int(cached), int(failed)))

    async def usage(self, tenant_id: str, since: date) -> list[UsageRow]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT provider, day, requests, input_tokens, output_tokens, cost_usd, cached, failures
                   FROM ai.usage WHERE tenant_id = %s AND day >= %s ORDER BY day, provider""", (tenant_id, since))
            return [UsageRow(**row) for row in await cur.fetchall()]

    async def add_turn(self, tenant_id: str, conversation_key: str, role: str, text: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                """INSERT INTO ai.conversation_turns (tenant_id, conversation_key, role, text)
                   VALUES (%s, %s, %s, %s)""", (tenant_id, conversation_key, role, text[:MAX_TURN_CHARS]))

    async def turns(self, tenant_id: str, conversation_key: str, now: datetime | None = None) -> tuple[Turn, ...]:
        """The conversation's recent turns, oldest first, within MAX_TURNS, MAX_CONTEXT_CHARS and TURN_MAX_AGE."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT role, text FROM ai.conversation_turns
                   WHERE tenant_id = %s AND conversation_key = %s AND at > coalesce(%s, now()) - %s
                   ORDER BY at DESC, id DESC LIMIT %s""",
                (tenant_id, conversation_key, now, TURN_MAX_AGE, MAX_TURNS))
            rows = await cur.fetchall()
        kept: list[Turn] = []
        size = 0
        for row in rows:  # newest first: the most recent turns are the ones kept
            size += len(row["text"])
            if size > MAX_CONTEXT_CHARS and kept:
                break
            kept.append(Turn(row["role"], row["text"]))
        return tuple(reversed(kept))

    async def prune_turns(self) -> int:
        """Forget turns past the age limit; how many."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM ai.conversation_turns WHERE at < now() - %s", (TURN_MAX_AGE,))
            return cur.rowcount
