"""Routes and events: the domain of RouterService (no gRPC, no NATS).

A route matches an event when every condition it has holds: its source (if
set), one of its event-type globs (if any), its payload filters (if any) and,
last, its AI conditions on the event's classification (if any; the event is
classified only when a route that needs it has matched everything else).
Routes are evaluated in ``position`` order. Actions:

- ``deliver``: to each of the route's endpoints, through the route's
  transform (template) when it has one;
- ``reply``: an AI-drafted reply to the event's conversation, delivered to
  the route's endpoints (a Slack, Intercom or Twilio destination), or held
  for a person's approval when the route has ``review``; only a customer's
  message is ever answered (see :mod:`services.router.replies`);
- ``drop``: the event is delivered nowhere, whatever other routes match.

An endpoint named by several matching routes gets one delivery, from the
first of them. Every evaluation is explained: which routes matched and why.
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.router.conditions import AIConditions, Filters
from switchboard.batching import Batcher, distinct_rounds
from switchboard.database import atomically, each_alone_on_bad_data, jsonb
from switchboard.errors import InvalidRequest, NotFound
from switchboard.events import PLATFORM_SOURCE, Event
from switchboard.ids import is_id, new_id
from switchboard.patterns import check_type_patterns, compiled_patterns, matches_any

__all__ = ["ACTIONS", "Route", "RouteSet", "RouteVerdict", "Plan", "decide", "endpoint_takes", "needs_classification", "parse_route_spec",
           "route_from_spec", "check_route",
           "RouteStore", "EventStore", "Stored", "StoredEvent", "event_from_row"]

MAX_ENDPOINTS = 50
ACTIONS = ("deliver", "reply", "drop")
_SPEC_KEYS = {"name", "source_id", "event_types", "endpoint_ids", "enabled", "action", "position", "filters", "ai",
              "template_id", "review"}


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
    action: str = "deliver"
    position: int = 0
    filters: Filters | None = None
    ai: AIConditions | None = None
    template_id: str | None = None
    updated_at: datetime | None = None
    # Reply routes: drafts wait for POST /v1/replies/{id}/approve instead of being sent.
    review: bool = False

    @property
    def needs_ai(self) -> bool:
        return self.ai is not None

    @cached_property
    def _types(self) -> re.Pattern[str] | None:
        return compiled_patterns(self.event_types) if self.event_types else None

    @cached_property
    def takes_platform_events(self) -> bool:
        """Whether it names the platform's own events: its source, or a ``switchboard.`` type pattern.

        A route for "every event" is not one for alerts: a tenant opts in.
        """
        return self.source_id == PLATFORM_SOURCE or any(p.startswith("switchboard.") for p in self.event_types)

    def matches_before_ai(self, event: Event) -> bool:
        """Every condition but the AI ones (no explanation: this runs for every route and event)."""
        if event.source_id == PLATFORM_SOURCE and not self.takes_platform_events:
            return False
        return (self.enabled and (not self.source_id or self.source_id == event.source_id)
                and (self._types is None or self._types.match(event.type) is not None)
                and (self.filters is None or self.filters.holds(event.payload)))

    def why_before_ai(self, event: Event) -> list[str]:
        """The reasons for :meth:`matches_before_ai`'s answer."""
        if not self.enabled:
            return ["disabled"]
        if event.source_id == PLATFORM_SOURCE and not self.takes_platform_events:
            return [f"platform events go only to routes naming source {PLATFORM_SOURCE} or switchboard.* types"]
        reasons = []
        if self.source_id:
            if self.source_id != event.source_id:
                return [f"source {event.source_id} is not {self.source_id}"]
            reasons.append(f"source is {self.source_id}")
        if self.event_types:
            if not matches_any(event.type, self.event_types):
                return [f"type {event.type} matches none of {list(self.event_types)}"]
            reasons.append(f"type {event.type} matches {list(self.event_types)}")
        if self.filters is not None:
            reasons += self.filters.evaluate(event.payload)[1]
        return reasons or ["matches every event"]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "source_id": self.source_id, "event_types": list(self.event_types),
                "endpoint_ids": list(self.endpoint_ids), "enabled": self.enabled, "action": self.action,
                "position": self.position, "filters": self.filters.to_json() if self.filters else None,
                "ai": self.ai.to_json() if self.ai else None, "template_id": self.template_id, "review": self.review}


