"""RouterService over gRPC: a thin translation to and from :mod:`services.router.routing`."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, UTC
from typing import Any
from collections.abc import Iterable

from google.protobuf import struct_pb2

from plugins.sources.spec import AUTHORS
from services.router.approvals import Approvals
from services.router.replay import Replay, ReplayRequest, ReplayStore
from services.router.replies import ReplyDraft
from services.router.dispatch import Dispatcher, template_context
from services.router.event_catalogue import DEFAULT_LIMIT as TYPES_PAGE, EventCatalogue, EventType
from services.router.event_search import DEFAULT_LIMIT, EventQuery, EventSearch, EventSummary
from services.router.event_store import EventStore
from services.router.labels import BUILTIN_PRIORITIES, Accuracy, EventLabels, LabelStore, corrected_labels
from services.router.route_store import RouteStore
from services.router.routing import Route, decision_labels, parse_route_spec
from services.router.templates import Template, TemplateStore
from services.router.transforms import TransformError
from switchboard.bodies import body_text, is_json_media
from switchboard.errors import InvalidRequest, NotFound
from switchboard.events import PLATFORM_SOURCE, Event
from switchboard.protojson import changed_fields, from_message, plain, struct, to_message
from switchboard.rpc import ServiceClients, call, servicer, timestamp
from switchboard.v1 import ai_pb2, ai_pb2_grpc, delivery_pb2, delivery_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from switchboard.v1 import router_pb2 as pb, router_pb2_grpc as rpc


def _route(r: Route) -> pb.Route:
    return pb.Route(
        id=r.id, tenant_id=r.tenant_id, name=r.name, source_id=r.source_id or "",
        event_types=r.event_types, endpoint_ids=r.endpoint_ids, enabled=r.enabled,
        created_at=timestamp(r.created_at), action=r.action, position=r.position,
        filters=to_message(r.filters.to_json(), pb.RouteFilters) if r.filters else None,
        ai=to_message(r.ai.to_json(), pb.AIConditions) if r.ai else None, template_id=r.template_id or "",
        updated_at=timestamp(r.updated_at), review=r.review,
    )


def _reply(r: ReplyDraft) -> pb.ReplyDraft:
    return pb.ReplyDraft(
        id=r.id, tenant_id=r.tenant_id, event_id=r.event_id, conversation_key=r.conversation_key, route_id=r.route_id,
        endpoint_ids=r.endpoint_ids, status=r.status, text=r.text or "", error=r.error or "",
        created_at=timestamp(r.created_at), decided_at=timestamp(r.decided_at), decided_by=r.decided_by or "",
    )


def _template(t: Template) -> pb.Template:
    return pb.Template(id=t.id, tenant_id=t.tenant_id, name=t.name, version=t.version, output=t.output,
                       source=t.source, created_at=timestamp(t.created_at), updated_at=timestamp(t.updated_at))


# What a RouteSpec field named in an update_mask but not set means: its proto default, in the
# domain's terms (no source, no filters, ...), as parse_route_spec takes them.
_CLEARED: dict[str, Any] = {"name": None, "source_id": None, "event_types": [], "endpoint_ids": [], "enabled": True,
                            "action": "deliver", "position": 0, "filters": None, "ai": None, "template_id": None,
                            "review": False}


def _spec_fields(spec: pb.RouteSpec, mask: Iterable[str] | None = None) -> dict[str, Any]:
    """The fields of a spec as parse_route_spec takes them: those set, or (an update) those the mask names."""
    given = plain(spec)
    if mask is None:
        return given
    unknown = sorted(set(mask) - set(_CLEARED))
    if unknown:
        raise InvalidRequest(f"update_mask names unknown route fields: {', '.join(unknown)}", field="update_mask")
    return {name: given.get(name, _CLEARED[name]) for name in mask}


def _given_event(tenant_id: str, given: pb.GivenEvent) -> Event:
    """An event given for a simulation or a template test."""
    if given.author and given.author not in AUTHORS:
        raise InvalidRequest(f"the event's author is one of {', '.join(AUTHORS)}", field="event.author")
    try:
        payload = json.loads(given.payload_json or "null")
    except ValueError:
        raise InvalidRequest("the event's payload_json is not valid JSON", field="event.payload_json") from None
    return Event(id="evt_simulated", tenant_id=tenant_id, source_id=given.source_id or "simulated",
                 type=given.type or "simulated", received_at=time.time(), payload=payload,
                 source_type=given.source_type, conversation_key=given.conversation_key or None,
                 author=given.author or None)


def _shown_body(event: Event) -> dict[str, str]:
    """A body that is not JSON (payload_json shows that one), as text or, when it is not text, in base64."""
    if event.body is None or is_json_media(event.content_type):
        return {}
    text = body_text(event.body)
    return {"body_text": text} if text is not None else {"body_base64": base64.b64encode(event.body).decode()}


def _simulated_body(body: bytes | None) -> dict[str, str]:
    if body is None:
        return {}
    text = body_text(body)
    return {"body": text} if text is not None else {"body_base64": base64.b64encode(body).decode()}


def _replay(r: Replay) -> pb.Replay:
    return pb.Replay(
        id=r.id, tenant_id=r.tenant_id, since=timestamp(r.since), until=timestamp(r.until),
        source_id=r.source_id or "", event_types=r.event_types, endpoint_id=r.endpoint_id or "", status=r.status,
        total=r.total, done=r.done, deliveries=r.deliveries, error=r.error or "",
        created_at=timestamp(r.created_at), updated_at=timestamp(r.updated_at), finished_at=timestamp(r.finished_at),
    )


def _time(value, name: str) -> datetime:
    if not (value.seconds or value.nanos):
        raise InvalidRequest(f"{name} is required")
    return value.ToDatetime(tzinfo=UTC)


def _event_summary(e: EventSummary) -> pb.EventSummary:
    return pb.EventSummary(
        id=e.id, tenant_id=e.tenant_id, source_id=e.source_id, source_type=e.source_type, type=e.type,
        provider_event_id=e.provider_event_id or "", conversation_key=e.conversation_key or "",
        received_at=timestamp(e.received_at), occurred_at=timestamp(e.occurred_at), routed_at=timestamp(e.routed_at),
        status=e.status, category=e.category or "", deliveries=e.deliveries,
    )


def _event_type(t: EventType) -> pb.EventType:
    return pb.EventType(
        id=t.name, tenant_id=t.tenant_id, description=t.description,
        schema=struct(t.schema) if t.schema is not None else None,
        example=to_message(t.example, struct_pb2.Value) if t.example is not None else None,
        deprecated=t.deprecated, validate=t.validate,
        retry=to_message(t.retry.to_json(), pb.EventTypeRetry) if t.retry else None,
        effective_retry=to_message({k: v for k, v in t.retry.effective().items() if v is not None},
                                   pb.EventTypeRetry) if t.retry else None,
        revision=t.revision, created_at=timestamp(t.created_at), updated_at=timestamp(t.updated_at))


def _event_labels(labels: EventLabels) -> pb.EventLabels:
    return pb.EventLabels(id=labels.event_id, category=labels.category, priority=labels.priority or "",
                          sentiment=labels.sentiment or "", ai=pb.AILabels(**labels.ai) if labels.ai else None,
                          labelled_by=labels.labelled_by, labelled_at=timestamp(labels.labelled_at))


def _provider_accuracy(a: Accuracy) -> pb.ProviderAccuracy:
    return pb.ProviderAccuracy(
        provider=a.provider, model=a.model, corrected=a.corrected, category_right=a.category_right,
        priority_right=a.priority_right, sentiment_right=a.sentiment_right,
        accuracy=round(a.category_right / a.corrected, 4), priority_accuracy=round(a.priority_right / a.corrected, 4),
        sentiment_accuracy=round(a.sentiment_right / a.corrected, 4))


# The fields of an event type an update may change, as UpdateEventTypeRequest names them.
_TYPE_FIELDS = ("description", "schema", "example", "deprecated", "validate", "retry")


def _type_fields(request: pb.CreateEventTypeRequest | pb.UpdateEventTypeRequest,
                 names: Iterable[str]) -> dict[str, Any]:
    """The named fields of a request in the catalogue's terms: JSON values, None for one unset."""
    message: Any = request  # HasField by a name only known at run time
    fields: dict[str, Any] = {}
    for name in names:
        if name in ("schema", "example", "retry"):
            fields[name] = from_message(message, name)
        elif message.DESCRIPTOR.fields_by_name[name].has_presence and not message.HasField(name):
            fields[name] = None
        else:
            fields[name] = getattr(message, name)
    return fields


