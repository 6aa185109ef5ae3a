"""The router's copy of the endpoints' event-type filters, read from a real DeliveryService (its
servicer over PostgreSQL, on a loopback port): cached for its TTL, shared by concurrent readers,
kept while DeliveryService is away, and an error when nothing is known yet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plugins.manager import load_registry
from services.delivery.endpoints import EndpointManager
from services.delivery.servicer import DeliveryServicer
from services.router.endpoint_types import GrpcEndpointTypes
from switchboard.bus import Bus
from switchboard.database import apply_migrations
from switchboard.errors import Unavailable
from switchboard.rpc import GrpcServer, ServiceClients
from switchboard.settings import Settings
from switchboard.v1 import delivery_pb2_grpc
from tests.credentials import SERVICE_TOKEN, service_only
from tests.services.delivery.stores import Stores, delivery_stores

MIGRATIONS = Path(__file__).parents[3] / "services/delivery/migrations"


class DeliveryService:
    """DeliveryService as its process serves it, counting the ListEndpoints calls it answers."""

    def __init__(self, stores: Stores, js) -> None:
        self.stores = stores
        self.manager = EndpointManager(stores.endpoints, load_registry(), True, ())
        self.servicer = DeliveryServicer(stores.endpoints, self.manager, stores.log, Bus(js, 5.0))
        self.lists = 0
        answer = self.servicer.ListEndpoints

        async def counted(request, context):
            self.lists += 1
            return await answer(request, context)

        self.servicer.ListEndpoints = counted  # type: ignore[method-assign]
        self.server = GrpcServer("delivery", ["switchboard.v1.DeliveryService"], service_only())
        delivery_pb2_grpc.add_DeliveryServiceServicer_to_server(self.servicer, self.server.server)

    async def endpoint(self, tenant_id: str, event_types: list[str]) -> str:
        created = await self.manager.create(tenant_id, "https://example.com/hook", "", "webhook", "", {}, {},
                                            event_types, None)
        return created.id


@pytest.fixture
async def delivery(pool, js) -> AsyncIterator[DeliveryService]:
    await apply_migrations(pool, "delivery", MIGRATIONS)
    service = DeliveryService(delivery_stores(pool, ttl_s=0.0), js)
    await service.server.start("127.0.0.1", 0)
    try:
        yield service
    finally:
        await service.server.stop(0)


@pytest.fixture
async def clients(delivery: DeliveryService) -> AsyncIterator[ServiceClients]:
    connected = ServiceClients(Settings(service_token=SERVICE_TOKEN, rpc_timeout_s=1.0,
                                        grpc_targets={"delivery": f"127.0.0.1:{delivery.server.port}"}))
    try:
        yield connected
    finally:
        await connected.close()


async def test_filters_are_read_once_per_ttl_and_a_change_shows_after_it(delivery, clients) -> None:
    orders = await delivery.endpoint("ten_types", ["order.*"])
    types = GrpcEndpointTypes(clients, ttl_s=0.3)
    results = await asyncio.gather(*(types.of("ten_types") for _ in range(20)))
    assert all(result == {orders: ("order.*",)} for result in results)
    assert delivery.lists == 1  # twenty readers at one moment: one call
    everything = await delivery.endpoint("ten_types", [])
    assert await types.of("ten_types") == {orders: ("order.*",)}  # within the TTL: as it was
    await asyncio.sleep(0.35)
    assert await types.of("ten_types") == {orders: ("order.*",), everything: ()}
    assert delivery.lists == 2


async def test_the_last_known_filters_serve_while_delivery_service_is_away(delivery, clients) -> None:
    orders = await delivery.endpoint("ten_away", ["order.*"])
    types = GrpcEndpointTypes(clients, ttl_s=0.05)
    assert await types.of("ten_away") == {orders: ("order.*",)}
    await delivery.server.stop(0)
    await asyncio.sleep(0.1)
    assert await types.of("ten_away") == {orders: ("order.*",)}
    # A tenant never read before has nothing to fall back on: the event waits for DeliveryService.
    with pytest.raises(Unavailable):
        await types.of("ten_never_read")
