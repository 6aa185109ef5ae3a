"""Routing one event: classify it if a route needs it, decide, transform, draft replies.

Used alike by the EVENTS consumer, by replays and by route simulation (which
sends nothing and drafts no reply). The AI is reached through
:class:`AIClient` and the endpoints' own event-type filters through
:class:`EndpointTypes`, so this module has no gRPC in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any, Protocol, cast
from collections.abc import Mapping, Sequence

from services.router.event_catalogue import EventCatalogue
from services.router.route_store import RouteStore
from services.router.routing import (
    Plan,
    Route,
    decide,
    decision_labels,
    endpoint_takes,
    needs_classification,
    parse_route_spec,
    route_from_spec,
)
from services.router.replies import ReplyStore, why_not_answered
from services.router.templates import TemplateStore
from services.router.transforms import TransformError
from switchboard.bodies import needs_json
from switchboard.errors import InvalidRequest, NotFound
from switchboard.events import Event

__all__ = ["AIClient", "EndpointTypes", "Outgoing", "Dispatch", "Dispatcher", "template_context"]

SIMULATED_REPLY = "(an AI-drafted reply to the conversation)"


class AIClient(Protocol):
    async def classify(self, event: Event) -> tuple[dict[str, Any] | None, str | None]:
        """``(labels, None)``, or ``(None, why not)`` when no classification could be had."""

    async def draft_reply(self, event: Event, hold: bool = False) -> tuple[str | None, str | None]:
        """``(reply, None)``, or ``(None, why not)``; ``hold``: the draft is not sent yet, so it does not
        join the conversation (it does when approved)."""


class EndpointTypes(Protocol):
    async def of(self, tenant_id: str) -> Mapping[str, Sequence[str]]:
        """Each of the tenant's endpoints' ``event_types`` patterns (none: it takes every type)."""


@dataclass(frozen=True)
class Outgoing:
    """One delivery to publish."""

    route: Route
    endpoint_id: str
    payload: Any
    # The exact bytes to send; None: the payload, as JSON.
    body: bytes | None
    # Set when the transform or the reply failed: recorded on the delivery, nothing sent.
    error: str | None = None
    # The Content-Type of ``body``; None: application/json.
    content_type: str | None = None

    @classmethod
    def as_received(cls, route: Route, endpoint_id: str, event: Event) -> Outgoing:
        """The event as it came: its exact bytes, with their Content-Type."""
        return cls(route, endpoint_id, event.payload, event.body, content_type=event.content_type or None)


@dataclass(frozen=True)
class Dispatch:
    plan: Plan
    outgoing: list[Outgoing]
    # The explained decision, as kept with the event.
    explanation: dict[str, Any]
    # The event type's retry schedule, stamped on each delivery (None: the endpoints' own).
    retry: dict[str, Any] | None = None

    @property
    def labels(self) -> Mapping[str, Any]:
        """The AI's labels, when the event was classified (empty otherwise)."""
        return decision_labels(self.explanation)