@servicer
class RouterServicer(rpc.RouterServiceServicer):
    def __init__(self, routes: RouteStore, events: EventStore, replays: ReplayStore, templates: TemplateStore,
                 dispatcher: Dispatcher, clients: ServiceClients, approvals: Approvals,
                 search: EventSearch | None = None, catalogue: EventCatalogue | None = None,
                 labels: LabelStore | None = None) -> None:
        self.routes = routes
        self.catalogue = catalogue or EventCatalogue(events.pool)
        self.events = events
        self.search = search or EventSearch(events.pool)
        self.labels = labels or LabelStore(events.pool)
        self.replays = replays
        self.templates = templates
        self.dispatcher = dispatcher
        self.clients = clients
        self.approvals = approvals

    async def _require_endpoints(self, tenant_id: str, endpoint_ids) -> None:
        """Every endpoint must exist and belong to the tenant (NOT_FOUND otherwise)."""
        delivery = self.clients.stub("delivery", delivery_pb2_grpc.DeliveryServiceStub)
        for endpoint_id in dict.fromkeys(endpoint_ids):
            await call(delivery.GetEndpoint(
                delivery_pb2.GetEndpointRequest(tenant_id=tenant_id, id=endpoint_id),
                timeout=self.clients.timeout,
            ))

    async def _require_source(self, tenant_id: str, source_id: str | None) -> None:
        """A source named must be the tenant's own, or the platform's (its alerts); NOT_FOUND otherwise."""
        if source_id and source_id != PLATFORM_SOURCE:
            ingest = self.clients.stub("ingest", ingest_pb2_grpc.IngestServiceStub)
            await call(ingest.GetSource(ingest_pb2.GetSourceRequest(tenant_id=tenant_id, id=source_id),
                                        timeout=self.clients.timeout))

    async def _checked_spec(self, tenant_id: str, fields: dict[str, Any], partial: bool) -> dict[str, Any]:
        spec = parse_route_spec(fields, partial=partial)
        await self._require_source(tenant_id, spec.get("source_id"))
        await self._require_endpoints(tenant_id, spec.get("endpoint_ids", ()))
        if spec.get("ai") is not None and spec["ai"].priority:
            # Priorities are the tenant's own levels, which its AI settings hold.
            _, levels = await self._label_choices(tenant_id)
            spec["ai"].check_priorities(tuple(levels))
        if spec.get("template_id"):
            try:
                await self.templates.get(tenant_id, spec["template_id"])
            except NotFound:
                raise InvalidRequest(f"template {spec['template_id']} not found") from None
        return spec

    async def CreateRoute(self, request, context):
        spec = await self._checked_spec(request.tenant_id, _spec_fields(request.spec), partial=False)
        return _route(await self.routes.create(request.tenant_id, spec))

    async def UpdateRoute(self, request, context):
        await self.routes.get(request.tenant_id, request.id)  # 404 before any 400 about the changes
        mask = list(request.update_mask.paths) if request.update_mask.paths else None
        spec = await self._checked_spec(request.tenant_id, _spec_fields(request.spec, mask), partial=True)
        return _route(await self.routes.update(request.tenant_id, request.id, spec))

    async def GetRoute(self, request, context):
        return _route(await self.routes.get(request.tenant_id, request.id))

    async def DeleteRoute(self, request, context):
        await self.routes.delete(request.tenant_id, request.id)
        return pb.Deleted(id=request.id, deleted=True)

    async def ListRoutes(self, request, context):
        return pb.ListRoutesResponse(routes=[_route(r) for r in await self.routes.list(request.tenant_id)])

    async def SimulateRoutes(self, request, context):
        if request.event_id:
            event = (await self.events.get(request.tenant_id, request.event_id)).event
        else:
            if not request.HasField("event"):
                raise InvalidRequest("give an event_id or an event", field="event")
            event = _given_event(request.tenant_id, request.event)
        proposed = [_spec_fields(spec) for spec in request.routes] if request.routes or request.use_proposed else None
        decision, deliveries = await self.dispatcher.simulate(event, proposed)
        return pb.Simulation(decision=struct(decision), deliveries=[
            pb.SimulatedDelivery(route_id=d.route.id, endpoint_id=d.endpoint_id, action=d.route.action,
                                 payload_json=json.dumps(d.payload), error=d.error, **_simulated_body(d.body))
            for d in deliveries])

    async def CreateTemplate(self, request, context):
        template = await self.templates.create(request.tenant_id, request.name, request.source,
                                               request.output or "json")
        return _template(template)

    async def UpdateTemplate(self, request, context):
        template = await self.templates.update(
            request.tenant_id, request.id, request.name if request.HasField("name") else None,
            request.source if request.HasField("source") else None,
            request.output if request.HasField("output") else None)
        return _template(template)

    async def GetTemplate(self, request, context):
        return _template(await self.templates.get(request.tenant_id, request.id))

    async def ListTemplates(self, request, context):
        return pb.ListTemplatesResponse(templates=[_template(t) for t in await self.templates.list(request.tenant_id)])

    async def DeleteTemplate(self, request, context):
        await self.templates.delete(request.tenant_id, request.id)
        return pb.Deleted(id=request.id, deleted=True)

    async def TestTemplate(self, request, context):
        template = await self.templates.get(request.tenant_id, request.id)
        event = _given_event(request.tenant_id, request.sample)
        try:
            rendered = template.transform.render(template_context(event, from_message(request, "ai")))
        except TransformError as exc:
            return pb.Rendered(ok=False, error=str(exc))
        return pb.Rendered(ok=True, payload_json=json.dumps(rendered.payload), body=rendered.body)

    async def GetEvent(self, request, context):
        stored = await self.events.get(request.tenant_id, request.id)
        e = stored.event
        deliveries = await call(self.clients.stub("delivery", delivery_pb2_grpc.DeliveryServiceStub).ListDeliveries(
            # The store's page limit: an event fans out to at most that many endpoints here.
            delivery_pb2.ListDeliveriesRequest(tenant_id=request.tenant_id, event_id=e.id, limit=1000),
            timeout=self.clients.timeout))
        labels = await self.labels.get(request.tenant_id, e.id)
        return pb.Event(
            id=e.id, tenant_id=e.tenant_id, source_id=e.source_id, type=e.type,
            provider_event_id=e.provider_event_id or "",
            received_at=timestamp(datetime.fromtimestamp(e.received_at, UTC)),
            headers=e.headers, payload_json=json.dumps(e.payload),
            occurred_at=timestamp(datetime.fromtimestamp(e.occurred_at, UTC)) if e.occurred_at else None,
            conversation_key=e.conversation_key or "", source_type=e.source_type,
            routing=struct(stored.routing) if stored.routing is not None else None,
            routed_at=timestamp(stored.stored_at), author=e.author or "", deliveries=deliveries.deliveries,
            content_type=e.content_type, labels=_event_labels(labels) if labels else None, **_shown_body(e),
        )

    async def _label_choices(self, tenant_id: str) -> tuple[list[str], list[str]]:
        """The tenant's categories and priority levels, as AIService has them."""
        settings = await call(self.clients.stub("ai", ai_pb2_grpc.AIServiceStub).GetSettings(
            ai_pb2.GetAISettingsRequest(tenant_id=tenant_id), timeout=self.clients.timeout))
        return list(settings.categories), list(settings.priority_levels) or list(BUILTIN_PRIORITIES)

    async def LabelEvent(self, request, context):
        stored = await self.events.get(request.tenant_id, request.id)
        given = {name: getattr(request, name) if request.HasField(name) else None
                 for name in ("category", "priority", "sentiment")}
        categories, priorities = await self._label_choices(request.tenant_id)
        labels = corrected_labels(given, decision_labels(stored.routing), categories, priorities)
        return _event_labels(await self.labels.label(stored, labels, request.actor))

    async def GetLabelAccuracy(self, request, context):
        days = request.days if request.HasField("days") else 30
        if not 1 <= days <= 365:
            raise InvalidRequest("days is 1 to 365", field="days")
        rows = await self.labels.accuracy(request.tenant_id, days)
        corrected = sum(a.corrected for a in rows)
        right = sum(a.category_right for a in rows)
        return pb.LabelAccuracy(days=days, providers=[_provider_accuracy(a) for a in rows], corrected=corrected,
                                accuracy=round(right / corrected, 4) if corrected else 0.0)

    async def ListCorrections(self, request, context):
        if not request.tenant_id:
            raise InvalidRequest("tenant_id is required", field="tenant_id")
        corrections, cursor = await self.labels.page(request.tenant_id, request.cursor or None,
                                                     min(max(request.limit or 100, 1), 500))
        return pb.ListCorrectionsResponse(next_cursor=cursor or "", corrections=[pb.Correction(
            event_id=c.event_id, source_type=c.source_type, event_type=c.event_type,
            payload_json=json.dumps(c.payload), category=c.category, priority=c.priority, sentiment=c.sentiment,
            labelled_at=timestamp(c.labelled_at)) for c in corrections])

    async def ListEvents(self, request, context):
        page = await self.search.page(request.tenant_id, EventQuery(
            source_id=request.source_id or None, type=request.type or None,
            since=request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None,
            until=request.until.ToDatetime(tzinfo=UTC) if request.HasField("until") else None,
            status=request.status or None, category=request.category or None, cursor=request.cursor or None,
            limit=request.limit if request.HasField("limit") else DEFAULT_LIMIT, route_id=request.route_id or None,
        ))
        return pb.ListEventsResponse(events=[_event_summary(e) for e in page.events], next_cursor=page.next_cursor)

    async def CreateReplay(self, request, context):
        await self._require_source(request.tenant_id, request.source_id)
        if request.endpoint_id:
            await self._require_endpoints(request.tenant_id, [request.endpoint_id])
        replay = await self.replays.create(request.tenant_id, ReplayRequest(
            since=_time(request.since, "since"),
            until=_time(request.until, "until") if request.HasField("until") else datetime.now(UTC),
            source_id=request.source_id or None, event_types=tuple(request.event_types),
            endpoint_id=request.endpoint_id or None,
        ))
        return _replay(replay)

    async def GetReplay(self, request, context):
        return _replay(await self.replays.get(request.tenant_id, request.id))

    async def ListReplays(self, request, context):
        replays = await self.replays.list(request.tenant_id, request.limit or 50)
        return pb.ListReplaysResponse(replays=[_replay(r) for r in replays])

    async def CancelReplay(self, request, context):
        return _replay(await self.replays.cancel(request.tenant_id, request.id))

    async def ListReplies(self, request, context):
        drafts = await self.approvals.replies.list(
            request.tenant_id, request.status or None, request.conversation_key or None,
            request.limit if request.HasField("limit") else 50, request.before or None)
        return pb.ListRepliesResponse(replies=[_reply(d) for d in drafts])

    async def GetReply(self, request, context):
        return _reply(await self.approvals.replies.get(request.tenant_id, request.id))

    async def ApproveReply(self, request, context):
        text = request.text if request.HasField("text") else None
        return _reply(await self.approvals.approve(request.tenant_id, request.id, request.actor, text))

    async def RejectReply(self, request, context):
        return _reply(await self.approvals.reject(request.tenant_id, request.id, request.actor))

    async def CreateEventType(self, request, context):
        fields = _type_fields(request, _TYPE_FIELDS)
        return _event_type(await self.catalogue.create(request.tenant_id, {"name": request.id, **fields}))

    async def GetEventType(self, request, context):
        return _event_type(await self.catalogue.get(request.tenant_id, request.id))

    async def UpdateEventType(self, request, context):
        changes = _type_fields(request, changed_fields(request, _TYPE_FIELDS))
        return _event_type(await self.catalogue.update(request.tenant_id, request.id, changes))

    async def DeleteEventType(self, request, context):
        await self.catalogue.delete(request.tenant_id, request.id)
        return pb.Deleted(id=request.id, deleted=True)

    async def ListEventTypes(self, request, context):
        types, next_cursor = await self.catalogue.page(
            request.tenant_id, request.deprecated or "include",
            {"true": True, "false": False}.get(request.validate), request.cursor or None,
            request.limit if request.HasField("limit") else TYPES_PAGE)
        return pb.ListEventTypesResponse(event_types=[_event_type(t) for t in types], next_cursor=next_cursor or "")
