"""Publishing an accepted event to JetStream and awaiting its acknowledgement."""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from switchboard.errors import PayloadTooLarge, Unavailable
from switchboard.events import Event
from switchboard.messaging import encode, event_subject
from switchboard.telemetry import inject_trace_headers, tag_current_span

__all__ = ["JetStreamPublisher"]

logger = logging.getLogger(__name__)


class JetStreamPublisher:
    """Returns only once JetStream has stored the event: 2xx means durable."""

    def __init__(self, nc: NATS, js: JetStreamContext, timeout_s: float, max_message_bytes: int) -> None:
        self.nc = nc
        self.js = js
        self.timeout_s = timeout_s
        self.max_message_bytes = max_message_bytes

    async def __call__(self, event: Event) -> bool:
        # Fail fast while disconnected rather than buffering a publish that
        # could reach the stream after the sender was told 503.
        if not self.nc.is_connected:
            raise Unavailable("event store unavailable; nothing was accepted, retry later")
        tag_current_span(event_id=event.id, tenant_id=event.tenant_id)
        message = encode(event.to_message())
        if len(message) > self.max_message_bytes:
            # A body under the limit can still grow when parsed and re-encoded.
            raise PayloadTooLarge("the event is over the size limit once encoded")
        try:
            ack = await self.js.publish(
                event_subject(event.tenant_id, event.source_id),
                message,
                timeout=self.timeout_s,
                headers=inject_trace_headers({"Nats-Msg-Id": event.id}),
            )
        except Exception as exc:  # timeouts, no responders, stream full, closed connection
            logger.warning("publish failed", extra={"event_id": event.id, "error": f"{type(exc).__name__}: {exc}"})
            raise Unavailable("event store unavailable; nothing was accepted, retry later") from None
        return bool(ack.duplicate)
