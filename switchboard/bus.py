"""The bus: every message a service publishes to JetStream goes out here.

A message (switchboard/events.py) names its subject, which binds it to its
stream, and its message id, the ``Nats-Msg-Id`` that makes a repeat within the
streams' duplicate window a no-op: the exactly-once steps rest on those ids,
so no publish site writes one. Every publish carries the trace context of the
span it is made in (switchboard/telemetry.py): a retry, a dead letter or a
report to analytics joins its event's trace as its delivery does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence

from nats.aio.client import Client as NATS
from nats.js import api

from switchboard.events import (
    DeadLetter,
    DeliveryMessage,
    Event,
    Report,
    UnstorableEvent,
)
from switchboard.messaging import Publishing, encode
from switchboard.telemetry import inject_trace_headers

__all__ = ["Bus", "Published", "headers_for"]

logger = logging.getLogger(__name__)

Published = Event | DeliveryMessage | DeadLetter | UnstorableEvent | Report


def headers_for(message: Published, trace: Mapping[str, str] | None = None,
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The message's headers: its id, the trace context (``trace``, when the caller made it once for
    several messages, else the current span's), and ``extra``."""
    headers = dict(trace) if trace is not None else inject_trace_headers({})
    headers["Nats-Msg-Id"] = message.message_id
    if extra:
        headers.update(extra)
    return headers


class Bus:
    """Publishes messages and awaits the stream's ack (``js``: a StreamPublisher on the hot paths)."""

    def __init__(self, js: Publishing, timeout_s: float, nc: NATS | None = None) -> None:
        """``nc``: the connection reports go out on without waiting for an ack (None: they wait too)."""
        self.js = js
        self.timeout_s = timeout_s
        self.nc = nc

    async def publish(self, message: Published, *, data: bytes | None = None,
                      headers: Mapping[str, str] | None = None, timeout_s: float | None = None) -> api.PubAck:
        """Publish one message (``data``: its encoding, when the caller has it already)."""
        return await self._publish(message, headers_for(message, extra=headers), data, timeout_s)

    def _publish(self, message: Published, headers: dict[str, str], data: bytes | None = None,
                 timeout_s: float | None = None) -> Awaitable[api.PubAck]:
        return self.js.publish(message.subject, data if data is not None else encode(message.to_message()),
                               timeout=self.timeout_s if timeout_s is None else timeout_s, headers=headers)

    async def publish_all(self, messages: Sequence[tuple[Published, Mapping[str, str] | None]]) -> None:
        """Publish ``(message, extra headers)`` together and await their acks together (one wait, not one
        per message); raises the first failure once all are answered (publishing them again is a no-op).

        Not with nats-py's ``publish_async``: a publish that fails before it is sent (NATS away, its buffer
        full) never gives back that call's permit, and enough of them would stop the publisher for good.
        """
        trace = inject_trace_headers({})  # one trace context for all of them
        answers = await asyncio.gather(*(self._publish(message, headers_for(message, trace, extra))
                                         for message, extra in messages), return_exceptions=True)
        failed = next((a for a in answers if isinstance(a, BaseException)), None)
        if failed is not None:
            raise failed

    async def report(self, report: Report) -> None:
        """Tell analytics; never fails the caller (a lost report costs a figure, never a delivery).

        On ``nc`` it is not acked: the ATTEMPTS stream captures the subject, and not waiting keeps
        reporting off the critical path.
        """
        try:
            if self.nc is not None:
                await self.nc.publish(report.subject, encode(report.to_message()), headers=headers_for(report))
            else:
                await self.publish(report)
        except Exception as exc:
            logger.warning("report to analytics not published", extra={"error": str(exc)})
