"""Ordered delivery per key, against real PostgreSQL, real JetStream and a loopback receiver.

Two delivery "processes" (each a worker on the shared DELIVERIES consumer and a
Sequencer on the shared queue) run in this test's event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from plugins.destinations.spec import DestinationContext
from plugins.manager import load_registry
from services.delivery import ordering
from services.delivery.delivery_log import DeliveryFilter
from services.delivery.options import EndpointOptions, validate_options
from services.delivery.ordering import Sequencer, Upstream, key_of, parse_key_path
from services.delivery.retry import RetryPolicy
from services.delivery.worker import DeliveryWorker
from switchboard.bus import Bus
from switchboard.circuit import CircuitBreakers
from switchboard.database import apply_migrations, open_pool
from switchboard.errors import InvalidRequest
from switchboard.events import DeliveryMessage
from switchboard.messaging import CONSUMERS, consume, encode, ensure_streams, reader
from switchboard.settings import Settings
from switchboard.signatures import generate_webhook_secret
from tests.outbound_fixture import outbound_client
from tests.services.delivery.stores import delivery_stores

MIGRATIONS = Path(__file__).parents[3] / "services/delivery/migrations"
RETRY = {"max_attempts": 50, "initial_delay_seconds": 0.2, "max_delay_seconds": 0.5, "jitter": 0}
ORDERED = {"ordering": "per_key", "ordering_key": "$.data.object.customer", "retry": RETRY}


# --- the option -----------------------------------------------------------------------------------------------

def test_key_paths_are_read_and_bad_ones_refused_naming_the_field() -> None:
    assert parse_key_path("$.data.object.customer") == ("data", "object", "customer")
    assert parse_key_path("$.items[2]['x-y'][\"z\"]") == ("items", 2, "x-y", "z")
    payload = {"data": {"object": {"customer": "cus_1", "n": 7, "flag": True, "obj": {}}}, "items": [1, 2, {"x-y": 3}]}
    assert key_of(("data", "object", "customer"), payload) == "cus_1"
    assert key_of(("data", "object", "n"), payload) == "7"
    assert key_of(("data", "object", "flag"), payload) == "true"
    assert key_of(("data", "object", "obj"), payload) is None  # not a scalar: no key
    assert key_of(("data", "missing"), payload) is None
    assert key_of(("items", 2, "x-y"), payload) == "3"
    for bad in ("data.customer", "$", "$.", "$.a..b", "$.a[x]", "$.a b", "$[1"):
        with pytest.raises(InvalidRequest) as refused:
            validate_options({"ordering": "per_key", "ordering_key": bad})
        assert refused.value.field == "options.ordering_key"
    with pytest.raises(InvalidRequest) as refused:
        validate_options({"ordering": "per_key"})
    assert refused.value.field == "options.ordering_key"
    with pytest.raises(InvalidRequest) as refused:
        validate_options({"ordering": "fifo"})
    assert refused.value.field == "options.ordering"
    with pytest.raises(InvalidRequest) as refused:
        validate_options({"ordering_key": "$.a"})
    assert refused.value.field == "options.ordering_key"
    assert validate_options(ORDERED) == ORDERED
    assert validate_options({"ordering": "none"}) == {"ordering": "none"}


# --- a receiver that fails some keys for a while -------------------------------------------------------------

@dataclass(frozen=True)
class Receipt:
    key: str
    n: int
    status: int
    at: float


class KeyedReceiver:
    """Answers 503 to the keys ``failing(key, n)`` names, 200 to the rest; records every request.
    ``slow_s``: how long each answer takes (so overlapping sends of one key would show)."""

    def __init__(self, failing: Callable[[str, int], bool], slow_s: float = 0.0) -> None:
        self.failing = failing
        self.receipts: list[Receipt] = []
        # Requests of a key being answered at this moment: more than one breaks "one in flight per key".
        self.overlaps: list[str] = []
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = orjson.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                key, n = body["data"]["object"].get("customer", ""), body["n"]
                with receiver._lock:
                    if key and key in receiver._busy:
                        receiver.overlaps.append(key)
                    receiver._busy.add(key)
                time.sleep(slow_s)
                status = 503 if receiver.failing(key, n) else 200
                with receiver._lock:
                    receiver._busy.discard(key)
                    receiver.receipts.append(Receipt(key, n, status, time.monotonic()))
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def succeeded(self, key: str) -> list[int]:
        """The events of ``key`` in the order they were first received successfully."""
        with self._lock:
            return list(dict.fromkeys(r.n for r in self.receipts if r.key == key and r.status == 200))

    async def wait_for(self, done: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"not done in {timeout}s: {len(self.receipts)} requests"
            await asyncio.sleep(0.05)


# --- two delivery processes ----------------------------------------------------------------------------------

class Process:
    """One delivery process's share: a worker on the DELIVERIES consumer, and its Sequencer."""

    def __init__(self, worker: DeliveryWorker, sequencer: Sequencer) -> None:
        self.worker = worker
        self.sequencer = sequencer
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    def start(self, nc) -> None:
        self.tasks = [
            asyncio.create_task(consume(nc, CONSUMERS["delivery"], self.worker.handle, read=reader(DeliveryMessage),
                                        concurrency=64, stopping=self.stopping)),
            asyncio.create_task(self.sequencer.run(self.stopping)),
        ]

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def kill(self) -> None:
        """As kill -9 would: everything stops where it is; nothing is settled or given back."""
        for task in [*self.tasks, *self.sequencer._running]:
            task.cancel()


