"""AI-drafted replies and the loop guard around them: the router's domain (no gRPC, no NATS).

A ``reply`` route answers a conversation with a draft from the AI. Three
things keep that from ever talking to itself:

1. **Only customers are answered.** Source plugins mark who wrote each
   conversational event (``Event.author``); a bot's post (the platform's own
   reply coming back), an agent's message or a provider's status callback is
   never answered, whatever the tenant's routes say.
2. **A budget per conversation.** At most ``budget`` drafts per conversation
   in any ``window`` (an hour by default), counted here under a lock on the
   conversation, so a loop that slips past the first guard stops there.
3. **One draft per event.** The draft is kept under an id derived from the
   event: a redelivered event reuses it (no second AI call, the same text,
   no second count against the budget).

A route with ``review`` holds its drafts (status ``held``) until a person
approves (optionally editing the text) or rejects them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from switchboard.errors import Conflict, InvalidRequest, NotFound, Unavailable
from switchboard.events import Event
from switchboard.ids import derived_id, is_id

__all__ = ["DraftUnderWay", "ReplyDraft", "ReplyStore", "REPLY_STATUSES", "MAX_REPLY_CHARS", "reply_id",
           "why_not_answered"]

REPLY_STATUSES = ("drafting", "sent", "held", "approved", "rejected", "failed")
# Chat APIs take a few thousand characters; an edited reply is held to the same.
MAX_REPLY_CHARS = 4000
# Longer than a router waits for a draft (three provider timeouts and a gRPC deadline: 65 s by default).
DRAFT_LEASE = timedelta(minutes=2)


def reply_id(event_id: str) -> str:
    return derived_id("rpl", event_id)


def why_not_answered(event: Event) -> str | None:
    """Why no reply may be drafted for ``event``; None when one may."""
    if event.author != "customer":
        who = f"a {event.author}" if event.author else "an unknown author"
        return f"written by {who}: replies answer customers' messages only"
    if not event.conversation_key:
        return "the event belongs to no conversation"
    return None


@dataclass(frozen=True)
class ReplyDraft:
    id: str
    tenant_id: str
    event_id: str
    conversation_key: str
    route_id: str
    endpoint_ids: tuple[str, ...]
    status: str
    text: str | None
    error: str | None
    created_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None


def _draft(row: dict) -> ReplyDraft:
    return ReplyDraft(**{**row, "endpoint_ids": tuple(row["endpoint_ids"])})


class DraftUnderWay(Unavailable):
    """Another router is drafting this event's reply right now: try the event again shortly."""


