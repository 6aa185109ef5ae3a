"""Publishing an accepted event to JetStream and awaiting its acknowledgement.

An event that carries a provider delivery id (or an API idempotency key) has
an id derived from it, and that id is remembered in the KV bucket
EVENT_DEDUP for SWITCHBOARD_DEDUP_WINDOW (3 days): the stream's own duplicate
window (2 h) is shorter than a provider's retries (Stripe: 3 days). The order
keeps every accepted event: look up (seen: answer duplicate, publish
nothing), publish (``Nats-Msg-Id`` still collapses retries racing each other),
then remember. A look-up or a record that fails is logged and counted and
never refuses the event: the stream's window and the router (which never
routes a stored event twice) still stand behind it.
"""

from __future__ import annotations

import logging
import time

from nats.aio.client import Client as NATS

from switchboard import metrics
from switchboard.errors import PayloadTooLarge, Unavailable
from switchboard.events import Event
from switchboard.bus import Bus
from switchboard.messaging import DEDUP_BUCKET, StreamPublisher, encode
from switchboard.telemetry import tag_current_span

__all__ = ["JetStreamPublisher", "SeenEventIds"]

logger = logging.getLogger(__name__)

# The record comes after the ack and only delays the answer: never given more than what is left of the
# publish timeout, but always a moment.
_MIN_RECORD_TIMEOUT_S = 0.25


class SeenEventIds:
    """The ids of accepted events with a provider delivery id, in the JetStream KV bucket EVENT_DEDUP.

    Each entry expires with the bucket's max age (the dedup window). Reads are
    direct gets (any replica answers, no JetStream API round trip).
    """

    def __init__(self, nc: NATS, bucket: str = DEDUP_BUCKET, stream: StreamPublisher | None = None) -> None:
        self.nc = nc
        self.stream = stream or StreamPublisher(nc)
        self._key_prefix = f"$KV.{bucket}."
        self._get_prefix = f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}."

    async def contains(self, event_id: str, timeout_s: float) -> bool:
        """Whether ``event_id`` was accepted within the dedup window; raises when the bucket cannot answer."""
        answer = await self.nc.request(self._get_prefix + event_id, b"", timeout=timeout_s)
        headers = answer.headers or {}
        status = headers.get("Status")
        if status == "404":
            return False
        if status is not None or "Nats-Sequence" not in headers:
            raise RuntimeError(f"dedup look-up answered {status} {headers.get('Description', '')}".strip())
        # An operator's `nats kv del` leaves a marker: the id is forgotten.
        return headers.get("KV-Operation") not in ("DEL", "PURGE")

    async def add(self, event_id: str, timeout_s: float) -> None:
        """Remember ``event_id`` for the dedup window; returns once JetStream has stored it."""
        await self.stream.publish(self._key_prefix + event_id, b"", timeout=timeout_s)


class JetStreamPublisher:
    """Returns only once JetStream has stored the event: 2xx means durable.

    With ``seen``, an event with a provider delivery id already accepted within
    the dedup window is answered duplicate without being published again.
    """

    def __init__(self, nc: NATS, timeout_s: float, max_message_bytes: int, seen: SeenEventIds | None = None) -> None:
        self.nc = nc
        self.bus = Bus(seen.stream if seen is not None else StreamPublisher(nc), timeout_s)
        self.timeout_s = timeout_s
        self.max_message_bytes = max_message_bytes
        self.seen = seen

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
        # Only a derived id can come again; a new one needs no look-up.
        remembered = self.seen if event.provider_event_id else None
        # The look-up, the publish and the record share the publish timeout (the look-up at most half).
        deadline = time.monotonic() + self.timeout_s
        if remembered is not None:
            try:
                if await remembered.contains(event.id, self.timeout_s / 2):
                    return True
            except Exception as exc:
                metrics.record_dedup_failure("lookup")
                logger.warning("dedup look-up failed; publishing anyway",
                               extra={"event_id": event.id, "error": f"{type(exc).__name__}: {exc}"})
        timeout_s = deadline - time.monotonic()
        try:
            ack = await self.bus.publish(event, data=message, timeout_s=timeout_s)
        except Exception as exc:  # timeouts, no responders, stream full, closed connection
            logger.warning("publish failed", extra={"event_id": event.id, "error": f"{type(exc).__name__}: {exc}"})
            raise Unavailable("event store unavailable; nothing was accepted, retry later") from None
        # Recorded even when the stream answers duplicate: the first copy may have been stored with its
        # ack lost (the sender was told 503) or its record failed, and the window must start all the same.
        if remembered is not None:
            try:
                await remembered.add(event.id, max(_MIN_RECORD_TIMEOUT_S, deadline - time.monotonic()))
            except Exception as exc:
                # Accepted all the same: a retry after the stream's window is then routed again,
                # and the router, which has the event stored, does not deliver it twice.
                metrics.record_dedup_failure("record")
                logger.warning("dedup record failed", extra={"event_id": event.id,
                                                             "error": f"{type(exc).__name__}: {exc}"})
        return bool(ack.duplicate)