def endpoint_takes(event_type: str, patterns: Sequence[str] | None) -> bool:
    """Whether an endpoint with these ``event_types`` patterns takes the type (none: every type)."""
    return not patterns or matches_any(event_type, patterns)


@dataclass(frozen=True)
class RouteVerdict:
    route: Route
    matched: bool
    reasons: list[str]


@dataclass(frozen=True)
class Plan:
    verdicts: list[RouteVerdict]
    # (route, endpoint id) for each delivery, deliver and reply routes alike.
    deliveries: list[tuple[Route, str]] = field(default_factory=list)
    dropped_by: Route | None = None
    # Routes that did not match and are not explained (routing explains what matched).
    not_shown: int = 0
    # (route, endpoint id) the routes chose but the endpoint's own event types leave out.
    filtered_out: list[tuple[Route, str]] = field(default_factory=list)

    def within(self, event_type: str, endpoint_types: Mapping[str, Sequence[str]]) -> Plan:
        """The plan without the deliveries whose endpoint does not take ``event_type`` (its
        ``event_types`` patterns; an endpoint not in ``endpoint_types`` keeps its delivery)."""
        kept, left_out = [], []
        for route, endpoint_id in self.deliveries:
            (kept if endpoint_takes(event_type, endpoint_types.get(endpoint_id)) else left_out).append(
                (route, endpoint_id))
        return replace(self, deliveries=kept, filtered_out=self.filtered_out + left_out) if left_out else self

    def explain(self, labels: Mapping[str, Any] | None = None, ai_note: str | None = None) -> dict[str, Any]:
        """The decision as kept with the event and shown by ``GET /v1/events/{id}``.

        ``routes`` holds the routes that matched and those explained anyway (a
        simulation explains every route; routing explains those that got as far
        as their AI conditions); the others are only counted.
        """
        return {
            "routes": [{"route_id": v.route.id, "name": v.route.name, "action": v.route.action,
                        "matched": v.matched, "reasons": v.reasons} for v in self.verdicts],
            "routes_not_shown": self.not_shown,
            "ai": dict(labels) if labels is not None else None,
            "ai_note": ai_note,
            "dropped_by": self.dropped_by.id if self.dropped_by else None,
            "deliveries": [{"route_id": r.id, "endpoint_id": e, "action": r.action} for r, e in self.deliveries],
            "filtered_out": [{"route_id": r.id, "endpoint_id": e, "reason": "the endpoint's event_types leave it out"}
                             for r, e in self.filtered_out],
        }


class RouteSet(list):
    """A tenant's routes in evaluation order, indexed by the first segment of the event types they take.

    Routing 100 routes per event must not cost a hundred full checks: a route
    whose every pattern starts with a literal segment (``invoice.*``,
    ``charge.failed``) is only a candidate for events of that segment; the
    others (``*``, no patterns) are candidates for every event.
    """

    def __init__(self, routes: list[Route]) -> None:
        super().__init__(routes)
        self._by_segment: dict[str, list[int]] = {}
        self._always: list[int] = []
        for position, route in enumerate(routes):
            segments = {p.split(".", 1)[0] for p in route.event_types}
            if not route.event_types or any(any(c in seg for c in "*?[") for seg in segments):
                self._always.append(position)
            else:
                for segment in segments:
                    self._by_segment.setdefault(segment, []).append(position)
        self._candidates: dict[str, list[Route]] = {}

    def candidates(self, event_type: str) -> list[Route]:
        segment = event_type.split(".", 1)[0]
        found = self._candidates.get(segment)
        if found is None:
            positions = sorted({*self._always, *self._by_segment.get(segment, ())})
            found = [self[p] for p in positions]
            if len(self._candidates) < 10_000:
                self._candidates[segment] = found
        return found


