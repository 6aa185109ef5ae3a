import asyncio
import time

import psycopg
import pytest
from nats.js import api

from switchboard.events import DeliveryMessage
from switchboard.messaging import (
    ACK,
    ACK_WAIT_S,
    ConsumerSpec,
    Decision,
    StreamPublisher,
    connect_nats,
    consume,
    decode,
    encode,
    ensure_consumer,
    ensure_streams,
    retry_in,
    stream_specs,
)
from switchboard.settings import Settings


async def test_streams_are_created_with_explicit_limits_and_file_storage(js) -> None:
    settings = Settings.from_env({})
    await ensure_streams(js, settings)
    for name in ("EVENTS", "DELIVERIES", "DEAD_LETTERS", "ATTEMPTS"):
        config = (await js.stream_info(name)).config
        assert config.storage == api.StorageType.FILE
        assert config.max_bytes == settings.bus.max_bytes
        assert config.max_age == settings.bus.max_age_s
        assert config.duplicate_window == settings.bus.duplicate_window_s
    assert (await js.stream_info("EVENTS")).config.retention == api.RetentionPolicy.WORK_QUEUE
    assert (await js.stream_info("EVENTS")).config.discard == api.DiscardPolicy.NEW


async def test_ensuring_twice_is_harmless_and_applies_changed_limits(js) -> None:
    settings = Settings.from_env({})
    await ensure_streams(js, settings)
    ack = await js.publish("events.t.s", b"{}", headers={"Nats-Msg-Id": "e1"})
    await ensure_streams(js, settings.with_group("bus", max_bytes=2 * 1024**3))
    info = await js.stream_info("EVENTS")
    assert info.config.max_bytes == 2 * 1024**3
    assert info.state.messages == 1 and ack.seq == 1


async def test_the_message_id_deduplicates_within_the_window(js) -> None:
    await ensure_streams(js, Settings.from_env({}))
    first = await js.publish("events.t.s", b"{}", headers={"Nats-Msg-Id": "same"})
    second = await js.publish("events.t.s", b"{}", headers={"Nats-Msg-Id": "same"})
    assert not first.duplicate and second.duplicate
    assert (await js.stream_info("EVENTS")).state.messages == 1


async def test_the_lean_publisher_answers_as_jetstream_does(nc, js) -> None:
    await ensure_streams(js, Settings.from_env({}))
    stream = StreamPublisher(nc)
    first, second, other = await asyncio.gather(
        stream.publish("events.t.s", b"{}", timeout=5, headers={"Nats-Msg-Id": "a"}),
        stream.publish("events.t.s", b"{}", timeout=5, headers={"Nats-Msg-Id": "b"}),
        stream.publish("events.t.s", b"{}", timeout=5, headers={"Nats-Msg-Id": "c"}))
    assert first.stream == "EVENTS" and sorted([first.seq, second.seq, other.seq]) == [1, 2, 3]
    again = await stream.publish("events.t.s", b"{}", timeout=5, headers={"Nats-Msg-Id": "a"})
    assert again.duplicate and not first.duplicate
    assert (await js.stream_info("EVENTS")).state.messages == 3


async def test_the_lean_publisher_raises_what_jetstream_publish_raises(nc, js) -> None:
    import nats.errors
    import nats.js.errors

    stream = StreamPublisher(nc)
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await stream.publish("nowhere.at.all", b"{}", timeout=5)
    await js.add_stream(api.StreamConfig(name="TINY", subjects=["tiny"], max_msgs=1, discard=api.DiscardPolicy.NEW))
    await stream.publish("tiny", b"1", timeout=5)
    with pytest.raises(nats.js.errors.APIError) as refused:
        await stream.publish("tiny", b"2", timeout=5)
    assert "maximum messages exceeded" in str(refused.value)
    # Something that takes the message but never acknowledges it: the publish times out, and forgets it.
    await nc.subscribe("silent")
    started = time.monotonic()
    with pytest.raises(nats.errors.TimeoutError):
        await stream.publish("silent", b"{}", timeout=0.3)
    assert 0.25 < time.monotonic() - started < 2 and not stream._pending


