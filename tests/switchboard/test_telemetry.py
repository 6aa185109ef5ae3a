"""Traces: exporter settings, and one trace across HTTP, NATS and gRPC (in-process, in-memory spans)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.trace import TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from services.delivery.ordering import KeyQueue
from services.delivery.worker import DeliveryWorker
from gateway.app import EdgeTelemetry
from services.ingest.publisher import JetStreamPublisher
from services.router.consumer import REPLAY_ROUTE, EventRouter
from services.router.dispatch import Outgoing
from switchboard.errors import NotFound
from switchboard.events import DeliveryMessage, Event
from switchboard.messaging import ConsumerSpec, ensure_consumer, ensure_streams, reader
from switchboard.rpc import GrpcServer, ServiceClients, call
from switchboard.settings import Settings, SettingsError
from switchboard import telemetry
from switchboard.telemetry import span_exporter, tracer_provider
from tests.credentials import SERVICE_TOKEN, service_only
from switchboard.bus import Bus

SENDER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SENDER_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span finished in this process, kept in memory (the global provider can be set only once)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture(autouse=True)
def fresh(spans: InMemorySpanExporter) -> None:
    spans.clear()


def named(spans: InMemorySpanExporter, name: str):
    found = [s for s in spans.get_finished_spans() if s.name == name]
    assert found, f"no span {name!r} among {[s.name for s in spans.get_finished_spans()]}"
    return found[-1]


# -- settings -----------------------------------------------------------------------


@pytest.mark.parametrize("env, exporter", [
    ({}, "none"),
    ({"SWITCHBOARD_OTEL_CONSOLE": "true"}, "console"),  # the older switch still works
    ({"SWITCHBOARD_OTEL_EXPORTER": "console"}, "console"),
    ({"SWITCHBOARD_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "SWITCHBOARD_OTEL_EXPORTER": "none"}, "none"),
])
def test_the_exporter_is_chosen_from_the_environment(env: dict[str, str], exporter: str) -> None:
    settings = Settings.from_env(env)
    assert settings.telemetry.otel_exporter == exporter
    assert Settings.from_env(settings.as_env()).telemetry.otel_exporter == exporter  # children see the same


def test_an_unknown_exporter_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="OTEL_EXPORTER"):
        Settings.from_env({"SWITCHBOARD_OTEL_EXPORTER": "jaeger"})


def test_exporters() -> None:
    assert span_exporter("none") is None
    assert isinstance(span_exporter("console"), ConsoleSpanExporter)
    otlp = span_exporter("otlp", "http://127.0.0.1:4318/")
    assert isinstance(otlp, OTLPSpanExporter) and otlp._endpoint == "http://127.0.0.1:4318/v1/traces"
    otlp.shutdown()


def test_without_an_exporter_spans_are_not_recorded_but_still_carry_ids() -> None:
    quiet = tracer_provider("test", "none").get_tracer("t").start_span("s")
    assert not quiet.is_recording() and quiet.get_span_context().is_valid
    exporting = tracer_provider("test", "console")
    assert exporting.get_tracer("t").start_span("s").is_recording()
    exporting.shutdown()


# -- gRPC ---------------------------------------------------------------------------


async def test_a_grpc_call_continues_the_callers_trace(spans: InMemorySpanExporter) -> None:
    seen: list[str] = []

    async def say(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        seen.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))
        return request

    server = GrpcServer("test", [], service_only())
    server.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "test.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)})])
    port = await server.start("127.0.0.1", 0)
    clients = ServiceClients(Settings(service_token=SERVICE_TOKEN, grpc_targets={"ai": f"127.0.0.1:{port}"}))
    try:
        with trace.get_tracer("test").start_as_current_span("router.route") as parent:
            assert await call(clients.channel("ai").unary_unary("/test.Echo/Say")(b"x", timeout=5)) == b"x"
    finally:
        await clients.close()
        await server.stop(0)
    trace_id = parent.get_span_context().trace_id
    served = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER][-1]
    client = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.CLIENT][-1]
    assert client.parent is not None and served.parent is not None and served.attributes is not None
    assert client.parent.span_id == parent.get_span_context().span_id
    assert served.parent.span_id == client.context.span_id and served.parent.is_remote
    assert {client.context.trace_id, served.context.trace_id} == {trace_id}
    assert seen == [format(trace_id, "032x")]
    assert served.attributes["rpc.method"] == "Say" and served.attributes["rpc.grpc.status_code"] == 0


# -- one event: edge → EVENTS → router → DELIVERIES → delivery ------------------------


class NoEndpoints:
    """No endpoint at all: a delivery is dropped before any attempt (so before any note of health)."""

    note_failures = note_successes = None

    async def cached(self, tenant_id: str, endpoint_id: str):
        raise NotFound("no endpoint")


class Store:
    async def insert(self, event: Event, explanation: dict, stream_seq: int | None = None) -> None:
        pass


class OneEndpoint:
    async def dispatch(self, event: Event):
        outgoing = [Outgoing(REPLAY_ROUTE, "ep_1", event.payload, None)]
        return SimpleNamespace(outgoing=outgoing, explanation={}, labels={}, retry=None,
                               plan=SimpleNamespace(dropped_by=None, deliveries=[(REPLAY_ROUTE, "ep_1")],
                                                    verdicts=[]))


async def next_message(js, stream: str, durable: str):
    spec = ConsumerSpec(stream, durable)
    await ensure_consumer(js, spec)
    sub = await js.pull_subscribe_bind(durable, stream=stream)
    [msg] = await sub.fetch(1, timeout=5)
    await sub.unsubscribe()
    return msg


async def route_a_traced_webhook(js) -> tuple:
    """A webhook with the sender's traceparent through the edge's telemetry, the router and a delivery
    worker: the EVENTS and DELIVERIES messages' traceparent headers."""
    await ensure_streams(js, Settings())
    publish = JetStreamPublisher(js._nc, timeout_s=5, max_message_bytes=1 << 20)

    async def receive(request: Request) -> JSONResponse:
        # What the real intake does, minus verification: publish the event, then answer.
        event = Event(id="evt_traced", tenant_id="t1", source_id=request.path_params["source_id"],
                      type="order.created", received_at=0.0, payload={"n": 1})
        await publish(event)
        return JSONResponse({"event_id": event.id}, status_code=202)

    app = Starlette(routes=[Route("/in/{source_id}", receive, methods=["POST"])])
    traceparent = f"00-{SENDER_TRACE}-{SENDER_SPAN}-01"
    with TestClient(EdgeTelemetry(app)) as client:
        # The sender's own trace is continued; TestClient runs the app in its own thread and loop.
        reply = await asyncio.to_thread(client.post, "/in/src_1", headers={"traceparent": traceparent})
    assert reply.status_code == 202

    event_msg = await next_message(js, "EVENTS", "trace_router")
    router = EventRouter(Bus(js, 5.0), Store(), OneEndpoint())  # type: ignore[arg-type]
    assert (await router.handle(reader(Event)(event_msg), event_msg)).action == "ack"

    delivery_msg = await next_message(js, "DELIVERIES", "trace_delivery")
    # No endpoint, so no delivery log, registry or ordered queue is ever reached.
    worker = DeliveryWorker(Bus(js, 5.0), NoEndpoints(), None, None, None, None,  # type: ignore[arg-type]
                            ordered=KeyQueue(None))  # type: ignore[arg-type]
    assert (await worker.handle(reader(DeliveryMessage)(delivery_msg), delivery_msg)).action == "term"
    return event_msg.headers["traceparent"], delivery_msg.headers["traceparent"]