def needs_classification(event: Event, routes: list[Route]) -> bool:
    """True when some route needs AI labels and matches everything else."""
    return any(r.needs_ai and r.matches_before_ai(event) for r in routes if r.tenant_id == event.tenant_id)


def decide(event: Event, routes: list[Route], labels: Mapping[str, Any] | None = None,
           explain_all: bool = False) -> Plan:
    """The plan for ``event``. Reasons are given for the routes that matched, and for those that
    failed only on their AI conditions; with ``explain_all`` for every route (slower)."""
    verdicts: list[RouteVerdict] = []
    checked = routes.candidates(event.type) if isinstance(routes, RouteSet) and not explain_all else routes
    skipped = len(routes) - len(checked)
    for route in checked:
        if route.tenant_id != event.tenant_id:
            continue
        matched = route.matches_before_ai(event)
        if not matched and not explain_all:
            skipped += 1
            continue
        reasons = route.why_before_ai(event)
        if matched and route.ai is not None:
            matched, why = route.ai.evaluate(labels)
            reasons = reasons + why
        verdicts.append(RouteVerdict(route, matched, reasons))
    dropped_by = next((v.route for v in verdicts if v.matched and v.route.action == "drop"), None)
    if dropped_by is not None:
        return Plan(verdicts, [], dropped_by, skipped)
    planned: dict[str, Route] = {}
    for verdict in verdicts:
        if verdict.matched:
            for endpoint_id in verdict.route.endpoint_ids:
                planned.setdefault(endpoint_id, verdict.route)
    return Plan(verdicts, [(route, endpoint_id) for endpoint_id, route in planned.items()], None, skipped)


def parse_route_spec(raw: Mapping[str, Any], partial: bool = False) -> dict[str, Any]:
    """A route as given through the API, checked: the columns to store. InvalidRequest otherwise."""
    if not isinstance(raw, Mapping):
        raise InvalidRequest("a route is a JSON object")
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise InvalidRequest(f"unknown route fields: {', '.join(sorted(unknown))}; a route takes "
                             f"{', '.join(sorted(_SPEC_KEYS))}")
    spec: dict[str, Any] = {}
    for name in ("name", "source_id", "template_id"):
        if name in raw:
            value = raw[name]
            if value is not None and (not isinstance(value, str) or len(value) > 200):
                raise InvalidRequest(f"{name} must be a string of at most 200 characters")
            spec[name] = value or None
    if "name" in spec:
        spec["name"] = spec["name"] or "route"
    for name in ("event_types", "endpoint_ids"):
        if name in raw:
            value = raw[name] if raw[name] is not None else []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidRequest(f"{name} must be a list of strings")
            spec[name] = value
    if "event_types" in spec:
        spec["event_types"] = check_type_patterns(spec["event_types"])
    if "endpoint_ids" in spec:
        spec["endpoint_ids"] = list(dict.fromkeys(spec["endpoint_ids"]))
        if len(spec["endpoint_ids"]) > MAX_ENDPOINTS:
            raise InvalidRequest(f"a route has at most {MAX_ENDPOINTS} endpoints")
    for name in ("enabled", "review"):
        if name in raw:
            if not isinstance(raw[name], bool):
                raise InvalidRequest(f"{name} must be true or false")
            spec[name] = raw[name]
    if "action" in raw:
        if raw["action"] not in ACTIONS:
            raise InvalidRequest(f"action is one of {', '.join(ACTIONS)}")
        spec["action"] = raw["action"]
    if "position" in raw:
        if isinstance(raw["position"], bool) or not isinstance(raw["position"], int) or \
                not 0 <= raw["position"] <= 1_000_000:
            raise InvalidRequest("position is an integer from 0 to 1,000,000")
        spec["position"] = raw["position"]
    if "filters" in raw:
        spec["filters"] = Filters.parse(raw["filters"])
    if "ai" in raw:
        spec["ai"] = AIConditions.parse(raw["ai"])
    if not partial:
        spec.setdefault("action", "deliver")
        spec.setdefault("name", "route")
    return spec


