"""AIService over gRPC, as the router's dispatcher asks it (:class:`services.router.dispatch.AIClient`).

An AI that cannot answer never stops routing: a failed call gives no labels
(routes with AI conditions then do not match) and the reason is kept in the
event's routing explanation.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from collections.abc import Awaitable, Callable

import grpc

from services.router.labels import Example
from switchboard.events import Event
from switchboard.rpc import ServiceClients
from switchboard.v1 import ai_pb2, ai_pb2_grpc

__all__ = ["GrpcAIClient"]

logger = logging.getLogger(__name__)


def _event(event: Event) -> ai_pb2.AIEvent:
    return ai_pb2.AIEvent(tenant_id=event.tenant_id, source_type=event.source_type or "api", event_type=event.type,
                          payload_json=json.dumps(event.payload))


def _why(exc: grpc.aio.AioRpcError) -> str:
    return f"AI service: {exc.code().name}: {exc.details() or ''}"[:300]


# The tenant's corrected events to show with a classification of an event type: (tenant id, event type).
Examples = Callable[[str, str], Awaitable[list[Example]]]


class GrpcAIClient:
    def __init__(self, clients: ServiceClients, timeout_s: float, examples: Examples | None = None) -> None:
        self.clients = clients
        # A task may walk the whole provider chain.
        self.timeout_s = timeout_s
        self.examples = examples

    def _stub(self) -> ai_pb2_grpc.AIServiceStub:
        return self.clients.stub("ai", ai_pb2_grpc.AIServiceStub)

    async def classify(self, event: Event) -> tuple[dict[str, Any] | None, str | None]:
        try:
            shown = await self.examples(event.tenant_id, event.type) if self.examples else []
        except Exception as exc:  # examples help; their absence never stops a classification
            logger.warning("no examples for the classification", extra={"error": str(exc)})
            shown = []
        examples = [ai_pb2.LabelledExample(source_type=e.source_type, event_type=e.event_type, text=e.text,
                                           category=e.category, priority=e.priority, sentiment=e.sentiment)
                    for e in shown]
        try:
            c = await self._stub().Classify(ai_pb2.ClassifyRequest(event=_event(event), examples=examples),
                                            timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            return None, _why(exc)
        # The reasons and the built-in priority go into the event's routing explanation: why it went where it did.
        return {"category": c.category, "priority": c.priority, "priority_builtin": c.priority_builtin,
                "sentiment": c.sentiment, "confidence": round(c.confidence, 3), "summary": c.summary,
                "reasons": list(c.reasons), "provider": c.meta.provider, "model": c.meta.model,
                "passed_over": list(c.meta.passed_over)}, None

    async def draft_reply(self, event: Event, hold: bool = False) -> tuple[str | None, str | None]:
        if not event.conversation_key:
            return None, "the event belongs to no conversation"
        try:
            reply = await self._stub().DraftReply(
                ai_pb2.DraftReplyRequest(event=_event(event), conversation_key=event.conversation_key,
                                         author=event.author or "unknown", hold=hold),
                timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            return None, _why(exc)
        return reply.text, None

    async def record_agent_turn(self, tenant_id: str, conversation_key: str, text: str) -> None:
        """A held draft was approved and sent: it joins the conversation now."""
        await self._stub().RecordTurn(ai_pb2.RecordTurnRequest(
            tenant_id=tenant_id, conversation_key=conversation_key, role="agent", text=text), timeout=self.timeout_s)
