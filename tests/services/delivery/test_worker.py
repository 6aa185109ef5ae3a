"""The delivery worker against real PostgreSQL, real JetStream and a loopback receiver."""

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from tests.outbound_fixture import outbound_client
import asyncio
import time
import pytest
from nats.js import JetStreamContext

from plugins.destinations.spec import DestinationContext
from plugins.manager import load_registry
from services.delivery.options import EndpointOptions
from services.delivery.retry import RetryPolicy
from services.delivery.delivery_log import DeliveryFilter
from tests.services.delivery.stores import Stores, delivery_stores
from services.delivery.worker import SLOT_WAIT_S, SLOT_WAITERS_PER_SLOT, DeliveryWorker
from switchboard.database import apply_migrations
from switchboard.events import DeliveryMessage
from switchboard.messaging import decode, ensure_streams
from switchboard.settings import Settings
from switchboard.signatures import generate_webhook_secret
from tests.clock import Clock
from tests.switchboard.test_metrics import value
from tests.receivers import Receiver
from switchboard.bus import Bus
from datetime import UTC

MIGRATIONS = Path(__file__).parents[3] / "services/delivery/migrations"
Setup = tuple[Stores, DeliveryWorker, JetStreamContext]


@pytest.fixture
async def setup(pool, js) -> AsyncIterator[Setup]:
    await apply_migrations(pool, "delivery", MIGRATIONS)
    await ensure_streams(js, Settings.from_env({}))
    store = delivery_stores(pool)
    async with outbound_client() as http:
        worker = DeliveryWorker(Bus(js, 5.0), *store, load_registry(), DestinationContext(http, 5.0, True),
                                EndpointOptions(16, None, 5.0, RetryPolicy(max_attempts=3, base_delay_s=1, jitter=0)))
        yield store, worker, js


async def deliveries_of(store: Stores, tenant_id: str, event_id: str) -> list:
    page, _ = await store.log.page(tenant_id, DeliveryFilter(event_id=event_id))
    return page


def message(endpoint_id: str, event_id: str = "evt_1") -> DeliveryMessage:
    return DeliveryMessage(event_id=event_id, tenant_id="t1", endpoint_id=endpoint_id, route_id="rt_1",
                           event_type="a.b", source_id="s1", received_at=0.0, payload={"n": 1})


async def test_success_is_recorded_and_a_redelivery_sends_nothing_more(setup) -> None:
    store, worker, _ = setup
    with Receiver() as receiver:
        endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
        assert (await worker.deliver(message(endpoint.id))).action == "ack"
        assert (await worker.deliver(message(endpoint.id))).action == "ack"
    assert len(receiver.requests) == 1
    [delivery] = await deliveries_of(store, "t1", "evt_1")
    assert delivery.status == "succeeded" and [a.outcome for a in delivery.history] == ["succeeded"]


async def test_reports_to_analytics_carry_the_ai_category_and_priority(setup) -> None:
    store, worker, js = setup
    labelled = replace(message("ep_gone", "evt_labelled"), category="alert", priority="urgent")
    with Receiver() as receiver:
        endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
        assert (await worker.deliver(replace(labelled, endpoint_id=endpoint.id))).action == "ack"
    assert (await worker.deliver(labelled)).action == "term"  # its endpoint is gone: skipped
    attempts = await js.pull_subscribe("attempts.t1", "labels-attempts")
    [sent] = [decode(m.data) for m in await attempts.fetch(1, timeout=5)]
    [skipped] = await notices_of(js, "labels-notices", 1)
    for report in (sent, skipped):
        assert (report["category"], report["priority"]) == ("alert", "urgent"), report


async def test_retryable_failures_back_off_then_dead_letter(setup) -> None:
    store, worker, js = setup
    with Receiver(status=500) as receiver:
        endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
        decisions = [await worker.deliver(message(endpoint.id)) for _ in range(3)]
    assert [d.action for d in decisions] == ["nak", "nak", "ack"]
    assert decisions[0].delay_s == 1 and decisions[1].delay_s == 2
    [delivery] = await deliveries_of(store, "t1", "evt_1")
    assert delivery.status == "failed"
    assert [a.outcome for a in delivery.history] == ["retrying", "retrying", "failed"]
    assert all(a.status_code == 500 and a.response_excerpt == "not now" for a in delivery.history)
    dead = await js.get_last_msg("DEAD_LETTERS", f"dead.t1.{endpoint.id}")
    assert b'"attempts":3' in dead.data


