"""Observability through the real processes: one event's trace across ingest, router and delivery
(OTLP/HTTP to a loopback collector stand-in), /metrics on every service and the edge, JSON logs
carrying the trace id."""

from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Callable, Iterator

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from switchboard.settings import SERVICE_NAMES
from switchboard.cli.supervisor import listening_ports
from tests.e2e.slice import create_slice, signed
from tests.e2e.test_slice import wait_for_delivery
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    attributes: dict[str, object]


class Collector:
    """An OTLP/HTTP trace receiver on loopback: decodes each export request with opentelemetry-proto."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = self.path == "/v1/traces" and self.headers.get("content-type") == "application/x-protobuf"
                if ok:
                    collector.add(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 400)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes: dict[str, object] = {a.key: a.value.string_value or a.value.int_value
                                                     for a in span.attributes}
                    with self.lock:
                        self.spans.append(ReceivedSpan(resource.get("service.name", ""), span.name,
                                                       span.trace_id.hex(), attributes))

    def wait_for(self, condition: Callable[[list[ReceivedSpan]], bool], timeout: float = 30) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                spans = list(self.spans)
            if condition(spans):
                return spans
            time.sleep(0.1)
        raise AssertionError(f"spans never matched; got {[(s.service, s.name) for s in self.spans]}")

    def __enter__(self) -> Collector:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


def metrics_text(url: str) -> str:
    reply = httpx.get(url, timeout=5)
    assert reply.status_code == 200, reply.text
    return reply.text


def test_one_event_is_one_trace_across_the_processes_with_metrics_and_logs(
        platform_factory: Callable[..., Platform], collector: Collector) -> None:
    platform = platform_factory(
        SWITCHBOARD_OTEL_EXPORTER="otlp", SWITCHBOARD_OTLP_ENDPOINT=collector.url,
        OTEL_BSP_SCHEDULE_DELAY="200", SWITCHBOARD_CONSUMER_LAG_INTERVAL="0.5", SWITCHBOARD_LOG_FORMAT="json",
        SWITCHBOARD_EDGE_METRICS="true",
        # A successful attempt's log line is at debug (at info only failures are logged per attempt).
        SWITCHBOARD_LOG_LEVEL="DEBUG",
    )
    with Receiver() as receiver, platform.client() as api:
        s = create_slice(api, receiver.url)
        body, headers = signed(s.source_secret, {"type": "order.created", "email": "jane@example.com"})
        accepted = httpx.post(f"{platform.edge_url}/in/{s.source_id}", content=body, headers=headers)
        assert accepted.status_code == 202, accepted.text
        event_id = accepted.json()["event_id"]
        receiver.wait_for(lambda r: len(r) == 1)
        wait_for_delivery(api, event_id)

    # Traces: the edge's span names the event; the router's and the delivery's spans share its trace.
    def edge_span(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        return next((x for x in spans if x.service == "switchboard-ingest"
                     and x.attributes.get("switchboard.event_id") == event_id), None)

    def traced_through(spans: list[ReceivedSpan]) -> bool:
        edge = edge_span(spans)
        return edge is not None and {"switchboard-router", "switchboard-delivery"} <= {
            x.service for x in spans if x.trace_id == edge.trace_id}

    spans = collector.wait_for(traced_through)
    edge = edge_span(spans)
    assert edge is not None and edge.name == "POST /in/{source_id}"
    in_trace = {(x.service, x.name) for x in spans if x.trace_id == edge.trace_id}
    assert ("switchboard-router", "router.route") in in_trace
    assert ("switchboard-delivery", "delivery.send") in in_trace
    # gRPC between processes is traced too: the edge verifying keys with auth, continued by auth.
    assert any(x.service == "switchboard-auth" and x.name == "switchboard.v1.AuthService/VerifyApiKey"
               for x in spans)

    # Metrics: every service on its own port, the edge on its HTTP port.
    ports = listening_ports(platform.state_dir)
    texts = {name: metrics_text(f"http://127.0.0.1:{ports[f'{name}_metrics']}/metrics") for name in SERVICE_NAMES}
    edge_text = metrics_text(f"{platform.edge_url}/metrics")
    assert 'switchboard_http_requests_total{method="POST",route="/in/{source_id}",status="202"} 1.0' in edge_text
    assert 'switchboard_grpc_client_handled_total{code="OK",method="VerifyApiKey",' \
           'service="switchboard.v1.AuthService"}' in texts["ingest"]
    assert 'switchboard_grpc_server_handled_total{code="OK",method="VerifyApiKey",' \
           'service="switchboard.v1.AuthService"}' in texts["auth"]
    deadline = time.monotonic() + 10
    while 'switchboard_jetstream_consumer_pending{consumer="delivery",stream="DELIVERIES"} 0.0' not in \
            texts["delivery"] and time.monotonic() < deadline:
        time.sleep(0.3)
        texts["delivery"] = metrics_text(f"http://127.0.0.1:{ports['delivery_metrics']}/metrics")
    assert 'switchboard_jetstream_consumer_pending{consumer="delivery",stream="DELIVERIES"} 0.0' in texts["delivery"]
    assert 'switchboard_jetstream_consumer_ack_pending{consumer="router",stream="EVENTS"}' in texts["router"]
    assert "switchboard_circuits" in texts["delivery"] and "switchboard_circuits" in texts["ai"]
    assert event_id not in "".join(texts.values()) + edge_text  # ids are never labels

    # Logs: JSON lines inside the event's spans carry its trace id; nothing personal leaks.
    lines = [json.loads(line) for line in platform.output if line.startswith("{")]
    traced = [line for line in lines if line.get("trace_id") == edge.trace_id]
    assert any(line["service"] == "delivery" and line["msg"] == "delivery attempt" for line in traced), \
        platform.log_tail()
    assert not any("jane@example.com" in line for line in platform.output)
