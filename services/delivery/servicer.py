"""DeliveryService over gRPC: a thin translation to and from the delivery domain."""

from __future__ import annotations

from plugins.destinations.spec import EndpointTarget
from plugins.manager import PluginRegistry, UnknownPlugin
from services.delivery.store import Delivery, DeliveryStore, Endpoint
from switchboard.errors import InvalidRequest
from switchboard.rpc import servicer, timestamp
from switchboard.signatures import generate_webhook_secret
from switchboard.v1 import delivery_pb2 as pb, delivery_pb2_grpc as rpc


def _endpoint(e: Endpoint) -> pb.Endpoint:
    return pb.Endpoint(
        id=e.id, tenant_id=e.tenant_id, url=e.url, description=e.description, destination=e.destination,
        created_at=timestamp(e.created_at),
    )


def _delivery(d: Delivery) -> pb.Delivery:
    return pb.Delivery(
        id=d.id, tenant_id=d.tenant_id, event_id=d.event_id, endpoint_id=d.endpoint_id, status=d.status,
        created_at=timestamp(d.created_at), updated_at=timestamp(d.updated_at),
        attempts=[
            pb.Attempt(number=a.number, started_at=timestamp(a.started_at), outcome=a.outcome,
                       status_code=a.status_code or 0, latency_ms=a.latency_ms,
                       response_excerpt=a.response_excerpt, error=a.error or "")
            for a in d.history
        ],
    )


@servicer
class DeliveryServicer(rpc.DeliveryServiceServicer):
    def __init__(self, store: DeliveryStore, registry: PluginRegistry) -> None:
        self.store = store
        self.registry = registry

    async def CreateEndpoint(self, request, context):
        destination_name = request.destination or "webhook"
        try:
            destination = self.registry.destination(destination_name)
        except UnknownPlugin as exc:
            raise InvalidRequest(str(exc)) from None
        secret = request.secret or generate_webhook_secret()
        destination.validate(EndpointTarget(url=request.url, secret=secret))
        endpoint = await self.store.create_endpoint(
            request.tenant_id, request.url, request.description, destination_name, secret
        )
        return pb.CreateEndpointResponse(endpoint=_endpoint(endpoint), secret=secret)

    async def GetEndpoint(self, request, context):
        return _endpoint(await self.store.get_endpoint(request.tenant_id, request.id))

    async def ListEndpoints(self, request, context):
        return pb.ListEndpointsResponse(endpoints=[_endpoint(e) for e in await self.store.list_endpoints(request.tenant_id)])

    async def ListDeliveries(self, request, context):
        deliveries = await self.store.list_for_event(request.tenant_id, request.event_id)
        return pb.ListDeliveriesResponse(deliveries=[_delivery(d) for d in deliveries])
