"""Errors keep their meaning across gRPC: the stable code, the field at fault, when to retry."""

from __future__ import annotations

import grpc
import pytest

from plugins.destinations.spec import InvalidEndpointConfig
from gateway.responses import error_parts
from switchboard.errors import (
    Conflict,
    Gone,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SwitchboardError,
    Unavailable,
)
from switchboard.rpc import GrpcServer, ServiceClients, call, servicer
from switchboard.settings import Settings
from switchboard.v1 import ingest_pb2, ingest_pb2_grpc
from tests.credentials import SERVICE_TOKEN, service_only

RAISED: dict[str, SwitchboardError] = {
    "config": InvalidEndpointConfig("slack needs a channel", field="config.channel"),
    "disabled": Gone("source src_1 is disabled", code="source_disabled"),
    "limited": RateLimited("over the limit", retry_after_s=2.5, headers={"RateLimit-Limit": "10"}),
    "large": PayloadTooLarge("the body is over 1 MiB"),
    "taken": Conflict("a source with this name exists"),
    "missing": NotFound("source src_1 not found"),
    "down": Unavailable("could not queue the test event; try again"),
}


@servicer
class Raising(ingest_pb2_grpc.IngestServiceServicer):
    async def GetSource(self, request, context):
        raise RAISED[request.id]


@pytest.fixture
async def stub():
    server = GrpcServer("ingest", ["switchboard.v1.IngestService"], service_only())
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(Raising(), server.server)
    port = await server.start("127.0.0.1", 0)
    clients = ServiceClients(Settings(service_token=SERVICE_TOKEN, grpc_targets={"ingest": f"127.0.0.1:{port}"}))
    yield clients.stub("ingest", ingest_pb2_grpc.IngestServiceStub)
    await clients.close()
    await server.stop(0)


@pytest.mark.parametrize("name", sorted(RAISED))
async def test_the_error_a_service_raises_is_the_error_its_caller_gets(stub, name: str) -> None:
    sent = RAISED[name]
    with pytest.raises(SwitchboardError) as caught:
        await call(stub.GetSource(ingest_pb2.GetSourceRequest(tenant_id="t1", id=name), timeout=5))
    got = caught.value
    assert isinstance(sent, type(got))  # the class, or the platform class it derives from
    assert (got.code, got.message, got.field) == (sent.code, sent.message, sent.field)
    # What the edge answers with is what the owning service meant.
    assert error_parts(got) == error_parts(sent)


async def test_a_rate_limit_keeps_when_to_retry_and_its_headers(stub) -> None:
    with pytest.raises(RateLimited) as caught:
        await call(stub.GetSource(ingest_pb2.GetSourceRequest(tenant_id="t1", id="limited"), timeout=5))
    assert caught.value.retry_after_s == 2.5 and caught.value.headers == {"RateLimit-Limit": "10"}


async def test_a_status_without_our_details_is_known_by_its_code_only() -> None:
    """A channel failure (nobody listening) carries no details: its own text, which names internal
    addresses, is not passed on."""
    async with grpc.aio.insecure_channel("127.0.0.1:9") as channel:
        with pytest.raises(Unavailable) as caught:
            await call(ingest_pb2_grpc.IngestServiceStub(channel).GetSource(
                ingest_pb2.GetSourceRequest(tenant_id="t1", id="x"), timeout=2))
    assert caught.value.code == "unavailable" and "127.0.0.1" not in caught.value.message


def test_a_field_at_fault_is_named_in_the_rest_error_body() -> None:
    status, body, _ = error_parts(InvalidRequest("url must be https", field="url"))
    assert status == 400 and body == {"error": {"code": "invalid_request", "message": "url must be https",
                                                "field": "url"}}
