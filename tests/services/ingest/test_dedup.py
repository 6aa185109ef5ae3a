"""Provider-id dedup at the edge against real NATS JetStream and PostgreSQL: a provider's retry is
answered duplicate for the whole dedup period, not only the stream's duplicate window."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from pathlib import Path

import nats.js.errors
import pytest
from prometheus_client import REGISTRY

from plugins.manager import load_registry
from plugins.sources.spec import InboundRequest
from services.ingest.intake import WebhookIntake
from services.ingest.publisher import JetStreamPublisher, SeenEventIds
from services.ingest.sources import SourceStore
from switchboard.database import apply_migrations
from switchboard.messaging import DEDUP_BUCKET, connect_nats, ensure_streams
from switchboard.ratelimit import RateLimit
from switchboard.settings import Settings
from tests.duplicate_window import wait_out_duplicate_window
from tests.sealing import BOX

MIGRATIONS = Path(__file__).parents[3] / "services/ingest/migrations"
BODY = b'{"type": "order.created", "n": 1}'


@pytest.fixture
async def nc(nats_server):
    connection = await connect_nats(nats_server.url, "tests")
    try:
        yield connection
    finally:
        await connection.close()


async def intake_with_source(pool, nc, settings: Settings, seen: SeenEventIds | None):
    """A WebhookIntake publishing to JetStream, and a generic source reading the delivery id from x-delivery-id."""
    await apply_migrations(pool, "ingest", MIGRATIONS)
    js = nc.jetstream()
    await ensure_streams(js, settings)
    registry = load_registry()
    sources = SourceStore(pool, registry, box=BOX)
    source = await sources.create("t1", "shop", "generic", {"id_header": "x-delivery-id"}, secret="s" * 32)
    publish = JetStreamPublisher(nc, 5.0, settings.max_message_bytes, seen)
    return WebhookIntake(sources, registry, publish, RateLimit(1000.0, 1000)), source


def webhook(source_id: str, delivery_id: str | None) -> InboundRequest:
    headers = {"content-type": "application/json",
               "x-signature": hmac.new(b"s" * 32, BODY, hashlib.sha256).hexdigest()}
    if delivery_id:
        headers["x-delivery-id"] = delivery_id
    return InboundRequest(method="POST", path=f"/in/{source_id}", headers=headers, body=BODY, received_at=time.time())


async def events_stored(js, source_id: str) -> int:
    info = await js.stream_info("EVENTS", subjects_filter=f"events.t1.{source_id}")
    return sum((info.state.subjects or {}).values())


def failures(operation: str) -> float:
    return REGISTRY.get_sample_value("switchboard_dedup_failures_total", {"operation": operation}) or 0.0


async def test_a_retry_after_the_stream_window_is_answered_duplicate_and_not_published_again(pool, nc) -> None:
    settings = Settings.from_env({"SWITCHBOARD_STREAM_DUPLICATE_WINDOW": "1", "SWITCHBOARD_DEDUP_WINDOW": "3600"})
    intake, source = await intake_with_source(pool, nc, settings, SeenEventIds(nc))
    js = nc.jetstream()

    first = await intake.accept(source.id, webhook(source.id, "d-1"))
    await wait_out_duplicate_window(js, "events.probe.window")
    retry = await intake.accept(source.id, webhook(source.id, "d-1"))

    assert (first.duplicate, retry.duplicate) == (False, True)
    assert retry.event_id == first.event_id
    assert await events_stored(js, source.id) == 1


async def test_a_retry_after_the_dedup_period_is_a_new_delivery(pool, nc) -> None:
    settings = Settings.from_env({"SWITCHBOARD_STREAM_DUPLICATE_WINDOW": "1", "SWITCHBOARD_DEDUP_WINDOW": "1"})
    intake, source = await intake_with_source(pool, nc, settings, SeenEventIds(nc))
    js = nc.jetstream()
    bucket = await js.key_value(DEDUP_BUCKET)

    first = await intake.accept(source.id, webhook(source.id, "d-1"))
    assert (await bucket.get(first.event_id)).key == first.event_id
    async with asyncio.timeout(30):  # the bucket's entries expire after the period
        while True:
            try:
                await bucket.get(first.event_id)
            except nats.js.errors.KeyNotFoundError:
                break
            await asyncio.sleep(0.2)
    await wait_out_duplicate_window(js, "events.probe.window")
    late = await intake.accept(source.id, webhook(source.id, "d-1"))

    assert (first.duplicate, late.duplicate) == (False, False)
    assert late.event_id == first.event_id
    assert await events_stored(js, source.id) == 2


async def test_an_id_an_operator_deleted_from_the_bucket_is_forgotten(pool, nc) -> None:
    settings = Settings.from_env({"SWITCHBOARD_STREAM_DUPLICATE_WINDOW": "1"})
    intake, source = await intake_with_source(pool, nc, settings, SeenEventIds(nc))
    js = nc.jetstream()

    first = await intake.accept(source.id, webhook(source.id, "d-1"))
    await (await js.key_value(DEDUP_BUCKET)).delete(first.event_id)  # nats kv del EVENT_DEDUP <id>
    await wait_out_duplicate_window(js, "events.probe.window")
    again = await intake.accept(source.id, webhook(source.id, "d-1"))

    assert (first.duplicate, again.duplicate) == (False, False)
    assert await events_stored(js, source.id) == 2


async def test_only_events_with_a_provider_id_are_remembered(pool, nc) -> None:
    settings = Settings.from_env({})
    intake, source = await intake_with_source(pool, nc, settings, SeenEventIds(nc))
    js = nc.jetstream()

    await intake.accept(source.id, webhook(source.id, None))
    await intake.accept(source.id, webhook(source.id, None))
    with_id = await intake.accept(source.id, webhook(source.id, "d-2"))

    assert await events_stored(js, source.id) == 3
    assert [key async for key in _keys(js)] == [with_id.event_id]


async def _keys(js):
    for key in await (await js.key_value(DEDUP_BUCKET)).keys():
        yield key


async def test_api_events_with_an_idempotency_key_are_remembered_too(pool, nc) -> None:
    settings = Settings.from_env({"SWITCHBOARD_STREAM_DUPLICATE_WINDOW": "1"})
    intake, _ = await intake_with_source(pool, nc, settings, SeenEventIds(nc))
    js = nc.jetstream()

    first = await intake.publish_api_event("t1", "key_1", "order.created", {"n": 1}, "order-1")
    await wait_out_duplicate_window(js, "events.probe.window")
    again = await intake.publish_api_event("t1", "key_1", "order.created", {"n": 1}, "order-1")

    assert (first.duplicate, again.duplicate, again.event_id) == (False, True, first.event_id)
    assert await events_stored(js, "api") == 1


async def test_an_unusable_bucket_never_refuses_an_event(pool, nc) -> None:
    settings = Settings.from_env({})
    intake, source = await intake_with_source(pool, nc, settings, SeenEventIds(nc))
    js = nc.jetstream()
    await js.delete_stream(f"KV_{DEDUP_BUCKET}")  # look-ups and records now fail
    lookups, records = failures("lookup"), failures("record")

    accepted = await intake.accept(source.id, webhook(source.id, "d-3"))
    retried = await intake.accept(source.id, webhook(source.id, "d-3"))

    # Still accepted, and inside the stream's window still a duplicate.
    assert (accepted.duplicate, retried.duplicate) == (False, True)
    assert await events_stored(js, source.id) == 1
    assert failures("lookup") - lookups == 2 and failures("record") - records == 2  # each copy tries to record


async def test_a_copy_the_stream_already_had_is_still_remembered(pool, nc) -> None:
    """The first copy was stored but never remembered (its ack was lost, so its sender got 503 and
    retried, or its record failed): the retry the stream answers duplicate starts the dedup period."""
    settings = Settings.from_env({"SWITCHBOARD_STREAM_DUPLICATE_WINDOW": "1", "SWITCHBOARD_DEDUP_WINDOW": "3600"})
    intake, source = await intake_with_source(pool, nc, settings, SeenEventIds(nc))
    js = nc.jetstream()
    unremembered = JetStreamPublisher(nc, 5.0, settings.max_message_bytes, seen=None)
    intake_without = WebhookIntake(intake.sources, intake.registry, unremembered, RateLimit(1000.0, 1000))

    lost = await intake_without.accept(source.id, webhook(source.id, "d-lost"))
    retry = await intake.accept(source.id, webhook(source.id, "d-lost"))  # within the stream's window
    assert (lost.duplicate, retry.duplicate) == (False, True)
    await wait_out_duplicate_window(js, "events.probe.window")
    late = await intake.accept(source.id, webhook(source.id, "d-lost"))
    assert late.duplicate and await events_stored(js, source.id) == 1
