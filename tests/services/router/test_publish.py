"""Publishing an event's deliveries together, against a real JetStream."""

from datetime import datetime, UTC

import nats.js.errors
import pytest

from services.router.consumer import publish_deliveries
from services.router.dispatch import Outgoing
from services.router.routing import Route
from switchboard.events import DeliveryMessage, Event
from switchboard.messaging import decode, ensure_streams
from switchboard.settings import Settings
from switchboard.bus import Bus

ROUTE = Route(id="rt_1", tenant_id="t1", name="all", source_id=None, event_types=(), endpoint_ids=(), enabled=True,
              created_at=datetime.fromtimestamp(0, UTC))
EVENT = Event(id="evt_1", tenant_id="t1", source_id="src_1", type="a.b", received_at=1.0, payload={"n": 1})


async def test_every_delivery_lands_once_even_when_published_again(js) -> None:
    await ensure_streams(js, Settings.from_env({}))
    outgoing = [Outgoing(ROUTE, f"ep_{n}", {"n": n}, None) for n in range(50)]
    labels = {"category": "billing", "priority": "urgent", "sentiment": "negative"}
    await publish_deliveries(Bus(js, 5.0), EVENT, outgoing, labels=labels)
    await publish_deliveries(Bus(js, 5.0), EVENT, outgoing[:10], labels=labels)  # a redelivered event
    assert (await js.stream_info("DELIVERIES")).state.messages == 50
    sub = await js.pull_subscribe("deliveries.t1.>", "check")
    messages = [DeliveryMessage.from_message(decode(m.data)) for m in await sub.fetch(50, timeout=5)]
    assert sorted(m.endpoint_id for m in messages) == sorted(f"ep_{n}" for n in range(50))
    assert {(m.category, m.priority) for m in messages} == {("billing", "urgent")}
    assert {m.event_id for m in messages} == {"evt_1"}


async def test_a_publish_that_no_stream_takes_is_an_error(js) -> None:
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await publish_deliveries(Bus(js, 5.0), EVENT, [Outgoing(ROUTE, "ep_1", {}, None)])
