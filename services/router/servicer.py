"""RouterService over gRPC: a thin translation to and from :mod:`services.router.routing`."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from services.router.routing import EventStore, Route, RouteStore
from switchboard.rpc import ServiceClients, call, servicer, timestamp
from switchboard.v1 import delivery_pb2, delivery_pb2_grpc
from switchboard.v1 import router_pb2 as pb, router_pb2_grpc as rpc


def _route(r: Route) -> pb.Route:
    return pb.Route(
        id=r.id, tenant_id=r.tenant_id, name=r.name, source_id=r.source_id or "",
        event_types=r.event_types, endpoint_ids=r.endpoint_ids, enabled=r.enabled,
        created_at=timestamp(r.created_at),
    )


@servicer
class RouterServicer(rpc.RouterServiceServicer):
    def __init__(self, routes: RouteStore, events: EventStore, clients: ServiceClients) -> None:
        self.routes = routes
        self.events = events
        self.clients = clients

    async def CreateRoute(self, request, context):
        RouteStore.validate(request.name, list(request.event_types), list(request.endpoint_ids))
        # Every endpoint must exist and belong to the tenant (NOT_FOUND otherwise).
        delivery = self.clients.stub("delivery", delivery_pb2_grpc.DeliveryServiceStub)
        for endpoint_id in dict.fromkeys(request.endpoint_ids):
            await call(delivery.GetEndpoint(
                delivery_pb2.GetEndpointRequest(tenant_id=request.tenant_id, id=endpoint_id),
                timeout=self.clients.timeout,
            ))
        route = await self.routes.create(
            request.tenant_id, request.name, request.source_id, list(request.event_types),
            list(request.endpoint_ids),
        )
        return _route(route)

    async def ListRoutes(self, request, context):
        return pb.ListRoutesResponse(routes=[_route(r) for r in await self.routes.list(request.tenant_id)])

    async def GetEvent(self, request, context):
        stored = await self.events.get(request.tenant_id, request.id)
        e = stored.event
        return pb.Event(
            id=e.id, tenant_id=e.tenant_id, source_id=e.source_id, type=e.type,
            provider_event_id=e.provider_event_id or "",
            received_at=timestamp(datetime.fromtimestamp(e.received_at, timezone.utc)),
            headers_json=json.dumps(e.headers), payload_json=json.dumps(e.payload),
            occurred_at=timestamp(datetime.fromtimestamp(e.occurred_at, timezone.utc)) if e.occurred_at else None,
            conversation_key=e.conversation_key or "",
        )
