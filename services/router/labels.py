"""People's corrections of the AI labels: kept per event, reported against, and lent to the AI as examples.

A correction (``POST /v1/events/{id}/labels``) gives an event the labels a
person says the AI should have given; the labels left out are the AI's,
confirmed, so every correction judges all of the AI's labels. One per event:
a new one replaces it. It is kept beside the AI's labels of the routing
decision, with the provider and model that gave them, which makes the
accuracy report a count per provider and model (only corrected events count:
an event nobody looked at proves nothing). The corrected events are also the
tenant's few-shot examples (:meth:`LabelStore.examples`, sent with each
classification) and the extra training rows of its local model
(:meth:`LabelStore.page`, read by AIService). Docs: docs/ai.md#learning-from-corrections.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from psycopg_pool import AsyncConnectionPool

from plugins.ai.spec import PRIORITIES as BUILTIN_PRIORITIES, SENTIMENTS  # the scale every provider answers on
from switchboard.event_text import event_text  # the same text AIService reads of an event
from services.router.event_store import StoredEvent
from services.router.routing import decision_labels
from switchboard.errors import InvalidRequest

__all__ = ["BUILTIN_PRIORITIES", "SENTIMENTS", "EventLabels", "Example", "Accuracy", "Correction", "LabelStore",
           "corrected_labels"]

# Examples sent with a classification, and the recent corrections of a tenant they are chosen from.
EXAMPLES = 5
_RECENT = 50
_EXAMPLE_CHARS = 300
_MAX_TENANTS = 10_000


@dataclass(frozen=True)
class EventLabels:
    event_id: str
    category: str
    priority: str | None
    sentiment: str | None
    # The AI's labels at the time (category, priority, sentiment, provider, model); None: not classified.
    ai: dict[str, str] | None
    labelled_by: str
    labelled_at: datetime


@dataclass(frozen=True)
class Example:
    """A corrected event as a few-shot example: what it was, and its labels."""

    source_type: str
    event_type: str
    text: str
    category: str
    priority: str
    sentiment: str


@dataclass(frozen=True)
class Accuracy:
    """One provider and model, judged by the corrected events it classified."""

    provider: str
    model: str
    corrected: int
    category_right: int
    priority_right: int
    sentiment_right: int


@dataclass(frozen=True)
class Correction:
    """A corrected event, as a training row."""

    event_id: str
    source_type: str
    event_type: str
    payload: Any
    category: str
    priority: str
    sentiment: str
    labelled_at: datetime


def corrected_labels(given: Mapping[str, str | None], ai: Mapping[str, Any] | None, categories: Sequence[str],
                     priorities: Sequence[str] = BUILTIN_PRIORITIES) -> dict[str, str | None]:
    """The labels a correction sets: those ``given`` (None: not given), checked against the tenant's
    ``categories`` and ``priorities``, the AI's for the others; InvalidRequest naming the field otherwise."""
    if all(given.get(name) is None for name in ("category", "priority", "sentiment")):
        raise InvalidRequest("give the event's category, priority or sentiment", field="category")
    ai = ai or {}
    labels: dict[str, str | None] = {}
    for name, allowed in (("category", categories), ("priority", priorities), ("sentiment", SENTIMENTS)):
        value = given.get(name)
        if value is None:
            labels[name] = ai.get(name) or None
        elif value not in allowed:
            raise InvalidRequest(f"{name} {value!r} is not one of the tenant's: {', '.join(allowed)}", field=name)
        else:
            labels[name] = value
    if labels["category"] is None:
        raise InvalidRequest("the event was not classified: give its category", field="category")
    return labels


def _example_text(payload: Any) -> str:
    """What a person wrote, or without text the start of the payload, cut short."""
    text = event_text(payload) or json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= _EXAMPLE_CHARS else text[:_EXAMPLE_CHARS] + "…"


def _labels(row: Mapping[str, Any]) -> EventLabels:
    ai = None
    if row["ai_provider"] is not None:
        ai = {name: row[f"ai_{name}"] or "" for name in ("category", "priority", "sentiment", "provider", "model")}
    return EventLabels(row["event_id"], row["category"], row["priority"], row["sentiment"], ai, row["labelled_by"],
                       row["labelled_at"])


