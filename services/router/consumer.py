"""The EVENTS consumer: store the event, match routes, publish one delivery per endpoint."""

from __future__ import annotations

import logging

import psycopg
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.router.routing import EventStore, RouteStore, plan_deliveries
from switchboard.events import DeliveryMessage, Event
from switchboard.database import describe_error
from switchboard.messaging import (
    ACK,
    TERM,
    Decision,
    dead_letter_subject,
    decode,
    delivery_subject,
    encode,
    retry_in,
)
from switchboard.telemetry import extract_trace_context, inject_trace_headers, tracer

logger = logging.getLogger(__name__)
_tracer = tracer(__name__)


async def publish_delivery(js: JetStreamContext, event: Event, route_id: str, endpoint_id: str,
                           timeout_s: float, replay_id: str | None = None) -> None:
    """Queue one delivery of ``event`` to ``endpoint_id``.

    Publishing the same delivery again (a redelivered event, a resumed replay)
    is a no-op: its id is the JetStream message id.
    """
    delivery = DeliveryMessage(
        event_id=event.id,
        tenant_id=event.tenant_id,
        endpoint_id=endpoint_id,
        route_id=route_id,
        event_type=event.type,
        source_id=event.source_id,
        received_at=event.received_at,
        payload=event.payload,
        body=event.body,
        conversation_key=event.conversation_key,
        replay_id=replay_id,
    )
    await js.publish(
        delivery_subject(event.tenant_id, endpoint_id),
        encode(delivery.to_message()),
        timeout=timeout_s,
        headers=inject_trace_headers({"Nats-Msg-Id": delivery.delivery_id}),
    )


class EventRouter:
    def __init__(self, js: JetStreamContext, events: EventStore, routes: RouteStore, publish_timeout_s: float) -> None:
        self.js = js
        self.events = events
        self.routes = routes
        self.publish_timeout_s = publish_timeout_s

    async def handle(self, msg: Msg) -> Decision:
        try:
            event = Event.from_message(decode(msg.data))
        except ValueError as exc:
            # A message no router can read will not improve with retries.
            logger.error("unreadable event message dropped", extra={"error": str(exc)})
            return TERM
        with _tracer.start_as_current_span("router.route", context=extract_trace_context(msg.headers)) as span:
            span.set_attribute("switchboard.event_id", event.id)
            span.set_attribute("switchboard.tenant_id", event.tenant_id)
            return await self.route(event)

    async def route(self, event: Event) -> Decision:
        try:
            await self.events.store(event)
            routes = await self.routes.list(event.tenant_id, enabled_only=True)
            for route, endpoint_id in plan_deliveries(event, routes):
                await publish_delivery(self.js, event, route.id, endpoint_id, self.publish_timeout_s)
        except psycopg.DataError as exc:
            # This event can never be stored; keep it in DEAD_LETTERS rather than retry for ever.
            logger.error("event cannot be stored; dead-lettered",
                         extra={"event_id": event.id, "error": describe_error(exc)})
            return await self._dead_letter(event)
        except Exception as exc:
            logger.warning("routing failed; will retry", extra={"event_id": event.id, "error": describe_error(exc)})
            return retry_in(2.0)
        return ACK

    async def _dead_letter(self, event: Event) -> Decision:
        try:
            await self.js.publish(
                dead_letter_subject(event.tenant_id, "router"), encode(event.to_message()),
                timeout=self.publish_timeout_s, headers={"Nats-Msg-Id": f"dead:{event.id}"},
            )
        except Exception as exc:
            logger.warning("dead-letter publish failed; will retry", extra={"error": describe_error(exc)})
            return retry_in(5.0)
        return ACK