def test_duplicate_window_never_exceeds_max_age() -> None:
    s = Settings.from_env({}).with_group("bus", max_age_s=60, duplicate_window_s=3600)
    assert all(spec.duplicate_window_s == 60 for spec in stream_specs(s))


def test_encoding_round_trips_and_rejects_non_objects() -> None:
    assert decode(encode({"a": "é", "b": [1]})) == {"a": "é", "b": [1]}
    with pytest.raises(ValueError):
        decode(b"[1]")
    assert retry_in(3).delay_s == 3 and ACK.action == "ack"


def test_a_delivery_message_without_a_cycle_is_of_the_first_and_a_retrys_id_names_its_cycle() -> None:
    written = {"event_id": "evt_1", "tenant_id": "ten_1", "endpoint_id": "ep_1", "route_id": "rt_1",
               "event_type": "order.created", "source_id": "src_1", "received_at": 1.0, "payload": {}}
    for older in (written, {**written, "cycle": None}):  # before manual retries had cycles
        first = DeliveryMessage.from_message(older)
        assert first.cycle == 0 and first.message_id == "evt_1:ep_1"
    retry = DeliveryMessage.from_message(decode(encode({**written, "cycle": 3})))
    assert retry.cycle == 3 and retry.message_id == "evt_1:ep_1@3"


# -- consumers: crash recovery, heartbeats, outages ----------------------------------------------


async def _consumer_with_one_message(js, name: str) -> ConsumerSpec:
    await js.add_stream(name=f"S_{name}", subjects=[f"{name}.>"])
    await js.publish(f"{name}.1", b"{}")
    return ConsumerSpec(f"S_{name}", name)


async def _run(nc, spec: ConsumerSpec, handler, seconds: float) -> None:
    stopping = asyncio.Event()
    task = asyncio.create_task(consume(nc, spec, handler, concurrency=8, stopping=stopping))
    await asyncio.sleep(seconds)
    stopping.set()
    await asyncio.wait_for(task, 30)


async def test_a_dead_consumers_message_is_redelivered_within_five_seconds(nats_server, nc, js) -> None:
    spec = await _consumer_with_one_message(js, "crash")
    await ensure_consumer(js, spec)
    # A process that fetched the message and died: its connection goes, no ack ever comes.
    doomed = await connect_nats(nats_server.url, "doomed")
    fetched = await (await doomed.jetstream().pull_subscribe_bind(spec.durable, stream=spec.stream)).fetch(1)
    assert len(fetched) == 1
    died_at = time.monotonic()
    await doomed.close()

    redelivered: list[float] = []

    async def handler(msg) -> Decision:
        redelivered.append(time.monotonic() - died_at)
        return ACK

    await _run(nc, spec, handler, 6.0)
    assert len(redelivered) == 1 and redelivered[0] <= 5.0, redelivered


async def test_long_work_is_kept_by_heartbeats_not_redelivered(nc, js) -> None:
    """Work longer than the ack wait (a slow receiver) is not handed to anyone else meanwhile."""
    spec = await _consumer_with_one_message(js, "slow")
    calls = 0

    async def slow(msg) -> Decision:
        nonlocal calls
        calls += 1
        await asyncio.sleep(3 * ACK_WAIT_S)
        return ACK

    await _run(nc, spec, slow, 3 * ACK_WAIT_S + 1)
    assert calls == 1
    info = await js.consumer_info(spec.stream, spec.durable)
    assert info.num_redelivered == 0 and info.num_ack_pending == 0


