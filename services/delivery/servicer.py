"""DeliveryService over gRPC: a thin translation to and from the delivery domain."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from nats.js import JetStreamContext

from plugins.destinations.spec import EndpointTarget
from plugins.manager import PluginRegistry, UnknownPlugin
from services.delivery.options import validate_options
from services.delivery.store import Delivery, DeliveryFilter, DeliveryStore, Endpoint
from switchboard.errors import InvalidRequest, Unavailable
from switchboard.events import DeliveryMessage
from switchboard.ids import new_id
from switchboard.netguard import DestinationRefused, ensure_public_destination
from switchboard.messaging import delivery_subject, encode
from switchboard.rpc import servicer, timestamp
from switchboard.signatures import generate_webhook_secret
from switchboard.v1 import delivery_pb2 as pb, delivery_pb2_grpc as rpc


def _endpoint(e: Endpoint) -> pb.Endpoint:
    return pb.Endpoint(
        id=e.id, tenant_id=e.tenant_id, url=e.url, description=e.description, destination=e.destination,
        created_at=timestamp(e.created_at), disabled_at=timestamp(e.disabled_at),
        disabled_reason=e.disabled_reason or "", options_json=json.dumps(e.config),
    )


def _time(value) -> datetime | None:
    return value.ToDatetime(tzinfo=timezone.utc) if value.seconds or value.nanos else None


def _delivery(d: Delivery) -> pb.Delivery:
    return pb.Delivery(
        id=d.id, tenant_id=d.tenant_id, event_id=d.event_id, endpoint_id=d.endpoint_id, status=d.status,
        created_at=timestamp(d.created_at), updated_at=timestamp(d.updated_at),
        attempts=[
            pb.Attempt(number=a.number, started_at=timestamp(a.started_at), outcome=a.outcome,
                       status_code=a.status_code or 0, latency_ms=a.latency_ms,
                       response_excerpt=a.response_excerpt, error=a.error or "",
                       response_headers=a.response_headers)
            for a in d.history
        ],
    )


@servicer
class DeliveryServicer(rpc.DeliveryServiceServicer):
    def __init__(self, store: DeliveryStore, registry: PluginRegistry, js: JetStreamContext,
                 publish_timeout_s: float, allow_private_destinations: bool) -> None:
        self.store = store
        self.registry = registry
        self.js = js
        self.publish_timeout_s = publish_timeout_s
        self.allow_private_destinations = allow_private_destinations

    async def CreateEndpoint(self, request, context):
        destination_name = request.destination or "webhook"
        try:
            destination = self.registry.destination(destination_name)
        except UnknownPlugin as exc:
            raise InvalidRequest(str(exc)) from None
        secret = request.secret or generate_webhook_secret()
        try:
            options = validate_options(json.loads(request.options_json or "{}"))
        except ValueError:
            raise InvalidRequest("options_json is not valid JSON") from None
        destination.validate(EndpointTarget(url=request.url, secret=secret, config=options))
        if destination_name == "webhook":
            # Refused now, and again at every send (DNS can change in between).
            try:
                await ensure_public_destination(request.url, self.allow_private_destinations)
            except DestinationRefused as exc:
                raise InvalidRequest(f"url refused: {exc}") from None
        endpoint = await self.store.create_endpoint(
            request.tenant_id, request.url, request.description, destination_name, secret, options
        )
        return pb.CreateEndpointResponse(endpoint=_endpoint(endpoint), secret=secret)

    async def GetEndpoint(self, request, context):
        return _endpoint(await self.store.get_endpoint(request.tenant_id, request.id))

    async def ListEndpoints(self, request, context):
        return pb.ListEndpointsResponse(endpoints=[_endpoint(e) for e in await self.store.list_endpoints(request.tenant_id)])

    async def ListDeliveries(self, request, context):
        deliveries, cursor = await self.store.list_deliveries(request.tenant_id, DeliveryFilter(
            event_id=request.event_id or None, endpoint_id=request.endpoint_id or None,
            status=request.status or None, since=_time(request.since), until=_time(request.until),
            cursor=request.cursor or None, limit=request.limit or 50,
        ))
        return pb.ListDeliveriesResponse(deliveries=[_delivery(d) for d in deliveries], next_cursor=cursor)

    async def GetDelivery(self, request, context):
        return _delivery(await self.store.get_delivery(request.tenant_id, request.id))

    async def RetryDelivery(self, request, context):
        await self._resend(request.tenant_id, request.id)
        return _delivery(await self.store.get_delivery(request.tenant_id, request.id))

    async def RetryFailedDeliveries(self, request, context):
        ids = await self.store.failed_ids(request.tenant_id, request.endpoint_id)
        for delivery_id in ids:
            await self._resend(request.tenant_id, delivery_id)
        return pb.RetryFailedDeliveriesResponse(retried=len(ids))

    async def TestEndpoint(self, request, context):
        endpoint = await self.store.get_endpoint(request.tenant_id, request.id)
        message = DeliveryMessage(
            event_id=new_id("evt"), tenant_id=endpoint.tenant_id, endpoint_id=endpoint.id, route_id="test",
            event_type="switchboard.test", source_id="test", received_at=time.time(),
            payload={"type": "switchboard.test", "message": "A test event from Switchboard."},
        )
        try:
            await self.js.publish(
                delivery_subject(endpoint.tenant_id, endpoint.id), encode(message.to_message()),
                timeout=self.publish_timeout_s, headers={"Nats-Msg-Id": message.delivery_id},
            )
        except Exception:
            raise Unavailable("could not queue the test event; try again") from None
        return pb.TestEndpointResponse(event_id=message.event_id, delivery_id=message.delivery_id)

    async def SetEndpointEnabled(self, request, context):
        reason = None if request.enabled else (request.reason or "disabled by an operator")
        return _endpoint(await self.store.set_endpoint_disabled(request.tenant_id, request.id, reason))

    async def _resend(self, tenant_id: str, delivery_id: str) -> None:
        """Pending again first, then queued: a worker never sees the message while it is still failed."""
        message = await self.store.restart(tenant_id, delivery_id)
        try:
            await self.js.publish(
                delivery_subject(tenant_id, message.endpoint_id), encode(message.to_message()),
                timeout=self.publish_timeout_s, headers={"Nats-Msg-Id": new_id("rty")},
            )
        except Exception:
            await self.store.mark_failed(tenant_id, delivery_id)
            raise Unavailable("could not queue the retry; it is still failed, try again") from None