@pytest.fixture
async def platform(pool, nc, js, database_url, monkeypatch) -> AsyncIterator[Callable[[], Awaitable[Process]]]:
    """Starts delivery processes, each with its own pool, on the shared consumer and queue."""
    await apply_migrations(pool, "delivery", MIGRATIONS)
    await ensure_streams(js, Settings.from_env({}))
    monkeypatch.setattr(ordering, "LEASE_S", 1.5)  # a killed process's keys come back sooner
    started: list[Process] = []
    pools = []
    async with outbound_client() as http:
        async def process(circuit_threshold: int = 5) -> Process:
            own = await open_pool(database_url, max_size=10)
            pools.append(own)
            stores = delivery_stores(own, ttl_s=0.5)
            worker = DeliveryWorker(Bus(js, 5.0), *stores, load_registry(), DestinationContext(http, 5.0, True),
                                    EndpointOptions(64, None, 5.0, RetryPolicy(max_attempts=3, base_delay_s=1)),
                                    processes=2, circuits=CircuitBreakers(circuit_threshold, cooldown_s=10.0))
            sequencer = Sequencer(worker.ordered, Upstream(nc), lambda m: worker.deliver(m, parked=True),
                                  worker.ordering_path, capacity=64)
            worker.parked = sequencer.wake
            running = Process(worker, sequencer)
            running.start(nc)
            started.append(running)
            return running

        yield process
        for running in started:
            await running.stop()
    for own in pools:
        await own.close()


def delivery(endpoint_id: str, key: str | None, n: int, received_at: float) -> DeliveryMessage:
    obj = {"customer": key} if key is not None else {}
    return DeliveryMessage(event_id=f"evt_{key}_{n}", tenant_id="t1", endpoint_id=endpoint_id, route_id="rt_1",
                           event_type="a.b", source_id="s1", received_at=received_at,
                           payload={"data": {"object": obj}, "n": n})


async def queue(js, message: DeliveryMessage) -> None:
    """As the router queues a delivery."""
    await js.publish(message.subject, encode(message.to_message()), headers={"Nats-Msg-Id": message.message_id})