async def test_a_dependency_outage_pauses_the_consumer_instead_of_a_hot_loop(nc, js) -> None:
    """A backlog meeting a database that is down: the consumer does not run through it
    failing statement after statement, and handles all of it once the database is back."""
    spec = await _consumer_with_one_message(js, "outage")
    for n in range(2, 201):
        await js.publish(f"outage.{n}", b"{}")
    failed = 0
    database_back = time.monotonic() + 6.0
    done: set[str] = set()

    async def handler(msg) -> Decision:
        nonlocal failed
        if time.monotonic() < database_back:
            failed += 1
            raise psycopg.OperationalError("connection refused")
        done.add(msg.subject)
        return ACK

    await _run(nc, spec, handler, 14.0)
    # Without the pause, 8 slots cycle through the 200 messages for 6 s (thousands of
    # failing calls); paused, each round of 8 waits out a growing delay.
    assert failed <= 100, failed
    assert len(done) == 200


async def test_messages_flow_in_as_published_without_a_request_per_message(nats_server, nc, js) -> None:
    """At a steady rate a consumer keeps pull requests open instead of fetching for each message."""
    spec = await _consumer_with_one_message(js, "steady")
    watcher = await connect_nats(nats_server.url, "watcher")
    requests = 0

    async def count(msg) -> None:
        nonlocal requests
        requests += 1

    await watcher.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}", cb=count)
    handled: list[str] = []

    async def handler(msg) -> Decision:
        handled.append(msg.subject)
        return ACK

    stopping = asyncio.Event()
    task = asyncio.create_task(consume(nc, spec, handler, concurrency=64, stopping=stopping))
    try:
        for n in range(2, 201):  # 100 messages a second
            await js.publish(f"steady.{n}", b"{}")
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 10
        while len(handled) < 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)
        await watcher.close()
    assert len(handled) == 200
    assert requests <= 20, requests  # fetching would be one or two requests per message


async def test_a_consumer_resumes_by_itself_after_nats_server_restarts(nats_server, nc, js) -> None:
    spec = await _consumer_with_one_message(js, "restart")
    handled: list[str] = []

    async def handler(msg) -> Decision:
        handled.append(msg.subject)
        return ACK

    stopping = asyncio.Event()
    task = asyncio.create_task(consume(nc, spec, handler, concurrency=8, stopping=stopping))
    try:
        deadline = time.monotonic() + 10
        while not handled and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        nats_server.process.kill()
        nats_server.process.wait()
        nats_server.process = None
        nats_server.start()  # the same port and store: the consumer and its stream are still there
        back = time.monotonic()
        while True:
            try:
                await js.publish("restart.2", b"{}", timeout=1)
                break
            except Exception:
                assert time.monotonic() - back < 10, "the client did not reconnect"
        while len(handled) < 2 and time.monotonic() - back < 15:
            await asyncio.sleep(0.05)
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)
    assert handled == ["restart.1", "restart.2"]


async def test_handlers_that_hold_their_messages_get_the_whole_concurrency_at_once(nc, js) -> None:
    """A handler that holds its message until a batch fills (analytics) must see up to ``concurrency``
    messages without waiting for one to finish: one pull request per wake-up once held 1,000 reports
    to a request's 250 until a batch's linger ran out, and analytics fell behind at 1,000 events/s."""
    await js.add_stream(name="S_held", subjects=["held.>"])
    for n in range(200):
        await js.publish(f"held.{n}", b"{}")
    spec = ConsumerSpec("S_held", "held")
    holding: list[asyncio.Future] = []
    all_held = asyncio.Event()

    async def handler(msg) -> Decision:
        waiting = asyncio.get_running_loop().create_future()
        holding.append(waiting)
        if len(holding) == 200:
            all_held.set()
        await waiting
        return ACK

    stopping = asyncio.Event()
    task = asyncio.create_task(consume(nc, spec, handler, concurrency=200, batch=25, stopping=stopping))
    try:
        await asyncio.wait_for(all_held.wait(), 0.9)  # the consumer's own look-around is once a second
    finally:
        for waiting in holding:
            waiting.set_result(None)
        stopping.set()
        await asyncio.wait_for(task, 30)
