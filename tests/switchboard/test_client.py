"""The client's own behaviour against a real gRPC server on loopback that fails on purpose: what it
retries (UNAVAILABLE for calls safe to repeat, a rate limit for any), what it does not (a create), and
the error it raises; and requests built from keyword fields."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, UTC

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct

from switchboard.client import AsyncClient, Client, build_request
from switchboard.errors import InvalidRequest, RateLimited, SwitchboardError, Unavailable
from switchboard.rpc import error_status
from switchboard.v1 import delivery_pb2, ingest_pb2, router_pb2
from tests.receivers import Receiver


class FlakyServer:
    """Answers IngestService methods: ``failures`` errors first (a status code, or a platform error with its
    details), then an empty response."""

    def __init__(self, failures: list[SwitchboardError | grpc.StatusCode]) -> None:
        self.failures = list(failures)
        self.calls: list[str] = []
        self.seen_metadata: list[dict[str, str]] = []
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        handlers = {name: grpc.unary_unary_rpc_method_handler(self._answer(name), request_deserializer=lambda b: b,
                                                                response_serializer=lambda b: b)
                    for name in ("ListSources", "CreateSource", "PublishEvent")}
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("switchboard.v1.IngestService",
                                                                                   handlers)])
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _answer(self, name: str):
        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls.append(name)
            self.seen_metadata.append(dict(context.invocation_metadata()))
            if self.failures:
                failure = self.failures.pop(0)
                if isinstance(failure, grpc.StatusCode):
                    context.abort(failure, "down for a moment")
                status = error_status(failure)
                context.abort_with_status(status)
            return b""
        return answer

    def __enter__(self) -> FlakyServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(0)


def client(server: FlakyServer, **options) -> AsyncClient:
    return AsyncClient("sb_live_test_key", targets={"ingest": f"127.0.0.1:{server.port}"}, backoff_s=0.01, **options)


async def test_unavailable_is_retried_for_a_read_with_the_key_on_every_attempt() -> None:
    with FlakyServer([grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE]) as server:
        async with client(server) as sb:
            assert await sb.list_sources() == ingest_pb2.ListSourcesResponse()
    assert server.calls == ["ListSources"] * 3
    assert {m["authorization"] for m in server.seen_metadata} == {"Bearer sb_live_test_key"}


async def test_a_create_is_not_sent_twice_but_an_idempotent_publish_is() -> None:
    with FlakyServer([grpc.StatusCode.UNAVAILABLE]) as server:
        async with client(server) as sb:
            with pytest.raises(Unavailable):
                await sb.create_source(name="orders")
            assert server.calls == ["CreateSource"]
            server.failures = [grpc.StatusCode.UNAVAILABLE]
            await sb.publish_event(type="t", payload_json="{}", idempotency_key="k1")
    assert server.calls == ["CreateSource", "PublishEvent", "PublishEvent"]


async def test_retries_give_up_with_the_platforms_error() -> None:
    with FlakyServer([grpc.StatusCode.UNAVAILABLE] * 3) as server:
        async with client(server, retries=2) as sb:
            with pytest.raises(Unavailable):
                await sb.list_sources()
    assert len(server.calls) == 3


async def test_a_rate_limit_is_waited_out_then_retried_even_for_a_create() -> None:
    limited = RateLimited("over the limit", retry_after_s=0.2)
    with FlakyServer([limited]) as server:
        async with client(server) as sb:
            started = datetime.now()
            await sb.create_source(name="orders")
            assert (datetime.now() - started).total_seconds() >= 0.2
    assert server.calls == ["CreateSource", "CreateSource"]


def test_the_blocking_client_raises_the_error_with_its_code_and_field() -> None:
    with FlakyServer([InvalidRequest("name is required", field="name")]) as server:
        with Client("sb_live_test_key", targets={"ingest": f"127.0.0.1:{server.port}"}) as sb:
            with pytest.raises(InvalidRequest) as caught:
                sb.create_source()
    assert (caught.value.code, caught.value.field, caught.value.message) == ("invalid_request", "name",
                                                                             "name is required")


def test_requests_are_built_from_fields_in_their_json_form() -> None:
    request = build_request(delivery_pb2.CreateEndpointRequest, None, dict(
        url="https://example.com/hook", config={"headers": {"X-Team": "ops"}}, event_types=["order.*"],
        options={"timeout_seconds": 5, "retry": {"max_attempts": 3, "retry_statuses": [503]}}))
    assert isinstance(request, delivery_pb2.CreateEndpointRequest)
    headers = request.config["headers"]
    assert request.options.retry.max_attempts == 3 and isinstance(headers, Struct) and headers["X-Team"] == "ops"
    assert list(request.event_types) == ["order.*"]
    since = datetime(2026, 12, 1, tzinfo=UTC)
    listing = build_request(delivery_pb2.ListDeliveriesRequest, None, {"since": since})
    assert isinstance(listing, delivery_pb2.ListDeliveriesRequest) and listing.since.ToDatetime(tzinfo=UTC) == since
    spec = build_request(router_pb2.RouteSpecRequest, None, {"spec": {"name": "x"}, "update_mask": "name,enabled"})
    assert isinstance(spec, router_pb2.RouteSpecRequest)
    assert list(spec.update_mask.paths) == ["name", "enabled"]
    with pytest.raises(TypeError, match="no field 'colour'"):
        build_request(delivery_pb2.CreateEndpointRequest, None, {"colour": "red"})


# -- over REST: the same methods against a loopback stand-in of the edge ----------------------------------

def _edge(status: int, body: dict, headers: dict[str, str] | None = None) -> Receiver:
    return Receiver(status=status, headers={"content-type": "application/json", **(headers or {})},
                    response_body=json.dumps(body).encode())


def test_over_rest_a_method_is_its_binding_and_the_answer_its_message() -> None:
    endpoint = {"id": "ep_1", "url": "https://example.com/h", "enabled": True, "options": {"max_in_flight": 2},
                "config": {}, "event_types": ["a.*"], "created_at": "2026-12-04T12:00:00Z", "new_field": 1}
    with _edge(200, endpoint) as edge, Client("sb_live_k_s", rest_url=edge.url.removesuffix("/hook")) as sb:
        got = sb.update_endpoint(id="ep_1", description="x", update_mask="description,eventTypes")
        assert isinstance(got, delivery_pb2.Endpoint) and got.enabled and got.options.max_in_flight == 2
        [sent] = edge.requests
        assert (sent.method, sent.path) == ("PATCH", "/v1/endpoints/ep_1")
        assert sent.headers["authorization"] == "Bearer sb_live_k_s"
        # The mask's fields are the body's keys; one named but unset is sent as null (cleared).
        assert json.loads(sent.body) == {"description": "x", "event_types": None}
        sb.list_deliveries(endpoint_id="ep_1", limit=5)
        assert edge.requests[-1].path == "/v1/deliveries?endpoint_id=ep_1&limit=5"
        with pytest.raises(InvalidRequest, match="no REST binding"):
            sb.create_api_key(name="k")


def test_over_rest_errors_are_the_platforms_with_their_code_and_503_is_retried_only_when_safe() -> None:
    refusal = {"error": {"code": "invalid_endpoint_config", "message": "url: bad", "field": "url"}}
    with _edge(400, refusal) as edge, Client("k", rest_url=edge.url.removesuffix("/hook"), retries=2,
                                             backoff_s=0.01) as sb:
        with pytest.raises(InvalidRequest) as caught:
            sb.create_endpoint(url="x")
        assert (caught.value.code, caught.value.field) == ("invalid_endpoint_config", "url")
    down = {"error": {"code": "unavailable", "message": "later"}}
    with _edge(503, down, {"retry-after": "5"}) as edge, Client("k", rest_url=edge.url.removesuffix("/hook"),
                                                                 retries=2, backoff_s=0.01) as sb:
        with pytest.raises(Unavailable):
            sb.get_endpoint(id="ep_1")
        assert len(edge.requests) == 3  # a read: retried
        with pytest.raises(Unavailable):
            sb.create_endpoint(url="https://example.com/h")
        assert len(edge.requests) == 4  # a create: not retried, it may have been done
