"""IngestService over gRPC: a thin translation to and from :mod:`services.ingest.sources` and the intake."""

from __future__ import annotations

import json
from datetime import timedelta

from services.ingest.intake import WebhookIntake
from services.ingest.sources import Source, SourceStore, rate_limit
from switchboard.database import contains_nul
from switchboard.errors import InvalidRequest
from switchboard.protojson import from_message, struct
from switchboard.rpc import servicer, timestamp
from switchboard.v1 import ingest_pb2 as pb, ingest_pb2_grpc as rpc

# A rotated secret's default grace, as over REST.
DEFAULT_GRACE = timedelta(hours=24)


def source_message(s: Source) -> pb.Source:
    return pb.Source(
        id=s.id, tenant_id=s.tenant_id, name=s.name, type=s.type, config=struct(s.config),
        created_at=timestamp(s.created_at), allowed_ips=s.allowed_ips,
        rate_limit_per_second=s.rate_limit.rate_per_s if s.rate_limit else 0,
        rate_limit_burst=s.rate_limit.burst if s.rate_limit else 0,
        disabled_at=timestamp(s.disabled_at), previous_secret_expires_at=timestamp(s.previous_secret_expires_at),
    )


def _created(source: Source) -> pb.CreateSourceResponse:
    return pb.CreateSourceResponse(source=source_message(source), secret=source.secret)


@servicer
class IngestServicer(rpc.IngestServiceServicer):
    def __init__(self, sources: SourceStore, intake: WebhookIntake) -> None:
        self.sources = sources
        self.intake = intake

    async def PublishEvent(self, request, context):
        try:
            payload = json.loads(request.payload_json)
        except ValueError:
            raise InvalidRequest("payload_json is not valid JSON", field="payload_json") from None
        # PostgreSQL cannot store NUL: refuse it now, not after the event was accepted (as the REST reader does).
        raw = request.payload_json
        if "\x00" in request.type + request.idempotency_key or (
                ("\\u0000" in raw or "\x00" in raw) and contains_nul(payload)):
            raise InvalidRequest("the event holds NUL characters, which cannot be stored", field="payload_json")
        accepted = await self.intake.publish_api_event(request.tenant_id, request.actor or "grpc", request.type,
                                                       payload, request.idempotency_key or None)
        return pb.PublishEventResponse(event_id=accepted.event_id, duplicate=accepted.duplicate)

    async def CreateSource(self, request, context):
        source = await self.sources.create(
            request.tenant_id, request.name, request.type, from_message(request, "config") or {}, request.secret,
            list(request.allowed_ips), rate_limit(request.rate_limit_per_second, request.rate_limit_burst),
        )
        return _created(source)

    async def GetSource(self, request, context):
        return source_message(await self.sources.get(request.tenant_id, request.id))

    async def ListSources(self, request, context):
        return pb.ListSourcesResponse(sources=[source_message(s) for s in await self.sources.list(request.tenant_id)])

    async def UpdateSource(self, request, context):
        changes = {}
        if request.HasField("name"):
            changes["name"] = request.name
        if request.HasField("config"):
            changes["config"] = from_message(request, "config")
        if request.HasField("allowed_ips"):
            changes["allowed_ips"] = list(request.allowed_ips.cidrs)
        if request.HasField("rate_limit"):
            changes["rate_limit"] = rate_limit(request.rate_limit.per_second, request.rate_limit.burst)
        return source_message(await self.sources.update(request.tenant_id, request.id, changes))

    async def DeleteSource(self, request, context):
        await self.sources.delete(request.tenant_id, request.id)
        return pb.DeleteSourceResponse(id=request.id)

    async def SetSourceEnabled(self, request, context):
        return source_message(await self.sources.set_enabled(request.tenant_id, request.id, request.enabled))

    async def RotateSourceSecret(self, request, context):
        grace = timedelta(seconds=request.grace_seconds) if request.grace_seconds else DEFAULT_GRACE
        return _created(await self.sources.rotate_secret(request.tenant_id, request.id, grace, request.secret))