def template_context(event: Event, labels: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a transform template sees; InvalidRequest when given labels are not an object (a template test)."""
    if labels is not None and not isinstance(labels, Mapping):
        raise InvalidRequest("ai must be a JSON object of labels (category, priority, ...) or null")
    def iso(ts: float | None) -> str | None:
        return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None

    return {
        "event": {"id": event.id, "type": event.type, "source_id": event.source_id, "source_type": event.source_type,
                  "received_at": iso(event.received_at), "occurred_at": iso(event.occurred_at),
                  "conversation_key": event.conversation_key, "author": event.author},
        "payload": event.payload,
        "ai": dict(labels) if labels is not None else None,
    }


def reply_outgoing(route: Route, endpoint_id: str, text: str | None, error: str | None) -> Outgoing:
    """The delivery of a drafted reply (or of why there is none: recorded as failed, nothing sent)."""
    return Outgoing(route, endpoint_id, {"text": text} if text else None, None, None if text else error)


class Dispatcher:
    def __init__(self, routes: RouteStore, templates: TemplateStore, ai: AIClient, replies: ReplyStore,
                 endpoint_types: EndpointTypes, catalogue: EventCatalogue | None = None) -> None:
        self.routes = routes
        self.templates = templates
        self.ai = ai
        self.replies = replies
        self.endpoint_types = endpoint_types
        # The tenants' event types, for their retry schedules (None: no schedules).
        self.catalogue = catalogue

    async def dispatch(self, event: Event, routes: list[Route] | None = None, simulate: bool = False,
                       replay: bool = False) -> Dispatch:
        """Plan the event's deliveries; a simulation explains every route and drafts no reply, and a
        replay never answers a conversation again."""
        if routes is None:
            routes = await self.routes.enabled(event.tenant_id)
        labels, note = None, None
        if needs_classification(event, routes):
            labels, note = await self.ai.classify(event)
        elif not event.has_payload and any(r.needs_ai for r in routes if r.tenant_id == event.tenant_id):
            note = needs_json("AI classification needs", event.content_type)
        plan = decide(event, routes, labels, explain_all=simulate)
        if plan.deliveries:
            # Decided here, so that the explanation kept with the event names only deliveries made.
            plan = plan.within(event.type, await self.endpoint_types.of(event.tenant_id))
        outgoing: list[Outgoing] = []
        transforms: list[dict[str, Any]] = []
        replying = [(route, endpoint_id) for route, endpoint_id in plan.deliveries if route.action == "reply"]
        reply, reply_explained = await self._reply(event, replying, simulate, replay) if replying else (None, None)
        for route, endpoint_id in plan.deliveries:
            if route.action == "reply":
                if reply is not None:
                    outgoing.append(reply_outgoing(route, endpoint_id, *reply))
            elif route.template_id:
                sent, used = await self._transformed(event, route, endpoint_id, labels)
                outgoing.append(sent)
                transforms.append(used)
            else:
                outgoing.append(Outgoing.as_received(route, endpoint_id, event))
        explanation = plan.explain(labels, note)
        explanation["transforms"] = transforms
        if reply_explained is not None:
            explanation["reply"] = reply_explained
        retry = await self.retry_schedule(event) if outgoing else None
        if retry is not None:
            explanation["retry"] = {"event_type": event.type, **retry}
        return Dispatch(plan, outgoing, explanation, retry)

    async def retry_schedule(self, event: Event) -> dict[str, Any] | None:
        """The retry schedule the catalogue gives the event's type (None: its deliveries follow their
        endpoints' retry options)."""
        if self.catalogue is None:
            return None
        return (await self.catalogue.schedules(event.tenant_id)).get(event.type)

    async def _reply(self, event: Event, replying: list[tuple[Route, str]], simulate: bool,
                     replay: bool) -> tuple[tuple[str | None, str | None] | None, dict[str, Any]]:
        """The event's one reply for all its reply routes: ``((text, error) or None, explanation)``.

        None sends nothing: the guard refused, the budget is spent, or the
        draft is held for review (or was rejected).
        """
        held = any(route.review for route, _ in replying)
        refused = (why_not_answered(event) or ("a replay never answers a conversation again" if replay else None)
                   or (None if event.has_payload else needs_json("a reply needs", event.content_type)))
        if refused:
            return None, {"skipped": refused}
        if simulate:
            return (None if held else (SIMULATED_REPLY, None)), {"simulated": True, "held": held}
        draft, spent = await self.replies.reserve(event, replying[0][0].id, [e for _, e in replying], held)
        if draft is None:
            return None, {"skipped": f"the conversation's reply budget is spent: {spent} drafts in the last "
                                     f"{self.replies.window.total_seconds() / 60:g} minutes"}
        if draft.status == "drafting":  # new, or a draft a crashed router left unfinished
            text, why = await self.ai.draft_reply(event, hold=held)
            draft = await self.replies.finish(draft, text, None if text else f"no reply drafted: {why}", held)
        explained = {"reply_id": draft.id, "status": draft.status}
        if draft.status in ("sent", "approved"):
            return (draft.text, None), explained
        if draft.status == "failed":
            return (None, draft.error), explained
        return None, explained

    async def takes(self, event: Event, endpoint_id: str) -> bool:
        """Whether the endpoint takes the event's type (a replay to one endpoint)."""
        return endpoint_takes(event.type, (await self.endpoint_types.of(event.tenant_id)).get(endpoint_id))

    async def simulate(self, event: Event, proposed: list[Mapping[str, Any]] | None = None
                       ) -> tuple[dict[str, Any], list[Outgoing]]:
        """What would happen to ``event`` with the current routes or the ``proposed`` specs (the explained
        decision, and what would be sent); nothing is sent."""
        routes = None
        if proposed is not None:
            if not isinstance(proposed, list) or len(proposed) > 200:
                raise InvalidRequest("routes is a list of at most 200 route specs")
            routes = [route_from_spec(event.tenant_id, parse_route_spec(spec), f"proposed-{n + 1}")
                      for n, spec in enumerate(proposed)]
        dispatch = await self.dispatch(event, routes, simulate=True)
        return dispatch.explanation, dispatch.outgoing

    async def _transformed(self, event: Event, route: Route, endpoint_id: str,
                           labels: Mapping[str, Any] | None) -> tuple[Outgoing, dict[str, Any]]:
        try:
            # Only a route with a template is transformed (see dispatch).
            template = await self.templates.cached(event.tenant_id, cast(str, route.template_id))
        except NotFound:
            error = f"template {route.template_id} no longer exists"
            return (Outgoing(route, endpoint_id, event.payload, None, error),
                    {"route_id": route.id, "template_id": route.template_id, "error": error})
        used = {"route_id": route.id, "template_id": template.id, "version": template.version}
        try:
            if not event.has_payload:
                raise TransformError(needs_json("transforms need", event.content_type))
            rendered = template.transform.render(template_context(event, labels))
        except TransformError as exc:
            error = f"transform {template.id} v{template.version} failed: {exc}"
            return Outgoing(route, endpoint_id, event.payload, None, error), {**used, "error": str(exc)}
        return Outgoing(route, endpoint_id, rendered.payload, rendered.body.encode()), used
