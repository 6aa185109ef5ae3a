"""The reply loop guard against real PostgreSQL: only customers are answered, a budget per
conversation, one draft per event, drafts held for review until a person decides.

The AI here is a small recording stand-in for AIService (the router's ``AIClient``
protocol); tests/e2e/test_reply_loop.py runs the same guard through the real platform.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from services.router.dispatch import Dispatcher
from services.router.replies import ReplyStore, reply_id
from services.router.route_store import RouteStore
from services.router.routing import parse_route_spec
from services.router.templates import TemplateStore
from switchboard.database import apply_migrations
from switchboard.errors import Conflict, InvalidRequest, NotFound
from switchboard.events import Event
from switchboard.ids import new_id
from tests.services.router.endpoint_types import NO_FILTERS

MIGRATIONS = Path(__file__).parents[3] / "services/router/migrations"


class RecordingAI:
    """Drafts "reply N"; remembers what it was asked."""

    def __init__(self, fail: bool = False) -> None:
        self.drafted: list[tuple[str, bool]] = []
        self.fail = fail

    async def classify(self, event):
        return None, "not used"

    async def draft_reply(self, event, hold=False):
        self.drafted.append((event.id, hold))
        if self.fail:
            return None, "AI service: UNAVAILABLE"
        return f"reply {len(self.drafted)}", None


def message(author: str | None, conversation: str | None = "C1:1", tenant: str = "t1") -> Event:
    return Event(id=new_id("evt"), tenant_id=tenant, source_id="src_slack", type="message", received_at=1.7e9,
                 payload={"event": {"text": "help"}}, conversation_key=conversation, source_type="slack",
                 author=author)


@pytest.fixture
async def setup(pool):
    await apply_migrations(pool, "router", MIGRATIONS)
    routes = RouteStore(pool)

    async def make(budget: int = 10, review: bool = False, ai: RecordingAI | None = None):
        await routes.create("t1", parse_route_spec({"name": "answer", "action": "reply", "endpoint_ids": ["ep_slack"],
                                                    "review": review}))
        await routes.create("t1", parse_route_spec({"name": "log", "endpoint_ids": ["ep_log"], "position": 1}))
        replies = ReplyStore(pool, budget=budget, window=timedelta(hours=1))
        ai = ai or RecordingAI()
        return Dispatcher(routes, TemplateStore(pool), ai, replies, NO_FILTERS), ai, replies

    return make


@pytest.mark.parametrize("author", ["bot", "agent", "system", None])
async def test_only_a_customers_message_is_answered(setup, author) -> None:
    dispatcher, ai, _ = await setup()
    dispatch = await dispatcher.dispatch(message(author))
    assert [o.endpoint_id for o in dispatch.outgoing] == ["ep_log"]  # the deliver route still delivers
    assert ai.drafted == []
    assert "replies answer customers' messages only" in dispatch.explanation["reply"]["skipped"]


async def test_a_customers_message_is_answered_once_even_when_routed_again(setup) -> None:
    dispatcher, ai, replies = await setup()
    event = message("customer")
    first = await dispatcher.dispatch(event)
    again = await dispatcher.dispatch(event)  # a redelivered event
    for dispatch in (first, again):
        reply = next(o for o in dispatch.outgoing if o.endpoint_id == "ep_slack")
        assert reply.payload == {"text": "reply 1"} and reply.error is None
        assert dispatch.explanation["reply"] == {"reply_id": reply_id(event.id), "status": "sent"}
    assert ai.drafted == [(event.id, False)]
    assert [r.status for r in await replies.list("t1")] == ["sent"]


async def test_a_message_without_a_conversation_is_not_answered(setup) -> None:
    dispatcher, ai, _ = await setup()
    dispatch = await dispatcher.dispatch(message("customer", conversation=None))
    assert ai.drafted == [] and dispatch.explanation["reply"]["skipped"] == "the event belongs to no conversation"


async def test_the_budget_stops_a_loop_that_slips_past_the_author_check(setup) -> None:
    dispatcher, ai, _ = await setup(budget=3)
    # Five messages in one conversation at once (as concurrent routers would see them), one elsewhere.
    dispatches = await asyncio.gather(*(dispatcher.dispatch(message("customer")) for _ in range(5)))
    answered = [d for d in dispatches if any(o.endpoint_id == "ep_slack" for o in d.outgoing)]
    refused = [d for d in dispatches if "budget" in d.explanation["reply"].get("skipped", "")]
    assert (len(answered), len(refused), len(ai.drafted)) == (3, 2, 3)
    assert "3 drafts in the last 60 minutes" in refused[0].explanation["reply"]["skipped"]
    other = await dispatcher.dispatch(message("customer", conversation="C2:1"))
    assert any(o.endpoint_id == "ep_slack" for o in other.outgoing) and len(ai.drafted) == 4
    other_tenant = Event(**{**message("customer").__dict__, "tenant_id": "t2"})
    assert (await dispatcher.replies.reserve(other_tenant, "r", ["ep"], False))[0] is not None


async def test_a_failed_draft_is_recorded_and_sent_nowhere(setup) -> None:
    dispatcher, ai, replies = await setup(ai=RecordingAI(fail=True))
    event = message("customer")
    dispatch = await dispatcher.dispatch(event)
    reply = next(o for o in dispatch.outgoing if o.endpoint_id == "ep_slack")
    assert reply.payload is None and reply.error == "no reply drafted: AI service: UNAVAILABLE"
    assert (await replies.get("t1", reply_id(event.id))).status == "failed"


async def test_a_replay_never_answers_a_conversation_again(setup) -> None:
    dispatcher, ai, _ = await setup()
    dispatch = await dispatcher.dispatch(message("customer"), replay=True)
    assert [o.endpoint_id for o in dispatch.outgoing] == ["ep_log"] and ai.drafted == []
    assert dispatch.explanation["reply"]["skipped"] == "a replay never answers a conversation again"


async def test_a_simulation_drafts_nothing_and_stores_nothing(setup) -> None:
    dispatcher, ai, replies = await setup(review=True)
    dispatch = await dispatcher.dispatch(message("customer"), simulate=True)
    assert ai.drafted == [] and await replies.list("t1") == []
    assert dispatch.explanation["reply"] == {"simulated": True, "held": True}


async def test_a_reviewed_route_holds_its_draft_until_a_person_decides(setup) -> None:
    dispatcher, ai, replies = await setup(review=True)
    event, other = message("customer"), message("customer", conversation="C9:1")
    for e in (event, other):
        dispatch = await dispatcher.dispatch(e)
        assert [o.endpoint_id for o in dispatch.outgoing] == ["ep_log"]  # nothing goes to the conversation yet
        assert dispatch.explanation["reply"]["status"] == "held"
    assert ai.drafted == [(event.id, True), (other.id, True)]  # held: not yet part of the conversation
    held = await replies.list("t1", status="held")
    assert {r.event_id for r in held} == {event.id, other.id}

    sent = []

    async def send(draft):
        sent.append((draft.endpoint_ids, draft.text))

    approved = await replies.decide("t1", reply_id(event.id), True, "key_1", "Edited by a person", send)
    assert (approved.status, approved.text, approved.decided_by) == ("approved", "Edited by a person", "key_1")
    assert sent == [(("ep_slack",), "Edited by a person")]
    # Decided once: approving again, or rejecting it now, is a conflict.
    for approve in (True, False):
        with pytest.raises(Conflict):
            await replies.decide("t1", reply_id(event.id), approve, "key_1", send=send)
    # A redelivered event now sends the approved text.
    again = await dispatcher.dispatch(event)
    assert next(o for o in again.outgoing if o.endpoint_id == "ep_slack").payload == {"text": "Edited by a person"}

    rejected = await replies.decide("t1", reply_id(other.id), False, "key_2")
    assert rejected.status == "rejected" and len(sent) == 1
    assert [o.endpoint_id for o in (await dispatcher.dispatch(other)).outgoing] == ["ep_log"]


async def test_a_failed_send_leaves_the_draft_held_for_another_try(setup) -> None:
    dispatcher, _, replies = await setup(review=True)
    event = message("customer")
    await dispatcher.dispatch(event)

    async def broken(draft):
        raise RuntimeError("NATS is away")

    with pytest.raises(RuntimeError):
        await replies.decide("t1", reply_id(event.id), True, "key_1", send=broken)
    assert (await replies.get("t1", reply_id(event.id))).status == "held"


async def test_decisions_are_checked_and_tenant_scoped(setup) -> None:
    dispatcher, _, replies = await setup(review=True)
    event = message("customer")
    await dispatcher.dispatch(event)
    for text in ("", "   ", "x" * 4001):
        with pytest.raises(InvalidRequest):
            await replies.decide("t1", reply_id(event.id), True, "key_1", text)
    for tenant, rid in (("t2", reply_id(event.id)), ("t1", "rpl_" + "0" * 32), ("t1", "nonsense")):
        with pytest.raises(NotFound):
            await replies.decide(tenant, rid, True, "key_1")
    assert await replies.list("t2") == []
    with pytest.raises(InvalidRequest):
        await replies.list("t1", status="maybe")
    page = await replies.list("t1", limit=1)
    assert await replies.list("t1", before=page[0].id) == []


def test_review_is_for_reply_routes_only() -> None:
    from services.router.routing import route_from_spec

    with pytest.raises(InvalidRequest, match="only a reply route"):
        route_from_spec("t1", parse_route_spec({"endpoint_ids": ["ep_1"], "review": True}))
    with pytest.raises(InvalidRequest, match="review must be true or false"):
        parse_route_spec({"endpoint_ids": ["ep_1"], "action": "reply", "review": "yes"})


@pytest.mark.parametrize("labels", [[[1]], "billing", 3])
def test_a_template_test_with_labels_that_are_not_an_object_is_refused(labels) -> None:
    from services.router.dispatch import template_context

    with pytest.raises(InvalidRequest, match="ai must be a JSON object"):
        template_context(message("customer"), labels)
    assert template_context(message("customer"), {"category": "billing"})["event"]["author"] == "customer"


async def test_a_draft_under_way_is_not_drafted_twice_until_its_lease_runs_out(pool, setup) -> None:
    """A slow AI outlasts the message's ack wait, and the event comes back to another router."""
    from services.router.replies import DraftUnderWay

    await setup()
    event = message("customer")
    busy = ReplyStore(pool, draft_lease=timedelta(minutes=2))
    draft, _ = await busy.reserve(event, "rt_1", ["ep_slack"], False)
    assert draft is not None and draft.status == "drafting"
    with pytest.raises(DraftUnderWay):
        await busy.reserve(event, "rt_1", ["ep_slack"], False)
    # Past the lease the drafting router is taken for dead: the draft is taken over, not counted again.
    taken_over, spent = await ReplyStore(pool, draft_lease=timedelta(0)).reserve(event, "rt_1", ["ep_slack"], False)
    assert taken_over is not None and (taken_over.id, taken_over.status, spent) == (draft.id, "drafting", 0)
    finished = await busy.finish(taken_over, "hello", None, False)
    sent, _ = await busy.reserve(event, "rt_1", ["ep_slack"], False)
    assert finished.status == "sent" and sent is not None and sent.text == "hello"
