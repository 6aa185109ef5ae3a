"""DeliveryService over gRPC: a thin translation to and from the delivery domain."""

from __future__ import annotations

import base64
import time
from datetime import datetime, timedelta, UTC

import grpc

from services.delivery.endpoints import EndpointManager, masked_config
from services.delivery.delivery_log import Delivery, DeliveryFilter, DeliveryLog
from services.delivery.endpoint_store import Endpoint, EndpointStore
from switchboard.bodies import body_text
from switchboard.errors import Unavailable
from switchboard.events import DeliveryMessage
from switchboard.ids import new_id
from switchboard.bus import Bus
from switchboard.protojson import changed_fields, from_message, struct, to_message
from switchboard.rpc import servicer, timestamp
from switchboard.signatures import public_key_of, signature_scheme_of
from switchboard.v1 import delivery_pb2 as pb, delivery_pb2_grpc as rpc


def _endpoint(e: Endpoint) -> pb.Endpoint:
    return pb.Endpoint(
        id=e.id, tenant_id=e.tenant_id, url=e.url, description=e.description, destination=e.destination,
        created_at=timestamp(e.created_at), disabled_at=timestamp(e.disabled_at),
        disabled_reason=e.disabled_reason or "", options=to_message(e.options, pb.DeliveryOptions),
        config=struct(masked_config(e.config)), event_types=e.event_types,
        failover_endpoint_id=e.failover_endpoint_id or "", failing_since=timestamp(e.failing_since),
        previous_secret_expires_at=timestamp(
            e.previous_secret_expires_at if e.signing_secrets(datetime.now(UTC))[1] else None),
        updated_at=timestamp(e.updated_at), enabled=e.disabled_at is None,
        signature_scheme=signature_scheme_of(e.secret), public_key=_public_key(e.secret),
        application_id=e.application_id or "",
    )


def _public_key(secret: str) -> str:
    """A v1a endpoint's whpk_ public key; "" for v1 (and for a whsk_ key stored before keys were checked)."""
    if signature_scheme_of(secret) != "v1a":
        return ""
    try:
        return public_key_of(secret)
    except ValueError:
        return ""


def _created(e: Endpoint) -> pb.CreateEndpointResponse:
    """The endpoint with its whsec_ secret, shown once; a whsk_ private key never is (its public key is)."""
    shown = e.secret if signature_scheme_of(e.secret) == "v1" else ""
    return pb.CreateEndpointResponse(endpoint=_endpoint(e), secret=shown)


def _time(value) -> datetime | None:
    return value.ToDatetime(tzinfo=UTC) if value.seconds or value.nanos else None


def _request_body(body: bytes | None) -> dict[str, str]:
    """The body sent, as text, or in base64 when it is not text (a binary body)."""
    if body is None:
        return {}
    text = body_text(body)
    return {"request_body": text} if text is not None else {"request_body_base64": base64.b64encode(body).decode()}


def _delivery(d: Delivery) -> pb.Delivery:
    return pb.Delivery(
        id=d.id, tenant_id=d.tenant_id, event_id=d.event_id, endpoint_id=d.endpoint_id, status=d.status,
        created_at=timestamp(d.created_at), updated_at=timestamp(d.updated_at), event_type=d.event_type,
        request_content_type=d.request_content_type or "", **_request_body(d.request_body),
        attempts=[
            pb.Attempt(number=a.number, started_at=timestamp(a.started_at), outcome=a.outcome,
                       status_code=a.status_code or 0, latency_ms=round(a.latency_ms, 1),
                       response_excerpt=a.response_excerpt, error=a.error or "",
                       response_headers=a.response_headers, sent_to=a.sent_to or "")
            for a in d.history
        ],
    )


_UPDATABLE = ("url", "description", "config", "options", "event_types", "failover_endpoint_id", "enabled")
# How long a rotated secret keeps signing beside the new one when the caller does not say.
DEFAULT_GRACE_S = 24 * 3600