async def test_one_events_spans_share_one_trace_from_the_edge_to_delivery(spans: InMemorySpanExporter, js) -> None:
    to_router, _ = await route_a_traced_webhook(js)
    assert to_router.split("-")[1] == SENDER_TRACE

    edge = named(spans, "POST /in/{source_id}")
    routed = named(spans, "router.route")
    delivered = named(spans, "delivery.send")
    assert {format(s.context.trace_id, "032x") for s in (edge, routed, delivered)} == {SENDER_TRACE}
    assert routed.parent.span_id == edge.context.span_id
    assert delivered.parent.span_id == routed.context.span_id
    assert edge.kind == trace.SpanKind.SERVER
    assert edge.attributes["http.route"] == "/in/{source_id}"
    assert edge.attributes["http.response.status_code"] == 202
    assert edge.attributes["switchboard.event_id"] == "evt_traced"


async def test_where_spans_are_not_recorded_the_trace_still_joins_the_processes(
        spans: InMemorySpanExporter, js, monkeypatch) -> None:
    """Without an exporter, the hot paths make their spans without the SDK (start_span): each still
    continues the trace and has an id of its own, as the SDK's unrecorded span would."""
    monkeypatch.setattr(telemetry, "_spans_recorded", False)
    to_router, to_delivery = await route_a_traced_webhook(js)
    edge_hop, router_hop = to_router.split("-"), to_delivery.split("-")
    assert edge_hop[1] == router_hop[1] == SENDER_TRACE
    assert len({SENDER_SPAN, edge_hop[2], router_hop[2]}) == 3  # a span of each process's own
    assert edge_hop[3] == router_hop[3] == "00"  # not sampled: nothing was recorded
    assert spans.get_finished_spans() == ()