class LabelStore:
    """``router.event_labels``; the examples of each tenant are cached ``examples_ttl_s`` per router process
    (this process forgets a tenant's when it labels: other routers see a correction within the TTL)."""

    def __init__(self, pool: AsyncConnectionPool[Any], examples_ttl_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.examples_ttl_s = examples_ttl_s
        self.clock = clock
        self._recent: dict[str, tuple[float, list[Example]]] = {}

    async def label(self, stored: StoredEvent, labels: Mapping[str, str | None], actor: str) -> EventLabels:
        """Keep ``labels`` (see :func:`corrected_labels`) as the event's correction, replacing any."""
        event = stored.event
        ai = decision_labels(stored.routing)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """INSERT INTO router.event_labels
                       (event_id, tenant_id, category, priority, sentiment, ai_category, ai_priority, ai_sentiment,
                        ai_provider, ai_model, received_at, labelled_by)
                   VALUES (%(event)s, %(tenant)s, %(category)s, %(priority)s, %(sentiment)s, %(ai_category)s,
                           %(ai_priority)s, %(ai_sentiment)s, %(ai_provider)s, %(ai_model)s,
                           to_timestamp(%(received)s), %(actor)s)
                   ON CONFLICT (event_id) DO UPDATE
                   SET category = EXCLUDED.category, priority = EXCLUDED.priority, sentiment = EXCLUDED.sentiment,
                       ai_category = EXCLUDED.ai_category, ai_priority = EXCLUDED.ai_priority,
                       ai_sentiment = EXCLUDED.ai_sentiment, ai_provider = EXCLUDED.ai_provider,
                       ai_model = EXCLUDED.ai_model, labelled_by = EXCLUDED.labelled_by, labelled_at = now()
                   RETURNING *""",
                {"event": event.id, "tenant": event.tenant_id, **labels,
                 **{f"ai_{name}": ai.get(name) or None
                    for name in ("category", "priority", "sentiment", "provider", "model")},
                 "received": event.received_at, "actor": actor or "-"})
            row = await cur.fetchone()
        self._recent.pop(event.tenant_id, None)
        return _labels(row)

    async def get(self, tenant_id: str, event_id: str) -> EventLabels | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM router.event_labels WHERE tenant_id = %s AND event_id = %s",
                                     (tenant_id, event_id))
            row = await cur.fetchone()
        return _labels(row) if row else None

    async def accuracy(self, tenant_id: str, days: int) -> list[Accuracy]:
        """Per provider and model, over the corrected events received in the last ``days`` that it classified."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT ai_provider AS provider, coalesce(ai_model, '') AS model, count(*) AS corrected,
                          count(*) FILTER (WHERE category = ai_category) AS category_right,
                          count(*) FILTER (WHERE priority = ai_priority) AS priority_right,
                          count(*) FILTER (WHERE sentiment = ai_sentiment) AS sentiment_right
                   FROM router.event_labels
                   WHERE tenant_id = %s AND received_at >= now() - %s AND ai_provider IS NOT NULL
                   GROUP BY 1, 2 ORDER BY 1, 2""",
                (tenant_id, timedelta(days=days)))
            return [Accuracy(**row) for row in await cur.fetchall()]

    async def page(self, tenant_id: str, cursor: str | None, limit: int) -> tuple[list[Correction], str | None]:
        """The tenant's corrected events, newest first, with the next page's cursor (None: the last page)."""
        after: tuple[Any, ...] = ()
        clause = ""
        if cursor:
            at, _, event_id = cursor.partition("|")
            try:
                after = (datetime.fromisoformat(at), event_id)
            except ValueError:
                raise InvalidRequest("cursor is not one this listing gave", field="cursor") from None
            clause = "AND (l.labelled_at, l.event_id) < (%s, %s)"
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"""SELECT l.event_id, e.source_type, e.type, e.payload, l.category, l.priority, l.sentiment,
                           l.labelled_at
                    FROM router.event_labels l JOIN router.events e ON e.id = l.event_id
                    WHERE l.tenant_id = %s {clause}
                    ORDER BY l.labelled_at DESC, l.event_id DESC LIMIT %s""",
                (tenant_id, *after, limit + 1))
            rows = await cur.fetchall()
        corrections = [Correction(r["event_id"], r["source_type"] or "api", r["type"], r["payload"], r["category"],
                                  r["priority"] or "", r["sentiment"] or "", r["labelled_at"]) for r in rows[:limit]]
        last = corrections[-1] if len(rows) > limit else None
        return corrections, f"{last.labelled_at.isoformat()}|{last.event_id}" if last else None

    async def examples(self, tenant_id: str, event_type: str, count: int = EXAMPLES) -> list[Example]:
        """Up to ``count`` of the tenant's recent corrections to show a model: those of the same event type
        first, then the others, most recent first within each."""
        recent = await self._recent_examples(tenant_id)
        same = [example for example in recent if example.event_type == event_type]
        others = [example for example in recent if example.event_type != event_type]
        return (same + others)[:count]

    async def _recent_examples(self, tenant_id: str) -> list[Example]:
        hit = self._recent.get(tenant_id)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT e.source_type, e.type, e.payload, l.category, l.priority, l.sentiment
                   FROM router.event_labels l JOIN router.events e ON e.id = l.event_id
                   WHERE l.tenant_id = %s ORDER BY l.labelled_at DESC, l.event_id DESC LIMIT %s""",
                (tenant_id, _RECENT))
            rows = await cur.fetchall()
        recent = [Example(r["source_type"] or "api", r["type"], _example_text(r["payload"]), r["category"],
                          r["priority"] or "", r["sentiment"] or "") for r in rows]
        if len(self._recent) >= _MAX_TENANTS:
            self._recent.clear()
        self._recent[tenant_id] = (self.clock() + self.examples_ttl_s, recent)
        return recent