class ReplyStore:
    def __init__(self, pool: AsyncConnectionPool[Any], budget: int = 10, window: timedelta = timedelta(hours=1),
                 draft_lease: timedelta = DRAFT_LEASE) -> None:
        self.pool = pool
        self.budget = budget
        self.window = window
        self.draft_lease = draft_lease

    async def reserve(self, event: Event, route_id: str, endpoint_ids: Sequence[str],
                      held: bool) -> tuple[ReplyDraft | None, int]:
        """The event's draft: the one kept (a redelivered event), or a new one in ``drafting``.

        ``(None, spent)`` when the conversation's budget is spent: ``spent``
        drafts within the window already. A kept draft is returned whatever
        the budget; ``held`` is remembered with the new draft (its status once
        written). A kept draft still ``drafting`` within ``draft_lease`` is
        another router's at work (a slow AI outlasts the message's ack wait):
        DraftUnderWay, rather than a second draft and a second AI call. Past
        the lease its router is taken for dead and the draft is taken over.
        """
        assert event.conversation_key
        rid = reply_id(event.id)
        async with self.pool.connection() as conn, conn.transaction():
            # One conversation at a time: two routers counting at once could both pass the budget.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                               (f"router.replies:{event.tenant_id}:{event.conversation_key}",))
            cur = await conn.execute(
                "SELECT *, created_at > now() - %s AS leased FROM router.replies WHERE id = %s FOR UPDATE",
                (self.draft_lease, rid))
            kept = await cur.fetchone()
            if kept is not None:
                leased = kept.pop("leased")
                if kept["status"] != "drafting":
                    return _draft(kept), 0
                if leased:
                    raise DraftUnderWay(f"the reply to event {event.id} is being drafted")
                # Taken over: the lease starts again for this router.
                cur = await conn.execute("UPDATE router.replies SET created_at = now() WHERE id = %s RETURNING *",
                                         (rid,))
                return _draft(await cur.fetchone()), 0
            cur = await conn.execute(
                """SELECT count(*) AS spent FROM router.replies
                   WHERE tenant_id = %s AND conversation_key = %s AND created_at > now() - %s""",
                (event.tenant_id, event.conversation_key, self.window))
            spent = (await cur.fetchone())["spent"]
            if spent >= self.budget:
                return None, spent
            cur = await conn.execute(
                """INSERT INTO router.replies (id, tenant_id, event_id, conversation_key, route_id, endpoint_ids,
                                               status, error)
                   VALUES (%s, %s, %s, %s, %s, %s, 'drafting', %s) RETURNING *""",
                (rid, event.tenant_id, event.id, event.conversation_key, route_id, list(endpoint_ids),
                 "held for review" if held else None))
            return _draft(await cur.fetchone()), spent

    async def finish(self, draft: ReplyDraft, text: str | None, error: str | None, held: bool) -> ReplyDraft:
        """Record how drafting ended: ``sent`` (or ``held``) with its text, or ``failed`` with why."""
        status = "failed" if text is None else ("held" if held else "sent")
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE router.replies SET status = %s, text = %s, error = %s
                   WHERE id = %s AND status = 'drafting' RETURNING *""", (status, text, error, draft.id))
            row = await cur.fetchone()
        return _draft(row) if row else await self.get(draft.tenant_id, draft.id)

    async def get(self, tenant_id: str, rid: str) -> ReplyDraft:
        if not is_id(rid, "rpl"):
            raise NotFound(f"reply {rid} not found")
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM router.replies WHERE tenant_id = %s AND id = %s", (tenant_id, rid))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"reply {rid} not found")
        return _draft(row)

    async def list(self, tenant_id: str, status: str | None = None, conversation_key: str | None = None,
                   limit: int = 50, before: str | None = None) -> list[ReplyDraft]:
        """Newest first; ``before`` is the last id of the previous page."""
        if status is not None and status not in REPLY_STATUSES:
            raise InvalidRequest(f"status is one of {', '.join(REPLY_STATUSES)}")
        if not 1 <= limit <= 200:
            raise InvalidRequest("limit is from 1 to 200")
        query = "SELECT * FROM router.replies WHERE tenant_id = %(tenant)s"
        if status:
            query += " AND status = %(status)s"
        if conversation_key:
            query += " AND conversation_key = %(conversation)s"
        if before:
            if not is_id(before, "rpl"):
                raise InvalidRequest("before is the id of a reply")
            query += (" AND (created_at, id) < (SELECT created_at, id FROM router.replies"
                      " WHERE tenant_id = %(tenant)s AND id = %(before)s)")
        async with self.pool.connection() as conn:
            cur = await conn.execute(query + " ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
                                     {"tenant": tenant_id, "status": status, "conversation": conversation_key,
                                      "before": before, "limit": limit})
            return [_draft(row) for row in await cur.fetchall()]

    async def decide(self, tenant_id: str, rid: str, approve: bool, actor: str, text: str | None = None,
                     send: Callable[[ReplyDraft], Awaitable[None]] | None = None) -> ReplyDraft:
        """Approve (``send`` it, with ``text`` if edited) or reject a held draft; Conflict unless it is held.

        The draft stays locked while it is sent, so two approvals cannot both
        send it; when sending fails nothing changes and the approval can be
        repeated (a delivery queued twice is one delivery: its id is stable).
        """
        if text is not None and not (text.strip() and len(text) <= MAX_REPLY_CHARS):
            raise InvalidRequest(f"text is 1 to {MAX_REPLY_CHARS} characters")
        current = await self.get(tenant_id, rid)
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT status FROM router.replies WHERE id = %s FOR UPDATE", (current.id,))
            status = (await cur.fetchone())["status"]
            if status != "held":
                raise Conflict(f"reply {rid} is {status}, not held for review")
            final = current.text if text is None else text
            if approve and send is not None:
                await send(ReplyDraft(**{**current.__dict__, "text": final}))
            cur = await conn.execute(
                """UPDATE router.replies SET status = %s, text = %s, decided_at = now(), decided_by = %s, error = NULL
                   WHERE id = %s RETURNING *""",
                ("approved" if approve else "rejected", final, actor, current.id))
            return _draft(await cur.fetchone())