async def test_many_keys_each_in_acceptance_order_one_in_flight_while_failing_keys_hold_only_themselves(
        pool, js, platform) -> None:
    keys = [f"cus_{k:02d}" for k in range(50)]
    failing_keys, healthy = set(keys[:8]), keys[8:]
    # The failing keys fail until every other key has all its events: were they held by the failing
    # ones, they would never get there.
    recovered = threading.Event()
    receiver = KeyedReceiver(lambda key, n: key in failing_keys and not recovered.is_set(), slow_s=0.01)
    try:
        stores = delivery_stores(pool)
        # Retries up to 3 s apart: the failing heads' 50 attempts last over two minutes, so none is
        # dead-lettered while a slow machine delivers the healthy keys (at 0.5 s apart: 25 s).
        options = {**ORDERED, "retry": {**RETRY, "max_delay_seconds": 3}}
        endpoint = await stores.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret(),
                                                 options=options)
        # Two delivery processes. The endpoint's circuit is left out: eight keys failing in a row open it,
        # and an open circuit holds every key (docs/ordering.md); a probe that lands on a failing key opens
        # it again for another cooldown. What is tested here is the keys.
        await platform(circuit_threshold=10_000), await platform(circuit_threshold=10_000)
        base = time.time() - 60
        # Accepted key after key, round after round; queued by four publishers at once.
        accepted = [delivery(endpoint.id, key, n, base + (n * len(keys) + k) * 0.001)
                    for n in range(10) for k, key in enumerate(keys)]
        for start in range(0, len(accepted), 4):
            await asyncio.gather(*(queue(js, m) for m in accepted[start:start + 4]))
        await receiver.wait_for(lambda: all(len(receiver.succeeded(k)) == 10 for k in healthy), timeout=90)
        assert all(receiver.succeeded(k) == [] for k in failing_keys)  # still failing, each at its first event
        recovered.set()
        await receiver.wait_for(lambda: all(len(receiver.succeeded(k)) == 10 for k in keys), timeout=90)
    finally:
        receiver.close()
    for key in keys:
        assert receiver.succeeded(key) == list(range(10)), key
        # Strictly one at a time: a key's requests (retries included) never go back to an earlier event.
        sent = [r.n for r in receiver.receipts if r.key == key]
        assert sent == sorted(sent), (key, sent)
    assert receiver.overlaps == []
    assert any(r.status == 503 for r in receiver.receipts if r.key in failing_keys)
    # Once all is delivered and settled, nothing is left parked, and no key is kept.
    deadline = time.monotonic() + 30
    while True:
        async with pool.connection() as conn:
            left = await (await conn.execute("SELECT count(*) AS n FROM delivery.ordered_queue")).fetchone()
            keys_left = await (await conn.execute("SELECT count(*) AS n FROM delivery.ordered_keys")).fetchone()
        if left["n"] == 0 and keys_left["n"] == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert (left["n"], keys_left["n"]) == (0, 0)
    assert {k for k in keys if len(receiver.succeeded(k)) == 10} == set(keys)


async def test_a_dead_lettered_head_lets_the_next_go_and_a_manual_retry_takes_its_turn_again(
        pool, js, platform) -> None:
    rejected = {("cus_dead", 0)}
    receiver = KeyedReceiver(lambda key, n: (key, n) in rejected)
    try:
        stores = delivery_stores(pool)
        options = {**ORDERED, "retry": {"max_attempts": 2, "initial_delay_seconds": 0.2, "jitter": 0}}
        endpoint = await stores.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret(),
                                                 options=options)
        await platform()
        base = time.time() - 60
        messages = [delivery(endpoint.id, "cus_dead", n, base + n) for n in range(3)]
        for m in messages:
            await queue(js, m)
        await receiver.wait_for(lambda: receiver.succeeded("cus_dead") == [1, 2])
        [head] = (await stores.log.page("t1", DeliveryFilter(event_id=messages[0].event_id)))[0]
        assert head.status == "failed" and [a.outcome for a in head.history] == ["retrying", "failed"]
        dead = await js.get_last_msg("DEAD_LETTERS", f"dead.t1.{endpoint.id}")
        assert orjson.loads(dead.data)["event_id"] == messages[0].event_id
        # Retried by hand once the receiver takes it: parked again in its place, and delivered.
        rejected.clear()
        retried = await stores.log.restart("t1", head.id)
        await js.publish(retried.subject, encode(retried.to_message()), headers={"Nats-Msg-Id": retried.message_id})
        await receiver.wait_for(lambda: receiver.succeeded("cus_dead") == [1, 2, 0])
    finally:
        receiver.close()


