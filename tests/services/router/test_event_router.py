"""The EVENTS handler against real PostgreSQL and JetStream: events routed at once share one
statement, and one that cannot be stored is dead-lettered without failing the others."""

import asyncio
from pathlib import Path
from dataclasses import replace

from services.router.consumer import EventRouter
from services.router.dispatch import Dispatcher
from services.router.event_store import EventStore
from services.router.route_store import RouteStore
from services.router.routing import parse_route_spec
from services.router.replies import ReplyStore
from services.router.templates import TemplateStore
from switchboard.database import apply_migrations
from switchboard.events import DeliveryMessage, Event
from switchboard.ids import new_id
from switchboard.messaging import decode, ensure_streams
from switchboard.settings import Settings
from tests.services.router.endpoint_types import NO_FILTERS, StaticEndpointTypes
from tests.services.router.no_ai import NO_AI
from switchboard.bus import Bus

MIGRATIONS = Path(__file__).parents[3] / "services/router/migrations"


IDS = [new_id("evt") for _ in range(100)]


def event(n: int, body: bytes = b"{}") -> Event:
    return Event(id=IDS[n], tenant_id="t1", source_id="src_1", type="order.created", received_at=1.7e9,
                 payload={"n": n}, body=body)


async def test_concurrent_events_are_stored_together_and_a_bad_one_fails_alone(pool, js) -> None:
    await apply_migrations(pool, "router", MIGRATIONS)
    await ensure_streams(js, Settings.from_env({}))
    routes = RouteStore(pool)
    await routes.create("t1", parse_route_spec({"name": "all", "endpoint_ids": ["ep_1", "ep_2"]}))
    store = EventStore(pool)
    # No route needs the AI, so the dispatcher never calls it.
    router = EventRouter(Bus(js, 5.0), store, Dispatcher(routes, TemplateStore(pool), ai=NO_AI,
                                                         replies=ReplyStore(pool), endpoint_types=NO_FILTERS))

    good = [event(n) for n in range(40)]
    # PostgreSQL jsonb cannot hold NUL (a body can: it is kept as bytes).
    unstorable = replace(event(99), payload={"text": "nul \x00 inside"})
    decisions = await asyncio.gather(*(router.route(e) for e in [*good[:20], unstorable, *good[20:], good[0]]))

    assert [d.action for d in decisions] == ["ack"] * 42
    for e in good:
        assert (await store.get("t1", e.id)).event == e
    assert (await store.get("t1", good[0].id)).routing is not None  # the copy routed again kept a decision
    # Each good event's two deliveries, once each (the second copy of good[0] publishes duplicates).
    assert (await js.stream_info("DELIVERIES")).state.messages == 80
    sub = await js.pull_subscribe("deliveries.t1.>", "check")
    queued = [DeliveryMessage.from_message(decode(m.data)) for m in await sub.fetch(80, timeout=5)]
    assert {m.event_id for m in queued} == {e.id for e in good}
    # The unstorable event is kept in DEAD_LETTERS, not retried for ever.
    dead = await js.pull_subscribe("dead.t1.router", "dead-check")
    [kept] = await dead.fetch(1, timeout=5)
    assert decode(kept.data)["id"] == unstorable.id


async def test_a_stored_event_is_reported_stored_once(pool) -> None:
    await apply_migrations(pool, "router", MIGRATIONS)
    store = EventStore(pool)
    results = await asyncio.gather(*(store.store(event(n)) for n in (1, 2, 1, 3, 2)))
    assert sorted(results) == [False, False, True, True, True]
    assert await store.store(event(1)) is False


