"""The EVENTS consumer: store the event, match routes, publish one delivery per endpoint."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, UTC
from typing import Any

import psycopg
from nats.aio.msg import Msg

from services.router.dispatch import Dispatch, Dispatcher, Outgoing
from services.router.event_store import EventStore, Stored
from services.router.routing import Route
from switchboard.bus import Bus
from switchboard.events import DeliveryMessage, Event, RoutingOutcome, UnstorableEvent
from switchboard.database import describe_error
from switchboard.messaging import ACK, Decision, NEW_DELIVERY_HEADER, retry_after
from switchboard.telemetry import extract_trace_context, start_span, tag_current_span, tracer

logger = logging.getLogger(__name__)
_tracer = tracer(__name__)


def delivery_message(event: Event, outgoing: Outgoing, replay_id: str | None = None,
                     labels: Mapping[str, Any] | None = None, retry: dict[str, Any] | None = None) -> DeliveryMessage:
    """The delivery of ``event`` the dispatcher planned in ``outgoing``, with its type's retry schedule and the
    AI category and priority of its ``labels`` (the decision's, :attr:`Dispatch.labels`)."""
    labels = labels or {}
    return DeliveryMessage(
        event_id=event.id,
        tenant_id=event.tenant_id,
        endpoint_id=outgoing.endpoint_id,
        route_id=outgoing.route.id,
        event_type=event.type,
        source_id=event.source_id,
        received_at=event.received_at,
        payload=outgoing.payload,
        body=outgoing.body,
        content_type=outgoing.content_type,
        conversation_key=event.conversation_key,
        replay_id=replay_id,
        transform_error=outgoing.error,
        category=labels.get("category"),
        priority=labels.get("priority"),
        retry=retry,
    )


def routing_outcome(event: Event, dispatch: Dispatch) -> RoutingOutcome:
    """What analytics is told about the event: routed (a route matched), dropped, or unrouted."""
    if dispatch.plan.dropped_by is not None:
        outcome = "dropped"
    else:
        outcome = "routed" if dispatch.plan.deliveries else "unrouted"
    return RoutingOutcome(
        event_id=event.id, tenant_id=event.tenant_id, source_id=event.source_id, event_type=event.type,
        received_at=event.received_at, routed_at=time.time(), outcome=outcome,
        endpoint_ids=tuple(dict.fromkeys(o.endpoint_id for o in dispatch.outgoing)),
        category=dispatch.labels.get("category"), priority=dispatch.labels.get("priority"),
        route_ids=tuple(v.route.id for v in dispatch.plan.verdicts if v.matched))


async def publish_deliveries(bus: Bus, event: Event, outgoing: Sequence[Outgoing], replay_id: str | None = None,
                             labels: Mapping[str, Any] | None = None, outcome: RoutingOutcome | None = None,
                             retry: dict[str, Any] | None = None) -> None:
    """Queue the deliveries of ``event`` as the dispatcher planned them; returns once JetStream has them all
    (an event fanned out to 100 endpoints costs one wait, not 100). Publishing a delivery again (a
    redelivered event, a resumed replay, a retry after one of them failed) is a no-op: see
    switchboard/events.py for each message's id.

    ``labels``: the decision's AI labels; ``outcome``, when given, goes to analytics in the same round;
    ``retry`` is the event type's schedule.
    """
    messages: list = [(delivery_message(event, one, replay_id, labels, retry), {NEW_DELIVERY_HEADER: "1"})
                      for one in outgoing]
    if outcome is not None:
        messages.append((outcome, None))
    await bus.publish_all(messages)


REPLAY_ROUTE = Route(id="replay", tenant_id="", name="replay to one endpoint", source_id=None, event_types=(),
                     endpoint_ids=(), enabled=True, created_at=datetime.fromtimestamp(0, UTC))


def replay_delivery(bus: Bus, dispatcher: Dispatcher):
    """What a replay does with each event: to one endpoint as it was received, or through the routes."""

    async def deliver(event: Event, endpoint_id: str | None, replay_id: str) -> int:
        labels: Mapping[str, Any] | None = None
        if endpoint_id:
            # As it was received, if the endpoint takes its type.
            takes = await dispatcher.takes(event, endpoint_id)
            outgoing = [Outgoing.as_received(REPLAY_ROUTE, endpoint_id, event)] if takes else []
            retry = await dispatcher.retry_schedule(event) if takes else None
        else:
            dispatch = await dispatcher.dispatch(event, replay=True)
            outgoing, labels, retry = dispatch.outgoing, dispatch.labels, dispatch.retry
        await publish_deliveries(bus, event, outgoing, replay_id, labels, retry=retry)
        return len(outgoing)

    return deliver


class EventRouter:
    def __init__(self, bus: Bus, events: EventStore, dispatcher: Dispatcher) -> None:
        self.bus = bus
        self.events = events
        self.dispatcher = dispatcher

    async def handle(self, event: Event, msg: Msg) -> Decision:
        """One EVENTS message (``consume(..., read=...)`` has read it)."""
        with start_span(_tracer, "router.route", parent=extract_trace_context(msg.headers)):
            tag_current_span(event_id=event.id, tenant_id=event.tenant_id)
            return await self.route(event, msg.metadata.sequence.stream)

    async def route(self, event: Event, stream_seq: int | None = None) -> Decision:
        """Store, match and queue the deliveries of ``event``, from the EVENTS message ``stream_seq``."""
        try:
            dispatch = await self.dispatcher.dispatch(event)
            # Stored (with its decision) before any delivery is queued: a delivery never names an unknown event.
            stored = await self.events.insert(event, dispatch.explanation, stream_seq)
            if stored is Stored.BEFORE:
                # Another message with this id (a provider's retry the edge's dedup missed) stored it
                # before the streams' duplicate window: its deliveries were queued then (that message is
                # acked only after that, or is still being retried), and JetStream would no longer
                # collapse them. The storing message itself, however often redelivered (its router
                # stopped between store and publish), still publishes.
                logger.info("event already routed; not routed again", extra={"event_id": event.id})
                return ACK
            await publish_deliveries(self.bus, event, dispatch.outgoing, labels=dispatch.labels,
                                     outcome=routing_outcome(event, dispatch), retry=dispatch.retry)
        except psycopg.DataError as exc:
            # This event can never be stored; keep it in DEAD_LETTERS rather than retry for ever.
            logger.error("event cannot be stored; dead-lettered",
                         extra={"event_id": event.id, "error": describe_error(exc)})
            return await self._dead_letter(event)
        except Exception as exc:
            logger.warning("routing failed; will retry", extra={"event_id": event.id, "error": describe_error(exc)})
            return retry_after(exc, 2.0)
        return ACK

    async def _dead_letter(self, event: Event) -> Decision:
        try:
            await self.bus.publish(UnstorableEvent(event))
        except Exception as exc:
            logger.warning("dead-letter publish failed; will retry", extra={"error": describe_error(exc)})
            return retry_after(exc, 5.0)
        return ACK
