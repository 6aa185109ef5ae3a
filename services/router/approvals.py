"""Deciding held replies: an approved draft is queued to its endpoints like any reply, then joins
its conversation (the AI drafts the next reply knowing it was said)."""

from __future__ import annotations

import logging
from typing import Protocol

from services.router.consumer import publish_deliveries
from services.router.dispatch import reply_outgoing
from services.router.replies import ReplyDraft, ReplyStore
from services.router.event_store import EventStore, StoredEvent
from services.router.routing import Route, decision_labels
from switchboard.bus import Bus

__all__ = ["ConversationLog", "Approvals"]

logger = logging.getLogger(__name__)


class ConversationLog(Protocol):
    async def record_agent_turn(self, tenant_id: str, conversation_key: str, text: str) -> None:
        """Remember that the agent said ``text`` in the conversation."""


class Approvals:
    def __init__(self, replies: ReplyStore, events: EventStore, bus: Bus, conversations: ConversationLog) -> None:
        self.replies = replies
        self.events = events
        self.bus = bus
        self.conversations = conversations

    async def approve(self, tenant_id: str, reply_id: str, actor: str, text: str | None = None) -> ReplyDraft:
        """Send the held draft (or ``text`` instead) to its endpoints; Conflict unless it is held."""
        # Read before the draft is locked: the decision holds one connection, never two.
        stored = await self.events.get(tenant_id, (await self.replies.get(tenant_id, reply_id)).event_id)

        async def send(draft: ReplyDraft) -> None:
            await self._send(stored, draft)

        decided = await self.replies.decide(tenant_id, reply_id, True, actor, text, send)
        try:
            await self.conversations.record_agent_turn(tenant_id, decided.conversation_key, decided.text or "")
        except Exception as exc:  # the reply is sent; a missing turn only thins the next draft's context
            logger.warning("approved reply not added to its conversation",
                           extra={"reply_id": reply_id, "error": str(exc)})
        return decided

    async def reject(self, tenant_id: str, reply_id: str, actor: str) -> ReplyDraft:
        return await self.replies.decide(tenant_id, reply_id, False, actor)

    async def _send(self, stored: StoredEvent, draft: ReplyDraft) -> None:
        route = Route(id=draft.route_id, tenant_id=draft.tenant_id, name="approved reply", source_id=None,
                      event_types=(), endpoint_ids=draft.endpoint_ids, enabled=True, created_at=draft.created_at,
                      action="reply")
        # The retry schedule the event's type had when it was routed, as its other deliveries carry it.
        retry = {k: v for k, v in ((stored.routing or {}).get("retry") or {}).items() if k != "event_type"} or None
        outgoing = [reply_outgoing(route, endpoint_id, draft.text, None) for endpoint_id in draft.endpoint_ids]
        await publish_deliveries(self.bus, stored.event, outgoing, labels=decision_labels(stored.routing),
                                 retry=retry)