async def test_a_later_event_waits_for_an_earlier_one_still_being_routed(pool, js, platform) -> None:
    """Event 0 of a key is accepted (in EVENTS) but not routed yet; event 1's delivery is queued
    already. Event 1 waits until 0's delivery is queued and sent; another key does not wait."""
    receiver = KeyedReceiver(lambda key, n: False)
    try:
        stores = delivery_stores(pool)
        endpoint = await stores.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret(),
                                                 options=ORDERED)
        await platform()
        # Event 0 accepted: in EVENTS, which the router has not acked.
        await js.publish("events.t1.s1", b"{}", headers={"Nats-Msg-Id": "evt_cus_a_0"})
        await asyncio.sleep(0.01)
        later = time.time()
        await queue(js, delivery(endpoint.id, "cus_a", 1, later))
        await queue(js, delivery(endpoint.id, "cus_b", 0, later - 10))  # accepted before it: not held
        await receiver.wait_for(lambda: receiver.succeeded("cus_b") == [0])
        await asyncio.sleep(1.0)
        assert receiver.succeeded("cus_a") == []
        # Routed: its delivery is queued, then the event acked (as the router does).
        await queue(js, delivery(endpoint.id, "cus_a", 0, later - 0.005))
        sub = await js.pull_subscribe("events.t1.>", "router-standin", stream="EVENTS")
        [routed] = await sub.fetch(1, timeout=5)
        await routed.ack_sync()
        await receiver.wait_for(lambda: receiver.succeeded("cus_a") == [0, 1])
    finally:
        receiver.close()


async def test_a_process_killed_while_holding_a_key_loses_nothing_and_reorders_nothing(pool, js, platform) -> None:
    """Killed mid-send: the key stays held until the lease runs out, then the other process sends the
    same head again (same webhook-id) before anything after it."""
    receiver = KeyedReceiver(lambda key, n: False, slow_s=1.0)
    try:
        stores = delivery_stores(pool)
        endpoint = await stores.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret(),
                                                 options=ORDERED)
        victim = await platform()
        base = time.time() - 60
        for n in range(4):
            await queue(js, delivery(endpoint.id, "cus_k", n, base + n))
        deadline = time.monotonic() + 10
        while not victim.sequencer._running:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        victim.kill()
        await platform()  # the survivor
        await receiver.wait_for(lambda: receiver.succeeded("cus_k") == [0, 1, 2, 3], timeout=30)
    finally:
        receiver.close()
    sent = [r.n for r in receiver.receipts]
    assert sent == sorted(sent), sent  # the head perhaps twice (its first send's answer was never recorded)
    assert receiver.overlaps == []


async def test_a_delivery_without_the_key_goes_unordered(pool, js, platform) -> None:
    recovered = threading.Event()
    receiver = KeyedReceiver(lambda key, n: key == "" and n == 0 and not recovered.is_set())
    try:
        stores = delivery_stores(pool)
        endpoint = await stores.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret(),
                                                 options=ORDERED)
        await platform(circuit_threshold=10_000)  # event 0's failures in a row would open it: not what is tested
        base = time.time() - 60
        for n in range(3):
            await queue(js, delivery(endpoint.id, None, n, base + n))
        # The first keeps failing; the others, with no key, do not wait for it.
        await receiver.wait_for(lambda: set(receiver.succeeded("")) >= {1, 2}, timeout=30)
        assert sorted(receiver.succeeded("")) == [1, 2]  # and 0 still failing
        recovered.set()
        await receiver.wait_for(lambda: set(receiver.succeeded("")) == {0, 1, 2}, timeout=20)
    finally:
        receiver.close()

