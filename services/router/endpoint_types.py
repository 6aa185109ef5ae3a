"""The tenant's endpoints' event-type filters, as DeliveryService keeps them
(:class:`services.router.dispatch.EndpointTypes`).

Read for every routed event, changed rarely: each tenant's are cached for a
second, as its routes are (services/router/route_store.py), so a change
shows within that in every router process. They are loaded once however many
events ask at the same moment, and the last known are kept while DeliveryService
cannot be reached (routing never stops for it); with none known yet, routing
the event waits: the error reaches the consumer, which tries the event again
later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

from switchboard.errors import Unavailable
from switchboard.rpc import ServiceClients, call
from switchboard.v1 import delivery_pb2, delivery_pb2_grpc

__all__ = ["GrpcEndpointTypes"]

logger = logging.getLogger(__name__)

# Tenants whose filters are remembered; past this the cache starts again.
MAX_TENANTS = 10_000


class GrpcEndpointTypes:
    def __init__(self, clients: ServiceClients, ttl_s: float = 1.0) -> None:
        self.clients = clients
        self.ttl_s = ttl_s
        # Tenant -> (fresh until (monotonic), endpoint id -> patterns).
        self._cache: dict[str, tuple[float, dict[str, tuple[str, ...]]]] = {}
        self._loading: dict[str, asyncio.Future[dict[str, tuple[str, ...]]]] = {}

    async def of(self, tenant_id: str) -> Mapping[str, Sequence[str]]:
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        loading = self._loading.get(tenant_id)
        if loading is None:
            loading = self._loading[tenant_id] = asyncio.ensure_future(self._load(tenant_id))
            loading.add_done_callback(lambda _: self._loading.pop(tenant_id, None))
        try:
            return await asyncio.shield(loading)
        except Unavailable:
            if cached is None:
                raise
            logger.warning("endpoint filters not refreshed; using the last known", extra={"tenant_id": tenant_id})
            return cached[1]

    async def _load(self, tenant_id: str) -> dict[str, tuple[str, ...]]:
        reply = await call(self.clients.stub("delivery", delivery_pb2_grpc.DeliveryServiceStub).ListEndpoints(
            delivery_pb2.ListEndpointsRequest(tenant_id=tenant_id), timeout=self.clients.timeout))
        types = {e.id: tuple(e.event_types) for e in reply.endpoints}
        if len(self._cache) >= MAX_TENANTS:
            self._cache.clear()
        self._cache[tenant_id] = (time.monotonic() + self.ttl_s, types)
        return types