@pytest.mark.parametrize("flags", [TraceFlags.DEFAULT, TraceFlags.SAMPLED])
def test_the_traceparent_written_directly_is_the_w3c_propagators(flags: TraceFlags) -> None:
    span = trace.NonRecordingSpan(trace.SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7,
                                                    False, flags))
    with trace.use_span(span):
        ours = telemetry.inject_trace_headers({})
        theirs: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(theirs)
    assert ours == theirs


@pytest.mark.parametrize("traceparent", [
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # invalid: no trace id
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # a later version
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
    "garbage",
])
def test_a_traceparent_read_directly_is_what_the_w3c_propagator_reads(traceparent: str) -> None:
    ours = trace.get_current_span(telemetry.extract_trace_context({"traceparent": traceparent})).get_span_context()
    their_span = trace.get_current_span(TraceContextTextMapPropagator().extract({"traceparent": traceparent}))
    theirs = their_span.get_span_context()
    assert (ours.trace_id, ours.span_id, ours.trace_flags, ours.is_remote, ours.is_valid) == \
        (theirs.trace_id, theirs.span_id, theirs.trace_flags, theirs.is_remote, theirs.is_valid)


def test_a_new_trace_without_a_recorded_span_has_fresh_ids_and_the_sdks_spans_continue_it(monkeypatch) -> None:
    monkeypatch.setattr(telemetry, "_spans_recorded", False)
    sdk = tracer_provider("test", "none").get_tracer("t")
    seen = set()
    for _ in range(3):
        with telemetry.start_span(trace.get_tracer("t"), "s") as span:
            ids = span.get_span_context()
            assert ids.is_valid and trace.get_current_span() is span
            seen.add(ids.trace_id)
            # A span the SDK makes inside it (a gRPC call's) reads the parent's flags: they must be TraceFlags.
            with sdk.start_as_current_span("child") as child:
                assert child.get_span_context().trace_id == ids.trace_id
    assert len(seen) == 3 and not trace.get_current_span().get_span_context().is_valid


def test_a_request_without_traceparent_starts_a_new_trace(spans: InMemorySpanExporter) -> None:
    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"trace": format(trace.get_current_span().get_span_context().trace_id, "032x")})

    app = Starlette(routes=[Route("/healthz", ok)])
    with TestClient(EdgeTelemetry(app)) as client:
        body = client.get("/healthz").json()
    span = named(spans, "GET /healthz")
    assert span.parent is None
    assert body["trace"] == format(span.context.trace_id, "032x")  # the handler ran inside the span