async def test_a_final_failure_is_not_retried(setup) -> None:
    store, worker, _ = setup
    with Receiver(status=410) as receiver:
        endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
        assert (await worker.deliver(message(endpoint.id))).action == "ack"
    [delivery] = await deliveries_of(store, "t1", "evt_1")
    assert delivery.status == "failed" and len(delivery.history) == 1


async def test_a_message_for_another_tenants_endpoint_is_dropped(setup) -> None:
    store, worker, _ = setup
    endpoint = await store.endpoints.create("t2", "http://127.0.0.1:9/x", "", "webhook", generate_webhook_secret())
    assert (await worker.deliver(message(endpoint.id))).action == "term"
    assert await deliveries_of(store, "t1", "evt_1") == []


async def test_a_late_duplicate_attempt_never_turns_a_success_back_into_pending(setup) -> None:
    from datetime import datetime

    from services.delivery.delivery_log import Attempt

    store, _, _ = setup
    endpoint = await store.endpoints.create("t1", "http://127.0.0.1:9/x", "", "webhook", generate_webhook_secret())
    msg = message(endpoint.id)
    assert await store.log.state(msg.delivery_id) is None  # not stored before its first attempt settles

    def attempt(outcome: str) -> Attempt:
        return Attempt(1, datetime.now(UTC), outcome, 200, 1.0, "", None)

    assert await store.log.record_attempt(msg.delivery_id, attempt("succeeded"), new=msg) is True
    assert await store.log.record_attempt(msg.delivery_id, attempt("retrying")) is False
    assert await store.log.record_attempt(msg.delivery_id, attempt("retrying"), new=msg) is False  # stored already
    [delivery] = await deliveries_of(store, "t1", "evt_1")
    assert delivery.status == "succeeded" and [a.outcome for a in delivery.history] == ["succeeded"]


async def test_the_exact_bytes_received_are_delivered(setup) -> None:
    store, worker, _ = setup
    raw = '{"big": 123456789012345678901234567890, "n": 1e9}'
    with Receiver() as receiver:
        endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
        exact = DeliveryMessage(event_id="evt_2", tenant_id="t1", endpoint_id=endpoint.id, route_id="rt_1",
                                event_type="a", source_id="s1", received_at=0.0, payload={"lossy": True},
                                body=raw.encode())
        assert (await worker.deliver(exact)).action == "ack"
    assert receiver.requests[0].body == raw.encode()


async def test_the_receivers_response_headers_are_kept_bounded(setup) -> None:
    store, worker, _ = setup
    with Receiver(status=200, headers={"X-Request-Id": "abc-123", "X-Long": "v" * 1000}) as receiver:
        endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
        await worker.deliver(message(endpoint.id))
    [delivery] = await deliveries_of(store, "t1", "evt_1")
    headers = delivery.history[0].response_headers
    assert headers["x-request-id"] == "abc-123" and len(headers["x-long"]) == 256


async def test_an_open_circuit_holds_deliveries_without_spending_attempts(pool, js) -> None:
    from switchboard.circuit import CircuitBreakers

    await apply_migrations(pool, "delivery", MIGRATIONS)
    await ensure_streams(js, Settings.from_env({}))
    store = delivery_stores(pool)
    clock = Clock(0.0)
    async with outbound_client() as http:
        worker = DeliveryWorker(Bus(js, 5.0), *store, load_registry(), DestinationContext(http, 5.0, True),
                                EndpointOptions(16, None, 5.0, RetryPolicy(max_attempts=5, base_delay_s=1, jitter=0)),
                                CircuitBreakers(threshold=2, cooldown_s=30, clock=clock))
        with Receiver(status=503) as receiver:
            endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
            for n in range(2):
                assert (await worker.deliver(message(endpoint.id, f"evt_{n}"))).action == "nak"
            held = await worker.deliver(message(endpoint.id, "evt_held"))
            assert held.action == "nak" and held.delay_s == 30
            assert len(receiver.requests) == 2
            assert await deliveries_of(store, "t1", "evt_held") == []  # not even begun: no attempt spent
            clock.now += 30
            receiver.status = 200
            assert (await worker.deliver(message(endpoint.id, "evt_held"))).action == "ack"  # the probe
            assert worker.circuits.circuit(endpoint.id).state == "closed"
            assert len(receiver.requests) == 3