async def test_each_event_is_reported_to_analytics_once_with_what_became_of_it(pool, js) -> None:
    from switchboard.events import RoutingOutcome

    await apply_migrations(pool, "router", MIGRATIONS)
    await ensure_streams(js, Settings.from_env({}))
    routes = RouteStore(pool)
    await routes.create("t1", parse_route_spec({"name": "orders", "event_types": ["order.*"],
                                                "endpoint_ids": ["ep_1", "ep_2"]}))
    await routes.create("t1", parse_route_spec({"name": "no noise", "event_types": ["noise.*"], "action": "drop"}))
    router = EventRouter(Bus(js, 5.0), EventStore(pool), Dispatcher(routes, TemplateStore(pool), ai=NO_AI,
                                                          replies=ReplyStore(pool), endpoint_types=NO_FILTERS))
    kinds = {"order.created": "routed", "noise.ping": "dropped", "user.created": "unrouted"}
    events = {t: Event(id=new_id("evt"), tenant_id="t1", source_id="src_1", type=t, received_at=1.7e9,
                       payload={}) for t in kinds}
    for e in [*events.values(), events["order.created"]]:  # the routed one twice: a redelivery
        assert (await router.route(e)).action == "ack"

    assert (await js.stream_info("ATTEMPTS")).state.messages == 3
    sub = await js.pull_subscribe("attempts.t1.routing", "check")
    reported = [RoutingOutcome.from_message(decode(m.data)) for m in await sub.fetch(3, timeout=5)]
    assert {o.event_type: o.outcome for o in reported} == kinds
    [delivered] = [o for o in reported if o.outcome == "routed"]
    assert (delivered.event_id, delivered.endpoint_ids) == (events["order.created"].id, ("ep_1", "ep_2"))
    assert delivered.delivery_ids == [f"{delivered.event_id}:ep_1", f"{delivered.event_id}:ep_2"]
    assert {o.received_at for o in reported} == {1.7e9} and all(o.routed_at >= 1.7e9 for o in reported)


async def test_an_endpoint_that_leaves_the_type_out_gets_no_delivery_and_the_explanation_says_so(pool, js) -> None:
    await apply_migrations(pool, "router", MIGRATIONS)
    await ensure_streams(js, Settings.from_env({}))
    routes = RouteStore(pool)
    route = await routes.create("t1", parse_route_spec({"name": "all", "endpoint_ids": ["ep_orders", "ep_invoices"]}))
    store = EventStore(pool)
    filters = StaticEndpointTypes({"ep_orders": ["order.*"], "ep_invoices": ["invoice.*"]})
    router = EventRouter(Bus(js, 5.0), store, Dispatcher(routes, TemplateStore(pool), ai=NO_AI,
                                                         replies=ReplyStore(pool), endpoint_types=filters))

    assert (await router.route(event(0))).action == "ack"

    sub = await js.pull_subscribe("deliveries.t1.>", "filter-check")
    [queued] = [DeliveryMessage.from_message(decode(m.data)) for m in await sub.fetch(1, timeout=5)]
    assert queued.endpoint_id == "ep_orders"
    assert (await js.stream_info("DELIVERIES")).state.messages == 1
    routing = (await store.get("t1", IDS[0])).routing
    assert routing is not None
    assert routing["deliveries"] == [{"route_id": route.id, "endpoint_id": "ep_orders", "action": "deliver"}]
    assert routing["filtered_out"] == [{"route_id": route.id, "endpoint_id": "ep_invoices",
                                        "reason": "the endpoint's event_types leave it out"}]


class LabellingAI:
    """Classifies every event as an urgent alert (a tenant level, as AIService gives it)."""

    async def classify(self, event: Event):
        return {"category": "alert", "priority": "urgent", "sentiment": "negative", "confidence": 0.9}, None

    async def draft_reply(self, event: Event, hold: bool = False):
        return None, "not used"


async def test_the_ai_category_and_priority_go_with_the_deliveries_and_to_analytics(pool, js) -> None:
    from switchboard.events import RoutingOutcome

    await apply_migrations(pool, "router", MIGRATIONS)
    await ensure_streams(js, Settings.from_env({}))
    routes = RouteStore(pool)
    await routes.create("t1", parse_route_spec({"name": "pages", "ai": {"priority": ["urgent"]},
                                                "endpoint_ids": ["ep_1"]}))
    router = EventRouter(Bus(js, 5.0), EventStore(pool), Dispatcher(routes, TemplateStore(pool), ai=LabellingAI(),
                                                          replies=ReplyStore(pool), endpoint_types=NO_FILTERS))
    assert (await router.route(event(0))).action == "ack"

    deliveries = await js.pull_subscribe("deliveries.t1.>", "labels-check")
    [queued] = [DeliveryMessage.from_message(decode(m.data)) for m in await deliveries.fetch(1, timeout=5)]
    assert (queued.category, queued.priority) == ("alert", "urgent")
    outcomes = await js.pull_subscribe("attempts.t1.routing", "labels-outcome")
    [outcome] = [RoutingOutcome.from_message(decode(m.data)) for m in await outcomes.fetch(1, timeout=5)]
    assert (outcome.outcome, outcome.category, outcome.priority) == ("routed", "alert", "urgent")
