"""IngestService over gRPC: a thin translation to and from :mod:`services.ingest.sources` and the intake."""

from __future__ import annotations

import json
from datetime import timedelta

from services.ingest.intake import WebhookIntake
from services.ingest.sources import Source, SourceStore, rate_limit
from switchboard.database import contains_nul
from switchboard.errors import InvalidRequest
from switchboard.protojson import changed_fields, from_message, struct
from switchboard.ratelimit import RateLimit
from switchboard.rpc import forwarded_url, servicer, timestamp
from switchboard.v1 import ingest_pb2 as pb, ingest_pb2_grpc as rpc

# A rotated secret's default grace, as over REST.
DEFAULT_GRACE = timedelta(hours=24)


def source_message(s: Source, base_url: str = "") -> pb.Source:
    """``base_url``: where senders reach the edge (the ingest URL is ``<base_url>/in/<id>``)."""
    return pb.Source(
        id=s.id, tenant_id=s.tenant_id, name=s.name, type=s.type, config=struct(s.config),
        created_at=timestamp(s.created_at), allowed_ips=s.allowed_ips,
        rate_limit=pb.SourceRateLimit(per_second=s.rate_limit.rate_per_s, burst=s.rate_limit.burst)
        if s.rate_limit else None,
        disabled_at=timestamp(s.disabled_at), previous_secret_expires_at=timestamp(s.previous_secret_expires_at),
        ingest_url=f"{base_url}/in/{s.id}" if base_url else "",
    )


def _given_limit(request) -> RateLimit | None:
    return rate_limit(request.rate_limit.per_second, request.rate_limit.burst) if request.HasField(
        "rate_limit") else None


_UPDATABLE = ("name", "config", "allowed_ips", "rate_limit")


@servicer
class IngestServicer(rpc.IngestServiceServicer):
    def __init__(self, sources: SourceStore, intake: WebhookIntake, public_url: str = "") -> None:
        """``public_url``: where senders reach the edge (SWITCHBOARD_PUBLIC_URL); when unset, the address a
        REST caller used, or ``edge_url``, the edge's own (set once it listens)."""
        self.sources = sources
        self.intake = intake
        self.public_url = public_url.rstrip("/")
        self.edge_url = ""

    def _source(self, source: Source, context) -> pb.Source:
        return source_message(source, self.public_url or forwarded_url(context) or self.edge_url)

    def _created(self, source: Source, context) -> pb.CreateSourceResponse:
        return pb.CreateSourceResponse(source=self._source(source, context), secret=source.secret)

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
            list(request.allowed_ips), _given_limit(request),
        )
        return self._created(source, context)

    async def GetSource(self, request, context):
        return self._source(await self.sources.get(request.tenant_id, request.id), context)

    async def ListSources(self, request, context):
        return pb.ListSourcesResponse(sources=[self._source(s, context) for s in await self.sources.list(
            request.tenant_id)])

    async def UpdateSource(self, request, context):
        changes = {}
        for name in changed_fields(request, _UPDATABLE):
            if name == "config":
                changes[name] = from_message(request, name) or {}
            elif name == "allowed_ips":
                changes[name] = list(request.allowed_ips)
            elif name == "rate_limit":
                changes[name] = _given_limit(request)
            else:
                changes[name] = request.name
        return self._source(await self.sources.update(request.tenant_id, request.id, changes), context)

    async def DeleteSource(self, request, context):
        await self.sources.delete(request.tenant_id, request.id)
        return pb.DeleteSourceResponse(id=request.id, deleted=True)

    async def DisableSource(self, request, context):
        return self._source(await self.sources.set_enabled(request.tenant_id, request.id, False), context)

    async def EnableSource(self, request, context):
        return self._source(await self.sources.set_enabled(request.tenant_id, request.id, True), context)

    async def RotateSourceSecret(self, request, context):
        grace = timedelta(seconds=request.grace_seconds) if request.HasField("grace_seconds") else DEFAULT_GRACE
        return self._created(await self.sources.rotate_secret(request.tenant_id, request.id, grace, request.secret),
                             context)
