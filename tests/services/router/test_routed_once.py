"""The router never routes a stored event twice, against real PostgreSQL and JetStream: a second
message with a stored event's id (a provider's retry the edge's dedup missed) is acked without
queueing deliveries once JetStream no longer collapses them, while a message this router
failed to finish (stored, then a crash before its deliveries were queued) still queues them."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.router.consumer import EventRouter
from services.router.dispatch import Dispatcher
from services.router.replies import ReplyStore
from services.router.event_store import EventStore, Stored
from services.router.route_store import RouteStore
from services.router.routing import parse_route_spec
from services.router.templates import TemplateStore
from switchboard.database import apply_migrations
from switchboard.events import Event, event_subject
from switchboard.ids import derived_id
from switchboard.messaging import encode, ensure_streams, reader
from switchboard.settings import Settings
from tests.services.router.endpoint_types import NO_FILTERS
from tests.services.router.no_ai import NO_AI
from tests.duplicate_window import wait_out_duplicate_window
from switchboard.bus import Bus

MIGRATIONS = Path(__file__).parents[3] / "services/router/migrations"
# Test-sized: JetStream forgets message ids after a second.
SETTINGS = Settings.from_env({"SWITCHBOARD_STREAM_DUPLICATE_WINDOW": "1"})
EVENT = Event(id=derived_id("evt", "src_1", "provider-delivery-1"), tenant_id="t1", source_id="src_1",
              type="order.created", received_at=1.7e9, payload={"n": 1}, provider_event_id="provider-delivery-1")


async def start_router(pool, js, settings: Settings):
    """(EventRouter, EventStore, a pull subscription on the tenant's EVENTS) with a route to two endpoints."""
    await apply_migrations(pool, "router", MIGRATIONS)
    await ensure_streams(js, settings)
    routes = RouteStore(pool)
    await routes.create("t1", parse_route_spec({"name": "all", "endpoint_ids": ["ep_1", "ep_2"]}))
    store = EventStore(pool, settings.bus.duplicate_window_s)
    dispatcher = Dispatcher(routes, TemplateStore(pool), ai=NO_AI, replies=ReplyStore(pool), endpoint_types=NO_FILTERS)
    events = await js.pull_subscribe("events.t1.>", "router-test")
    return EventRouter(Bus(js, 5.0), store, dispatcher), store, events


@pytest.fixture
async def router(pool, js):
    return await start_router(pool, js, SETTINGS)


async def publish_event(js) -> None:
    """What the edge does: the event on EVENTS with its id as the message id."""
    await js.publish(event_subject("t1", "src_1"), encode(EVENT.to_message()), headers={"Nats-Msg-Id": EVENT.id})


async def deliveries_queued(js) -> int:
    info = await js.stream_info("DELIVERIES", subjects_filter="deliveries.t1.>")
    return sum((info.state.subjects or {}).values())


async def wait_out_both_windows(js) -> None:
    await wait_out_duplicate_window(js, "events.probe.window")
    await wait_out_duplicate_window(js, "deliveries.probe.window")


async def test_a_second_message_for_an_event_stored_before_the_window_queues_nothing(router, js) -> None:
    event_router, _, events = router
    await publish_event(js)
    [first] = await events.fetch(1, timeout=5)
    assert (await event_router.handle(reader(Event)(first), first)).action == "ack"
    await first.ack()
    assert await deliveries_queued(js) == 2

    await wait_out_both_windows(js)  # JetStream collapses neither the event nor its deliveries any more
    await publish_event(js)
    [second] = await events.fetch(1, timeout=5)
    assert second.metadata.num_delivered == 1
    assert (await event_router.handle(reader(Event)(second), second)).action == "ack"

    assert await deliveries_queued(js) == 2


async def test_a_redelivered_message_queues_the_deliveries_its_crashed_attempt_did_not(router, js) -> None:
    event_router, store, events = router
    await publish_event(js)
    [attempt] = await events.fetch(1, timeout=5)
    # The first attempt stored the event, then its router died before queueing anything.
    assert await store.insert(EVENT, {"routes": []}, attempt.metadata.sequence.stream) is Stored.NEW
    await attempt.nak()
    await wait_out_both_windows(js)  # came back only after the window (a router down for a while)

    [again] = await events.fetch(1, timeout=5)
    assert again.metadata.num_delivered == 2
    assert (await event_router.handle(reader(Event)(again), again)).action == "ack"

    assert await deliveries_queued(js) == 2
    assert (await store.get("t1", EVENT.id)).routing == {"routes": []}  # stored before the window: kept


async def test_a_second_message_within_the_window_queues_again_and_jetstream_collapses_it(pool, js) -> None:
    event_router, store, events = await start_router(pool, js, Settings.from_env({}))  # a 2 h window
    # A copy stored the event moments ago; whether it queued the deliveries yet is not known here.
    assert await store.insert(EVENT, {"routes": []}) is Stored.NEW
    for _ in range(2):
        await js.publish(event_subject("t1", "src_1"), encode(EVENT.to_message()))  # no message id: not collapsed
        [message] = await events.fetch(1, timeout=5)
        assert message.metadata.num_delivered == 1
        assert (await event_router.handle(reader(Event)(message), message)).action == "ack"

    assert await deliveries_queued(js) == 2
    assert (await store.get("t1", EVENT.id)).routing != {"routes": []}  # the decision acted on


async def test_a_late_copy_whose_first_handling_failed_still_queues_nothing(router, js) -> None:
    """The copy's first try failed for a passing reason (PostgreSQL away, a router killed): it comes back
    delivered twice, which must not pass it off as the message that stored the event."""
    event_router, _, events = router
    await publish_event(js)
    [first] = await events.fetch(1, timeout=5)
    assert (await event_router.handle(reader(Event)(first), first)).action == "ack"
    await first.ack()
    await wait_out_both_windows(js)

    await publish_event(js)
    [copy] = await events.fetch(1, timeout=5)
    await copy.nak()  # its first handling failed
    [again] = await events.fetch(1, timeout=5)
    assert again.metadata.num_delivered == 2
    assert (await event_router.handle(reader(Event)(again), again)).action == "ack"
    assert await deliveries_queued(js) == 2