def check_route(route: Route) -> None:
    """The rules that hold between fields, checked on the route as it would be stored."""
    if route.action in ("deliver", "reply") and not route.endpoint_ids:
        raise InvalidRequest(f"a {route.action} route needs at least one endpoint_id")
    if route.action == "drop" and (route.endpoint_ids or route.template_id):
        raise InvalidRequest("a drop route has no endpoint_ids and no template_id")
    if route.action == "reply" and route.template_id:
        raise InvalidRequest("a reply route delivers the AI's draft: it takes no template_id")
    if route.review and route.action != "reply":
        raise InvalidRequest("review holds AI-drafted replies: only a reply route takes it")


def route_from_spec(tenant_id: str, spec: Mapping[str, Any], route_id: str = "") -> Route:
    """The route a checked spec describes (not stored); its cross-field rules checked."""
    route = Route(id=route_id, tenant_id=tenant_id, name=spec.get("name") or "route", source_id=spec.get("source_id"),
                  event_types=tuple(spec.get("event_types", ())), endpoint_ids=tuple(spec.get("endpoint_ids", ())),
                  enabled=spec.get("enabled", True), created_at=datetime.now(timezone.utc),
                  action=spec.get("action", "deliver"), position=spec.get("position", 0),
                  filters=spec.get("filters"), ai=spec.get("ai"), template_id=spec.get("template_id"),
                  review=spec.get("review", False))
    check_route(route)
    return route


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
    def __init__(self, pool: AsyncConnectionPool, cache_ttl_s: float = 1.0) -> None:
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
        check_route(replace(current, **{k: tuple(v) if k in ("event_types", "endpoint_ids") else v
                                        for k, v in changes.items()}))
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


def event_from_row(row: dict[str, Any]) -> Event:
    return Event(
        id=row["id"], tenant_id=row["tenant_id"], source_id=row["source_id"], type=row["type"],
        received_at=row["received_at"].timestamp(), payload=row["payload"], headers=row["headers"],
        provider_event_id=row["provider_event_id"], body=row["body"],
        occurred_at=row["occurred_at"].timestamp() if row["occurred_at"] else None,
        conversation_key=row["conversation_key"], source_type=row["source_type"], author=row["author"],
    )


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

    def __init__(self, pool: AsyncConnectionPool, duplicate_window_s: int | None = None) -> None:
        self.pool = pool
        # The events routed at once are stored in one statement and one commit (see Batcher).
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
                          "received_at": datetime.fromtimestamp(e.received_at, timezone.utc),
                          "headers": e.headers, "payload": e.payload, "body": e.body,
                          "occurred_at": datetime.fromtimestamp(e.occurred_at, timezone.utc) if e.occurred_at else None,
                          "conversation_key": e.conversation_key, "source_type": e.source_type, "routing": routing,
                          "author": e.author, "stream_seq": seq}
                         for e, routing, seq in rows]
                cur = await conn.execute(
                    f"""INSERT INTO router.events
                           (id, tenant_id, source_id, type, provider_event_id, received_at, headers, payload, body,
                            occurred_at, conversation_key, source_type, routing, author, stream_seq)
                       -- A JSON null in the records is SQL NULL: a payload of null is kept as jsonb null.
                       SELECT id, tenant_id, source_id, type, provider_event_id, received_at, headers,
                              coalesce(payload, 'null'::jsonb), body, occurred_at, conversation_key, source_type,
                              routing, author, stream_seq
                       FROM jsonb_to_recordset(%s::jsonb)
                           AS g(id text, tenant_id text, source_id text, type text, provider_event_id text,
                                received_at timestamptz, headers jsonb, payload jsonb, body text,
                                occurred_at timestamptz, conversation_key text, source_type text, routing jsonb,
                                author text, stream_seq int8)
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
