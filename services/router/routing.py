"""Routing rules: which routes an event takes, and what makes a valid route.

Pure rules, nothing stored here (routes are kept by :mod:`services.router.route_store`,
events by :mod:`services.router.event_store`), no gRPC, no NATS.

A route matches an event when every condition it has holds: its source (if
set), one of its event-type globs (if any), its payload filters (if any) and,
last, its AI conditions on the event's classification (if any; the event is
classified only when a route that needs it has matched everything else).
An event without a payload (a generic source's XML, text or binary body)
matches no route with filters or AI conditions, and such a route is
explained, saying so. Routes are evaluated in ``position`` order. Actions:

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

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from datetime import datetime, UTC
from typing import Any
from collections.abc import Mapping, Sequence

from services.router.conditions import AIConditions, Filters
from switchboard.bodies import needs_json
from switchboard.errors import InvalidRequest
from switchboard.events import PLATFORM_SOURCE, Event
from switchboard.patterns import check_type_patterns, compiled_patterns, matches_any

__all__ = ["ACTIONS", "Route", "RouteSet", "RouteVerdict", "Plan", "decide", "decision_labels", "endpoint_takes",
           "needs_classification", "parse_route_spec", "route_from_spec", "check_route"]

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

    def payload_refusal(self, event: Event) -> str | None:
        """Why its conditions on the payload (filters, AI) cannot hold for an event without one (None: they can)."""
        if event.has_payload or (self.filters is None and self.ai is None):
            return None
        return needs_json("filters need" if self.filters is not None else "ai conditions need", event.content_type)

    @cached_property
    def _types(self) -> re.Pattern[str] | None:
        return compiled_patterns(self.event_types) if self.event_types else None

    @cached_property
    def takes_platform_events(self) -> bool:
        """Whether it names the platform's own events: its source, or a ``switchboard.`` type pattern.

        A route for "every event" is not one for alerts: a tenant opts in.
        """
        return self.source_id == PLATFORM_SOURCE or any(p.startswith("switchboard.") for p in self.event_types)

    def matches_before_payload(self, event: Event) -> bool:
        """Source and type (and enabled): what holds before any condition on the payload is looked at."""
        if event.source_id == PLATFORM_SOURCE and not self.takes_platform_events:
            return False
        return (self.enabled and (not self.source_id or self.source_id == event.source_id)
                and (self._types is None or self._types.match(event.type) is not None))

    def matches_before_ai(self, event: Event) -> bool:
        """Every condition but the AI ones (no explanation: this runs for every route and event, so
        :meth:`matches_before_payload` is inlined); an event without a payload matches no route with
        conditions on it."""
        if event.source_id == PLATFORM_SOURCE and not self.takes_platform_events:
            return False
        return (self.enabled and (not self.source_id or self.source_id == event.source_id)
                and (self._types is None or self._types.match(event.type) is not None)
                and ((self.filters is None and self.ai is None)
                     or (event.has_payload and (self.filters is None or self.filters.holds(event.payload)))))

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
        refused = self.payload_refusal(event)
        if refused is not None:
            return [*reasons, refused]
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
        kept: list[tuple[Route, str]] = []
        left_out: list[tuple[Route, str]] = []
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


def decision_labels(explanation: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The AI's labels in an explained decision (:meth:`Plan.explain`): category, priority (one of the
    tenant's levels), ...; empty when the event was not classified."""
    return (explanation or {}).get("ai") or {}


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
    payloadless = not event.has_payload
    for route in checked:
        if route.tenant_id != event.tenant_id:
            continue
        matched = route.matches_before_ai(event)
        # A route refused only for the event's lack of a payload is explained: its author would wonder why.
        if not matched and not explain_all and not (payloadless and (route.filters or route.ai)
                                                      and route.matches_before_payload(event)):
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
                  enabled=spec.get("enabled", True), created_at=datetime.now(UTC),
                  action=spec.get("action", "deliver"), position=spec.get("position", 0),
                  filters=spec.get("filters"), ai=spec.get("ai"), template_id=spec.get("template_id"),
                  review=spec.get("review", False))
    check_route(route)
    return route
