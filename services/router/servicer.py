"""RouterService over gRPC: a thin translation to and from :mod:`services.router.routing`."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from services.router.replay import Replay, ReplayRequest, ReplayStore
from services.router.routing import EventStore, Route, RouteStore
from switchboard.errors import InvalidRequest
from switchboard.rpc import ServiceClients, call, servicer, timestamp
from switchboard.v1 import delivery_pb2, delivery_pb2_grpc
from switchboard.v1 import router_pb2 as pb, router_pb2_grpc as rpc


def _route(r: Route) -> pb.Route:
    return pb.Route(
        id=r.id, tenant_id=r.tenant_id, name=r.name, source_id=r.source_id or "",
        event_types=r.event_types, endpoint_ids=r.endpoint_ids, enabled=r.enabled,
        created_at=timestamp(r.created_at),
    )


def _replay(r: Replay) -> pb.Replay:
    return pb.Replay(
        id=r.id, tenant_id=r.tenant_id, since=timestamp(r.since), until=timestamp(r.until),
        source_id=r.source_id or "", event_types=r.event_types, endpoint_id=r.endpoint_id or "", status=r.status,
        total=r.total, done=r.done, deliveries=r.deliveries, error=r.error or "",
        created_at=timestamp(r.created_at), updated_at=timestamp(r.updated_at), finished_at=timestamp(r.finished_at),
    )


def _time(value, name: str) -> datetime:
    if not (value.seconds or value.nanos):
        raise InvalidRequest(f"{name} is required")
    return value.ToDatetime(tzinfo=timezone.utc)


@servicer
class RouterServicer(rpc.RouterServiceServicer):
    def __init__(self, routes: RouteStore, events: EventStore, replays: ReplayStore, clients: ServiceClients) -> None:
        self.routes = routes
        self.events = events
        self.replays = replays
        self.clients = clients

    async def _require_endpoints(self, tenant_id: str, endpoint_ids) -> None:
        """Every endpoint must exist and belong to the tenant (NOT_FOUND otherwise)."""
        delivery = self.clients.stub("delivery", delivery_pb2_grpc.DeliveryServiceStub)
        for endpoint_id in dict.fromkeys(endpoint_ids):
            await call(delivery.GetEndpoint(
                delivery_pb2.GetEndpointRequest(tenant_id=tenant_id, id=endpoint_id),
                timeout=self.clients.timeout,
            ))

    async def CreateRoute(self, request, context):
        RouteStore.validate(request.name, list(request.event_types), list(request.endpoint_ids))
        await self._require_endpoints(request.tenant_id, request.endpoint_ids)
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

    async def CreateReplay(self, request, context):
        if request.endpoint_id:
            await self._require_endpoints(request.tenant_id, [request.endpoint_id])
        replay = await self.replays.create(request.tenant_id, ReplayRequest(
            since=_time(request.since, "since"), until=_time(request.until, "until"),
            source_id=request.source_id or None, event_types=tuple(request.event_types),
            endpoint_id=request.endpoint_id or None,
        ))
        return _replay(replay)

    async def GetReplay(self, request, context):
        return _replay(await self.replays.get(request.tenant_id, request.id))

    async def ListReplays(self, request, context):
        replays = await self.replays.list(request.tenant_id, request.limit or 50)
        return pb.ListReplaysResponse(replays=[_replay(r) for r in replays])

    async def CancelReplay(self, request, context):
        return _replay(await self.replays.cancel(request.tenant_id, request.id))