def _worker_with_clock(js, store, http, clock, **defaults):
    from switchboard.circuit import CircuitBreakers

    return DeliveryWorker(Bus(js, 5.0), *store, load_registry(), DestinationContext(http, 5.0, True),
                          EndpointOptions(16, None, 5.0, RetryPolicy(max_attempts=5, base_delay_s=1, jitter=0),
                                          **defaults), CircuitBreakers(threshold=2, cooldown_s=30, clock=clock))


async def test_while_the_circuit_is_open_deliveries_go_to_the_failover_with_the_same_webhook_id(pool, js) -> None:
    await apply_migrations(pool, "delivery", MIGRATIONS)
    await ensure_streams(js, Settings.from_env({}))
    store = delivery_stores(pool)
    clock = Clock(0.0)
    async with outbound_client() as http:
        worker = _worker_with_clock(js, store, http, clock)
        with Receiver(status=503) as primary, Receiver() as backup:
            spare = await store.endpoints.create("t1", backup.url, "", "webhook", generate_webhook_secret())
            endpoint = await store.endpoints.create("t1", primary.url, "", "webhook", generate_webhook_secret(),
                                                   failover_endpoint_id=spare.id)
            for n in range(2):
                assert (await worker.deliver(message(endpoint.id, f"evt_{n}"))).action == "nak"
            assert (await worker.deliver(message(endpoint.id, "evt_0"))).action == "ack"  # retried: via failover
            [via] = backup.requests
            assert via.headers["webhook-id"] == f"evt_0:{endpoint.id}"
            [delivery] = await deliveries_of(store, "t1", "evt_0")
            assert delivery.status == "succeeded" and delivery.endpoint_id == endpoint.id
            assert [(a.outcome, a.sent_to) for a in delivery.history] == [("retrying", None), ("succeeded", spare.id)]
            assert len(primary.requests) == 2
            # Analytics hears of each attempt for the endpoint it went to.
            reports = await js.pull_subscribe("attempts.t1", "check-reports")
            sent = {(r["delivery_id"], r["number"]): r["endpoint_id"]
                    for r in (decode(m.data) for m in await reports.fetch(10, timeout=5))}
            assert sent[(f"evt_0:{endpoint.id}", 1)] == endpoint.id and sent[(f"evt_0:{endpoint.id}", 2)] == spare.id

            # The primary recovers: after the cooldown its probe goes to it again.
            clock.now += 30
            primary.status = 200
            assert (await worker.deliver(message(endpoint.id, "evt_1"))).action == "ack"
            assert len(primary.requests) == 3 and len(backup.requests) == 1

            # A disabled failover is not used: the delivery waits instead.
            primary.status = 503
            await store.endpoints.set_disabled("t1", spare.id, "by an operator")
            for n in range(2, 4):
                await worker.deliver(message(endpoint.id, f"evt_{n}"))
            held = await worker.deliver(message(endpoint.id, "evt_held"))
            assert held.action == "nak" and held.delay_s == 30 and len(backup.requests) == 1


