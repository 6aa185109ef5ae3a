"""The platform's Prometheus metrics: what records them, and where they are served."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from gateway.app import build_edge
from switchboard import metrics
from switchboard.circuit import CircuitBreakers
from switchboard.errors import Unauthenticated
from switchboard.messaging import ConsumerSpec, ensure_consumer, ensure_streams
from switchboard.rpc import GrpcServer, ServiceClients, call
from switchboard.settings import EdgeSettings, Settings
from tests.credentials import SERVICE_TOKEN, service_only


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class NoKeys:
    async def bearer(self, header: object) -> None:
        raise Unauthenticated("no key")


def edge_client(**settings: Any) -> TestClient:
    # The routes used here need only the settings and an authenticator that refuses
    # (and a pool for /readyz's probe, which they never call).
    edge = SimpleNamespace(settings=Settings(edge=EdgeSettings(**settings)),
                           authenticator=NoKeys(), database=None)
    return TestClient(build_edge(edge), raise_server_exceptions=False)  # type: ignore[arg-type]


def test_edge_requests_are_counted_by_route_template_not_path() -> None:
    before = value("switchboard_http_requests_total", route="/v1/sources/{source_id}", method="GET", status="401")
    before_404 = value("switchboard_http_requests_total", route="unmatched", method="GET", status="404")
    with edge_client() as client:
        for source in ("src_a", "src_b"):
            assert client.get(f"/v1/sources/{source}").status_code == 401
        assert client.get("/no/such/page").status_code == 404
    assert value("switchboard_http_requests_total", route="/v1/sources/{source_id}", method="GET",
                 status="401") == before + 2
    assert value("switchboard_http_requests_total", route="unmatched", method="GET", status="404") == before_404 + 1
    assert value("switchboard_http_request_duration_seconds_count", route="/v1/sources/{source_id}",
                 method="GET") >= 2
    assert b"src_a" not in metrics.render()[0]  # no raw path in any label


def test_the_edge_serves_metrics_only_when_asked_and_behind_a_token_when_set() -> None:
    with edge_client() as client:
        assert client.get("/metrics").status_code == 404
    with edge_client(metrics=True) as client:
        reply = client.get("/metrics")
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/plain")
        assert "switchboard_http_requests_total" in reply.text
    with edge_client(metrics_token="scrape-me") as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"authorization": "Bearer scrape-me"}).status_code == 200


def test_delivery_and_ai_helpers_record_bounded_labels() -> None:
    before = value("switchboard_delivery_attempts_total", destination="webhook", outcome="retrying")
    metrics.record_delivery_attempt("webhook", "retrying", 0.2)
    assert value("switchboard_delivery_attempts_total", destination="webhook", outcome="retrying") == before + 1
    assert value("switchboard_delivery_attempt_duration_seconds_count", destination="webhook") >= 1

    tokens_in = value("switchboard_ai_tokens_total", provider="anthropic", kind="input")
    tokens_out = value("switchboard_ai_tokens_total", provider="anthropic", kind="output")
    calls = value("switchboard_ai_calls_total", provider="anthropic", task="classify", outcome="ok")
    metrics.record_ai_call("anthropic", "classify", "ok", 0.8, input_tokens=120, output_tokens=30)
    assert value("switchboard_ai_calls_total", provider="anthropic", task="classify", outcome="ok") == calls + 1
    assert value("switchboard_ai_tokens_total", provider="anthropic", kind="input") == tokens_in + 120
    assert value("switchboard_ai_tokens_total", provider="anthropic", kind="output") == tokens_out + 30

    handled = value("switchboard_messages_handled_total", consumer="router", decision="ack")
    metrics.record_message("router", "ack", 0.01)
    assert value("switchboard_messages_handled_total", consumer="router", decision="ack") == handled + 1


def test_circuit_states_are_counted_by_state_without_endpoint_ids() -> None:
    now = [1000.0]
    breakers = CircuitBreakers(threshold=2, cooldown_s=30.0, clock=lambda: now[0])
    breakers.record("ep_ok", True)
    for _ in range(2):
        breakers.record("ep_open", False)
        breakers.record("ep_probe", False)
    now[0] += 10
    breakers.record("ep_open", False)  # reopened later: still cooling down when the probe's cooldown ended
    now[0] += 25
    assert breakers.states() == {"closed": 1, "open": 1, "half_open": 1}

    metrics.watch_circuits("delivery", breakers)
    assert value("switchboard_circuits", kind="delivery", state="closed") == 1
    assert value("switchboard_circuits", kind="delivery", state="open") == 1
    assert value("switchboard_circuits", kind="delivery", state="half_open") == 1
    assert b"ep_open" not in metrics.render()[0]


async def test_consumer_lag_is_read_from_jetstream(js) -> None:
    settings = Settings()
    await ensure_streams(js, settings)
    spec = ConsumerSpec("EVENTS", "lagtest")
    await ensure_consumer(js, spec)
    for n in range(3):
        await js.publish(f"events.t1.s{n}", b"{}", headers={"Nats-Msg-Id": f"lag-{n}"})
    sub = await js.pull_subscribe_bind(spec.durable, stream=spec.stream)
    [fetched] = await sub.fetch(1, timeout=2)  # delivered, not acked

    stopping = asyncio.Event()
    missing = ConsumerSpec("EVENTS", "not-created-yet")  # skipped, not fatal
    task = asyncio.create_task(metrics.watch_consumer_lag(js, [missing, spec], 0.05, stopping))
    try:
        for _ in range(100):
            if value("switchboard_jetstream_consumer_ack_pending", stream="EVENTS", consumer="lagtest") == 1:
                break
            await asyncio.sleep(0.05)
        assert value("switchboard_jetstream_consumer_pending", stream="EVENTS", consumer="lagtest") == 2
        assert value("switchboard_jetstream_consumer_ack_pending", stream="EVENTS", consumer="lagtest") == 1
        await fetched.ack()
    finally:
        stopping.set()
        await asyncio.wait_for(task, 2)
    assert task.exception() is None


async def test_grpc_calls_are_counted_on_both_sides_by_method_and_code() -> None:
    async def say(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if request == b"missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return b"hello " + request

    server = GrpcServer("test", [], service_only())
    server.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "test.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)})])
    port = await server.start("127.0.0.1", 0)
    clients = ServiceClients(Settings(service_token=SERVICE_TOKEN, grpc_targets={"auth": f"127.0.0.1:{port}"}))
    labels = dict(service="test.Echo", method="Say")
    ok_before = value("switchboard_grpc_server_handled_total", code="OK", **labels)
    missing_before = value("switchboard_grpc_server_handled_total", code="NOT_FOUND", **labels)
    client_before = value("switchboard_grpc_client_handled_total", code="NOT_FOUND", **labels)
    try:
        say_rpc = clients.channel("auth").unary_unary("/test.Echo/Say")
        assert await call(say_rpc(b"you", timeout=5)) == b"hello you"
        with pytest.raises(Exception):
            await call(say_rpc(b"missing", timeout=5))
    finally:
        await clients.close()
        await server.stop(0)
    assert value("switchboard_grpc_server_handled_total", code="OK", **labels) == ok_before + 1
    assert value("switchboard_grpc_server_handled_total", code="NOT_FOUND", **labels) == missing_before + 1
    assert value("switchboard_grpc_client_handled_total", code="NOT_FOUND", **labels) == client_before + 1
    assert value("switchboard_grpc_server_handling_seconds_count", **labels) >= 2


def test_the_metrics_server_serves_on_its_own_port_and_a_taken_port_fails() -> None:
    server = metrics.MetricsServer("127.0.0.1", 0)
    try:
        reply = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
        assert reply.status_code == 200 and "switchboard_circuits" in reply.text
        with pytest.raises(OSError):
            metrics.MetricsServer("127.0.0.1", server.port)
    finally:
        server.stop()