@servicer
class DeliveryServicer(rpc.DeliveryServiceServicer):
    def __init__(self, store: EndpointStore, endpoints: EndpointManager, log: DeliveryLog, bus: Bus) -> None:
        self.store = store
        # What changes an endpoint goes through the manager: it checks the endpoint as it would be.
        self.endpoints = endpoints
        self.log = log
        self.bus = bus

    async def CreateEndpoint(self, request, context):
        endpoint = await self.endpoints.create(
            request.tenant_id, request.url, request.description, request.destination, request.secret,
            from_message(request, "config") or {}, from_message(request, "options") or {},
            list(request.event_types), request.failover_endpoint_id, request.signature_scheme,
            request.application_id or None,
        )
        return _created(endpoint)

    async def GetEndpoint(self, request, context):
        return _endpoint(await self.store.get(request.tenant_id, request.id))

    async def UpdateEndpoint(self, request: pb.UpdateEndpointRequest, context: grpc.aio.ServicerContext) -> pb.Endpoint:
        changes: dict = {}
        for name in changed_fields(request, _UPDATABLE):
            if name in ("config", "options"):
                changes[name] = from_message(request, name) or {}
            elif name == "event_types":
                changes[name] = list(request.event_types)
            else:
                changes[name] = getattr(request, name)
        enabled = changes.pop("enabled", None)
        return _endpoint(await self.endpoints.update(request.tenant_id, request.id, changes, enabled))

    async def DeleteEndpoint(self, request, context):
        await self.store.delete(request.tenant_id, request.id)
        return pb.DeleteEndpointResponse(id=request.id, deleted=True)

    async def RotateEndpointSecret(self, request, context):
        endpoint = await self.endpoints.rotate_secret(
            request.tenant_id, request.id, request.secret,
            timedelta(seconds=request.grace_seconds if request.HasField("grace_seconds") else DEFAULT_GRACE_S),
            request.signature_scheme)
        return _created(endpoint)

    async def GetEndpointSecret(self, request, context):
        secret = (await self.store.get(request.tenant_id, request.id)).secret
        scheme = signature_scheme_of(secret)
        return pb.EndpointSecret(secret=secret if scheme == "v1" else "", public_key=_public_key(secret),
                                 signature_scheme=scheme)

    async def ListEndpoints(self, request, context):
        return pb.ListEndpointsResponse(endpoints=[
            _endpoint(e) for e in await self.store.for_tenant(request.tenant_id, request.application_id or None)])

    async def ListDeliveries(self, request, context):
        deliveries, cursor = await self.log.page(request.tenant_id, DeliveryFilter(
            event_id=request.event_id or None, endpoint_id=request.endpoint_id or None,
            status=request.status or None, since=_time(request.since), until=_time(request.until),
            cursor=request.cursor or None, limit=request.limit or 50,
        ))
        return pb.ListDeliveriesResponse(deliveries=[_delivery(d) for d in deliveries], next_cursor=cursor)

    async def GetDelivery(self, request, context):
        return _delivery(await self.log.get(request.tenant_id, request.id))

    async def RetryDelivery(self, request, context):
        await self._resend(request.tenant_id, request.id)
        return _delivery(await self.log.get(request.tenant_id, request.id))

    async def RetryFailedDeliveries(self, request, context):
        await self.store.get(request.tenant_id, request.endpoint_id)  # 404 for others' and unknown ids
        ids = await self.log.failed_ids(request.tenant_id, request.endpoint_id)
        for delivery_id in ids:
            await self._resend(request.tenant_id, delivery_id)
        return pb.RetryFailedDeliveriesResponse(retried=len(ids))

    async def TestEndpoint(self, request, context):
        endpoint = await self.store.get(request.tenant_id, request.id)
        message = DeliveryMessage(
            event_id=new_id("evt"), tenant_id=endpoint.tenant_id, endpoint_id=endpoint.id, route_id="test",
            event_type="switchboard.test", source_id="test", received_at=time.time(),
            payload={"type": "switchboard.test", "message": "A test event from Switchboard."},
        )
        # Followed at once (GET /v1/deliveries/{id}), so stored now, not when its first attempt is recorded.
        await self.log.add_pending(message)
        try:
            await self.bus.publish(message)
        except Exception:
            raise Unavailable("could not queue the test event; try again") from None
        return pb.TestEndpointResponse(event_id=message.event_id, delivery_id=message.delivery_id)

    async def DisableEndpoint(self, request, context):
        return _endpoint(await self.store.set_disabled(
            request.tenant_id, request.id, request.reason or "disabled by an operator"))

    async def EnableEndpoint(self, request, context):
        return _endpoint(await self.store.set_disabled(request.tenant_id, request.id, None))

    async def _resend(self, tenant_id: str, delivery_id: str) -> None:
        """Pending again first, then queued: a worker never sees the message while it is still failed."""
        message = await self.log.restart(tenant_id, delivery_id)
        try:
            await self.bus.publish(message)
        except Exception:
            await self.log.mark_failed(tenant_id, delivery_id)
            raise Unavailable("could not queue the retry; it is still failed, try again") from None