async def test_an_endpoint_failing_for_the_configured_period_is_disabled_with_its_reason(pool, js) -> None:
    import asyncio

    await apply_migrations(pool, "delivery", MIGRATIONS)
    await ensure_streams(js, Settings.from_env({}))
    store = delivery_stores(pool, ttl_s=0)
    clock = Clock(0.0)
    async with outbound_client() as http:
        worker = _worker_with_clock(js, store, http, clock, auto_disable_after_s=0.5)
        with Receiver(status=500) as receiver:
            endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
            await worker.deliver(message(endpoint.id, "evt_0"))
            first = (await store.endpoints.get("t1", endpoint.id)).failing_since
            assert first is not None
            # A success ends the streak...
            receiver.status = 200
            await worker.deliver(message(endpoint.id, "evt_1"))
            assert (await store.endpoints.get("t1", endpoint.id)).failing_since is None
            # ...so only failing without a break for the whole period disables.
            receiver.status = 500
            await worker.deliver(message(endpoint.id, "evt_2"))
            await asyncio.sleep(0.6)
            assert (await store.endpoints.get("t1", endpoint.id)).disabled_at is None
            await worker.deliver(message(endpoint.id, "evt_3"))
            disabled = await store.endpoints.get("t1", endpoint.id)
            assert disabled.disabled_at is not None and disabled.disabled_reason is not None
            assert disabled.disabled_reason.startswith("failing since ") and "receiver answered 500" in \
                disabled.disabled_reason
            # Re-enabled, it starts afresh.
            enabled = await store.endpoints.set_disabled("t1", endpoint.id, None)
            assert enabled.disabled_at is None and enabled.failing_since is None


class ResettingServer:
    """Accepts a connection, reads the request, and resets the connection (RST, not FIN)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket
        import struct

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"


async def test_a_receiver_that_resets_the_connection_is_retried(setup) -> None:
    store, worker, _ = setup
    server = ResettingServer()
    try:
        endpoint = await store.endpoints.create("t1", server.url, "", "webhook", generate_webhook_secret())
        decision = await worker.deliver(message(endpoint.id))
    finally:
        server.sock.close()
    assert decision.action == "nak" and server.accepted >= 1
    [delivery] = await deliveries_of(store, "t1", "evt_1")
    [attempt] = delivery.history
    assert attempt.outcome == "retrying" and attempt.status_code is None and attempt.error


async def test_a_receiver_hanging_past_the_timeout_is_cut_off_and_retried(setup) -> None:
    store, worker, _ = setup
    with Receiver(delay_s=3) as receiver:
        endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret(),
                                               options={"timeout_seconds": 1})
        decision = await worker.deliver(message(endpoint.id))
    assert decision.action == "nak"
    [delivery] = await deliveries_of(store, "t1", "evt_1")
    [attempt] = delivery.history
    assert attempt.error == "timed out after 1s" and 900 <= attempt.latency_ms < 2500


async def test_429_with_retry_after_waits_as_long_as_the_receiver_asks(setup) -> None:
    store, worker, _ = setup
    with Receiver(status=429, headers={"retry-after": "42"}) as receiver:
        endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
        decision = await worker.deliver(message(endpoint.id))
    assert decision.action == "nak" and decision.delay_s == 42  # the policy alone would wait 1 s


async def test_a_destination_plugin_that_raises_is_recorded_and_the_delivery_kept(pool, js) -> None:
    from plugins.manager import PluginRegistry

    class Broken:
        name = "broken"

        def validate(self, target):
            pass

        async def send(self, message, target, context):
            raise RuntimeError("plugin bug: no such attribute")

    await apply_migrations(pool, "delivery", MIGRATIONS)
    await ensure_streams(js, Settings.from_env({}))
    store = delivery_stores(pool)
    registry = PluginRegistry(destinations={"broken": Broken()})
    async with outbound_client() as http:
        worker = DeliveryWorker(Bus(js, 5.0), *store, registry, DestinationContext(http, 5.0, True),
                                EndpointOptions(16, None, 5.0, RetryPolicy(max_attempts=3, base_delay_s=1, jitter=0)))
        endpoint = await store.endpoints.create("t1", "http://127.0.0.1:9/x", "", "broken", generate_webhook_secret())
        assert (await worker.deliver(message(endpoint.id))).action == "nak"  # retried, not lost
    [delivery] = await deliveries_of(store, "t1", "evt_1")
    assert delivery.status == "pending"
    assert delivery.history[0].error == "RuntimeError: plugin bug: no such attribute"


async def test_concurrent_reads_and_records_share_statements_with_the_same_outcomes(setup) -> None:
    """Group commit keeps each call's answer: new and known deliveries, a delivery twice in one
    batch, and an attempt number recorded twice (only the first counts)."""
    import asyncio
    from datetime import datetime

    from services.delivery.delivery_log import Attempt

    def attempt(number: int, outcome: str) -> Attempt:
        return Attempt(number, datetime.now(UTC), outcome, 200, 1.0, "", None)

    store, _, _ = setup
    endpoint = await store.endpoints.create("t1", "http://127.0.0.1:9/x", "", "webhook", generate_webhook_secret())
    known = message(endpoint.id, "evt_known")
    assert await store.log.record_attempt(known.delivery_id, attempt(1, "retrying"), new=known) is True
    fresh = [message(endpoint.id, f"evt_{n}") for n in range(20)]
    states = await asyncio.gather(*(store.log.state(m.delivery_id) for m in [known, *fresh, fresh[0]]))
    assert states == [("pending", 1, 0)] + [None] * 21

    recorded = await asyncio.gather(
        store.log.record_attempt(known.delivery_id, attempt(2, "retrying")),
        store.log.record_attempt(known.delivery_id, attempt(2, "succeeded")),  # the same attempt again: refused
        *(store.log.record_attempt(m.delivery_id, attempt(1, "succeeded"), new=m) for m in fresh),
        # A second copy of a new delivery's message, sent meanwhile: the first to record wins.
        store.log.record_attempt(fresh[0].delivery_id, attempt(1, "retrying"), new=fresh[0]),
        store.log.record_attempt("evt_none:ep_none", attempt(1, "succeeded")),  # no such delivery
    )
    assert recorded == [True, False, *[True] * 20, False, False]
    assert await store.log.state(known.delivery_id) == ("pending", 2, 0)
    assert {await store.log.state(m.delivery_id) for m in fresh} == {("succeeded", 1, 0)}
    [stored] = await deliveries_of(store, "t1", "evt_0")
    assert [a.outcome for a in stored.history] == ["succeeded"]


async def test_each_recorded_attempt_is_counted_by_destination_and_outcome(setup) -> None:
    store, worker, _ = setup

    def count(outcome: str) -> float:
        return value("switchboard_delivery_attempts_total", destination="webhook", outcome=outcome)

    before = {o: count(o) for o in ("succeeded", "retrying")}
    with Receiver(status=503) as receiver:
        endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
        await worker.deliver(message(endpoint.id, "evt_m"))
        receiver.status = 200
        await worker.deliver(message(endpoint.id, "evt_m"))
    assert count("retrying") - before["retrying"] == 1 and count("succeeded") - before["succeeded"] == 1


async def test_an_answer_postgresql_cannot_store_never_holds_up_the_deliveries_beside_it(setup) -> None:
    """A receiver answering NUL bytes (binary bodies do) is recorded cleaned, and ten deliveries
    sharing its batch are recorded too; an attempt that still could not be stored fails alone."""
    import asyncio
    from datetime import datetime

    from services.delivery.delivery_log import Attempt

    store, worker, _ = setup

    async def binary(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nok\x00\x00ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(binary, "127.0.0.1", 0)
    odd = await store.endpoints.create("t1", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/", "",
                                      "webhook", generate_webhook_secret())
    with Receiver() as receiver:
        good = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
        decisions = await asyncio.gather(worker.deliver(message(odd.id, "evt_odd")),
                                         *(worker.deliver(message(good.id, f"evt_{n}")) for n in range(10)))
    server.close()
    assert [d.action for d in decisions] == ["ack"] * 11
    [delivery] = await deliveries_of(store, "t1", "evt_odd")
    assert delivery.status == "succeeded" and delivery.history[0].response_excerpt == "okok"
    for n in range(10):
        assert (await deliveries_of(store, "t1", f"evt_{n}"))[0].status == "succeeded"
    # Past the cleaning, the store's own fallback: the bad row fails its caller only.
    unstorable, fine = message(good.id, "evt_bad"), message(good.id, "evt_fine")
    now = datetime.now(UTC)
    results = await asyncio.gather(
        store.log.record_attempt(unstorable.delivery_id, Attempt(1, now, "succeeded", 200, 1.0, "a\x00b", None),
                             new=unstorable),
        store.log.record_attempt(fine.delivery_id, Attempt(1, now, "succeeded", 200, 1.0, "ok", None), new=fine),
        return_exceptions=True)
    assert isinstance(results[0], Exception) and results[1] is True
    # A message with a NUL (an AI-drafted reply could hold one) is stored without it: were its
    # record refused, the delivery, already sent, would be sent again and again.
    odd_reply = replace(message(good.id, "evt_reply"), payload={"text": "a\x00b", "k\x00": ["c\x00"]})
    assert await store.log.record_attempt(odd_reply.delivery_id, Attempt(1, now, "succeeded", 200, 1.0, "", None),
                                      new=odd_reply) is True
    async with store.log.pool.connection() as conn:
        cur = await conn.execute("SELECT message FROM delivery.deliveries WHERE id = %s", (odd_reply.delivery_id,))
        assert (await cur.fetchone())["message"]["payload"] == {"text": "ab", "k": ["c"]}


async def notices_of(js, durable: str, expected: int) -> list[dict]:
    """The delivery notices analytics was sent (``expected`` of them, and no more)."""
    import nats.errors

    sub = await js.pull_subscribe("attempts.t1.notice", durable)
    found = [decode(m.data) for m in await sub.fetch(expected, timeout=5)] if expected else []
    try:
        found += [decode(m.data) for m in await sub.fetch(1, timeout=0.5)]
    except nats.errors.TimeoutError:
        pass
    return found


async def test_a_held_delivery_is_reported_once_per_reason_not_per_hold(pool, js) -> None:
    import asyncio

    def holds_counted(reason: str) -> float:
        return value("switchboard_delivery_holds_total", reason=reason)

    counted_before = {reason: holds_counted(reason) for reason in ("circuit_open", "in_flight_cap")}
    await apply_migrations(pool, "delivery", MIGRATIONS)
    await ensure_streams(js, Settings.from_env({}))
    store = delivery_stores(pool)
    clock = Clock(0.0)
    async with outbound_client() as http:
        worker = _worker_with_clock(js, store, http, clock)
        with Receiver(status=503) as receiver:
            endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
            for n in range(2):
                await worker.deliver(message(endpoint.id, f"evt_{n}"))
            # The circuit is open: the delivery comes back again and again, held each time.
            for _ in range(5):
                held = await worker.deliver(message(endpoint.id, "evt_held"))
                assert held.action == "nak" and held.delay_s == 30
            [notice] = await notices_of(js, "circuit", 1)
            assert (notice["delivery_id"], notice["endpoint_id"], notice["state"]) == (
                f"evt_held:{endpoint.id}", endpoint.id, "circuit_open")
            assert (notice["event_type"], notice["source_id"]) == ("a.b", "s1")

            # Attempted once the circuit half-opens, then held again: that is news again.
            clock.now += 30
            assert (await worker.deliver(message(endpoint.id, "evt_held"))).action == "nak"  # the probe fails
            assert (await worker.deliver(message(endpoint.id, "evt_held"))).delay_s == 30
            assert [n["state"] for n in await notices_of(js, "circuit-again", 2)] == ["circuit_open"] * 2
            # Every hold is counted, where analytics hears of each reason once.
            assert holds_counted("circuit_open") - counted_before["circuit_open"] == 6

    # An in-flight cap that clears at once is not reported; one that lasts is, once. (Each delivery
    # over the cap first waits SLOT_WAIT_S for a slot; the receiver is slower than that, by enough that
    # the one waiting is held twice however slow the machine.)
    async with outbound_client() as http:
        capped = DeliveryWorker(Bus(js, 5.0), *store, load_registry(), DestinationContext(http, 10.0, True),
                                EndpointOptions(1, None, 10.0, RetryPolicy(max_attempts=3, base_delay_s=1, jitter=0)))
        with Receiver(delay_s=SLOT_WAIT_S * 5.5) as slow:
            endpoint = await store.endpoints.create("t1", slow.url, "", "webhook", generate_webhook_secret())
            first = asyncio.create_task(capped.deliver(message(endpoint.id, "evt_slow")))
            while not capped.in_flight[endpoint.id]:
                await asyncio.sleep(0.01)
            holds = 0
            while not first.done():
                held = await capped.deliver(message(endpoint.id, "evt_waiting"))
                if held.action == "ack":
                    break  # the slot came free while it waited for it
                assert held.action == "nak" and held.delay_s
                holds += 1
                await asyncio.sleep(held.delay_s)
            assert (await first).action == "ack" and holds > 1
            assert holds_counted("in_flight_cap") - counted_before["in_flight_cap"] == holds
            # It was held for seconds: reported once, after it had lasted (held only for a moment, nothing).
            assert [n["state"] for n in await notices_of(js, "capped", 3)] == [
                "circuit_open", "circuit_open", "in_flight_cap"]


@pytest.mark.parametrize(("concurrency", "processes", "waiting"), [
    (0, 1, 2 * SLOT_WAITERS_PER_SLOT),  # SLOT_WAITERS_PER_SLOT per slot
    (64, 1, 2 * SLOT_WAITERS_PER_SLOT),  # as many when that is within half the consumer's concurrency
    (8, 1, 4),  # half the consumer's concurrency, when that is fewer: the rest is for other endpoints
    (8, 2, 2),  # shared out among the processes: the rest goes back for the other to take
])
async def test_deliveries_over_the_cap_wait_in_the_process_for_a_slot_instead_of_circling(
        setup: Setup, concurrency, processes, waiting) -> None:
    """A busy endpoint's deliveries over its in-flight cap take the slots as they free up, in
    order, without going back to the stream; only those beyond the waiting room do."""
    store, _, js = setup
    async with outbound_client() as http:
        capped = DeliveryWorker(Bus(js, 5.0), *store, load_registry(), DestinationContext(http, 5.0, True),
                                EndpointOptions(2, None, 5.0, RetryPolicy(max_attempts=3, base_delay_s=1, jitter=0)),
                                concurrency=concurrency, processes=processes)
        send_s = 0.1
        with Receiver(delay_s=send_s) as receiver:
            endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook",
                                                   generate_webhook_secret(), options={"max_in_flight": 2 * processes})
            room = 2 + waiting  # this process's two sending, the rest waiting
            for batch in ("first", "second"):
                decisions = await asyncio.gather(*(capped.deliver(message(endpoint.id, f"evt_{batch}_{n}"))
                                                   for n in range(room + 3)))
                assert sorted(d.action for d in decisions) == ["ack"] * room + ["nak"] * 3
        # Those beyond the room go back to the stream until about their turn: after the ones waiting, one
        # after another, a slot's time apart (each send 0.1 s over two slots; timed by the first batch).
        turns = sorted(d.delay_s or 0 for d in decisions if d.action == "nak")
        slot_s = send_s / 2
        # A send as the worker timed it: the receiver's 0.1 s and what a loaded machine adds.
        timed_slot_s = max(send_s, capped.slot_turns.send_time(endpoint.id)) / 2
        assert 0.9 * (waiting + 1) * slot_s <= turns[0] <= (waiting + 1) * timed_slot_s + 0.2, turns
        assert turns[1] - turns[0] >= 0.9 * slot_s and turns[2] - turns[1] >= 0.9 * slot_s, turns
        assert len(receiver.requests) == 2 * room
        # Every slot was given back: nothing in flight, nobody waiting.
        assert not capped.in_flight and not capped._slot_waiters


async def test_an_endpoints_slot_is_given_back_as_the_send_ends_not_after_the_record(
        setup: Setup, database_url) -> None:
    """max_in_flight bounds requests at the receiver: while PostgreSQL is slow to record the
    attempts, the next deliveries of a one-slot endpoint are sent, one at a time."""
    import psycopg

    store, _, js = setup
    async with outbound_client() as http:
        one_slot = DeliveryWorker(Bus(js, 5.0), *store, load_registry(), DestinationContext(http, 5.0, True),
                                  EndpointOptions(1, None, 5.0, RetryPolicy(max_attempts=3, base_delay_s=1, jitter=0)))
        with Receiver() as receiver:
            endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
            async with await psycopg.AsyncConnection.connect(database_url) as locker:
                # Attempts cannot be inserted until this transaction ends: every record waits.
                await locker.execute("LOCK TABLE delivery.attempts IN SHARE MODE")
                deliveries = [asyncio.create_task(one_slot.deliver(message(endpoint.id, f"evt_{n}")))
                              for n in range(3)]
                deadline = time.monotonic() + 3.0
                while (len(receiver.requests) < 3 or one_slot.in_flight[endpoint.id]) and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                sent_while_records_waited = len(receiver.requests)
                in_flight_then = one_slot.in_flight[endpoint.id]
                await locker.commit()
            decisions = await asyncio.gather(*deliveries)
    assert sent_while_records_waited == 3
    assert in_flight_then == 0  # the slots were given back, though no attempt was recorded yet
    assert [d.action for d in decisions] == ["ack"] * 3
    assert len(receiver.requests) == 3 and not one_slot.in_flight and not one_slot._slot_waiters


async def test_an_attempt_sent_while_the_database_goes_away_waits_to_be_recorded_not_sent_again(
        setup, database_url, postgres_server) -> None:
    """PostgreSQL is lost between the send and its record: the worker waits for it (the
    consumer keeps the message in progress) instead of giving the message back to send again."""
    import asyncio

    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    store, worker, _ = setup
    name = conninfo_to_dict(database_url)["dbname"]

    def database_reachable(reachable: bool) -> None:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(reachable).lower()}')
            if not reachable:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))

    with Receiver(delay_s=1.5) as receiver:
        endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
        delivering = asyncio.create_task(worker.deliver(message(endpoint.id)))
        await asyncio.sleep(0.7)  # sent; the receiver has not answered yet
        database_reachable(False)
        try:
            await asyncio.sleep(3.0)
            assert not delivering.done()  # waiting for the database, not giving up
        finally:
            database_reachable(True)
        assert (await asyncio.wait_for(delivering, 30)).action == "ack"
    assert len(receiver.requests) == 1
    [delivery] = await deliveries_of(store, "t1", "evt_1")
    assert delivery.status == "succeeded" and len(delivery.history) == 1


async def test_a_new_delivery_from_the_router_is_sent_without_a_state_read_and_a_late_copy_not_settled_twice(
        setup, monkeypatch) -> None:
    """The router's first copy of a delivery has no row yet: reading its state cost PostgreSQL a
    statement per delivery. A copy published again past the duplicate window (its router was down
    that long) may reach the receiver again, with the same webhook-id, but is never recorded twice."""
    import nats.errors

    from services.router.consumer import REPLAY_ROUTE, publish_deliveries
    from services.router.dispatch import Outgoing
    from switchboard.events import Event, delivery_subject
    from switchboard.messaging import NEW_DELIVERY_HEADER, encode, reader

    store, worker, js = setup
    reads: list[str] = []
    read_state = store.log.state

    async def counted_state(delivery_id: str):
        reads.append(delivery_id)
        return await read_state(delivery_id)

    monkeypatch.setattr(store.log, "state", counted_state)
    with Receiver() as receiver:
        endpoint = await store.endpoints.create("t1", receiver.url, "", "webhook", generate_webhook_secret())
        sub = await js.pull_subscribe(delivery_subject("t1", endpoint.id), "worker")
        event = Event(id="evt_new", tenant_id="t1", source_id="s1", type="a.b", received_at=time.time(),
                      payload={"n": 1})
        await publish_deliveries(Bus(js, 5.0), event, [Outgoing(REPLAY_ROUTE, endpoint.id, event.payload, None)])

        async def handle_next() -> str:
            [msg] = await sub.fetch(1, timeout=5)
            decision = await worker.handle(reader(DeliveryMessage)(msg), msg)
            await (msg.ack() if decision.action == "ack" else msg.nak(delay=0))
            return decision.action

        assert await handle_next() == "ack"
        assert reads == [] and len(receiver.requests) == 1
        [delivery] = await deliveries_of(store, "t1", "evt_new")
        # The router's copy again, as published after its duplicate window (another message id).
        late = message(endpoint.id, "evt_new")
        await js.publish(delivery_subject("t1", endpoint.id), encode({**late.to_message(), "payload": {"n": 1}}),
                         headers={"Nats-Msg-Id": "published-again", NEW_DELIVERY_HEADER: "1"})
        assert await handle_next() == "nak"  # sent again, found recorded: comes back to read its state
        assert await handle_next() == "ack"  # settled: nothing more is sent
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=0.5)
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(receiver.requests) == 2 and ids == {delivery.id}
    [delivery] = await deliveries_of(store, "t1", "evt_new")
    assert delivery.status == "succeeded" and [a.outcome for a in delivery.history] == ["succeeded"]
    assert reads == [delivery.id]
