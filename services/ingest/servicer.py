"""IngestService over gRPC: a thin translation to and from :mod:`services.ingest.sources`."""

from __future__ import annotations

import json

from services.ingest.sources import Source, SourceStore, rate_limit
from switchboard.errors import InvalidRequest
from switchboard.rpc import servicer, timestamp
from switchboard.v1 import ingest_pb2 as pb, ingest_pb2_grpc as rpc


def source_message(s: Source) -> pb.Source:
    return pb.Source(
        id=s.id, tenant_id=s.tenant_id, name=s.name, type=s.type, config_json=json.dumps(s.config),
        created_at=timestamp(s.created_at), allowed_ips=s.allowed_ips,
        rate_limit_per_second=s.rate_limit.rate_per_s if s.rate_limit else 0,
        rate_limit_burst=s.rate_limit.burst if s.rate_limit else 0,
    )


@servicer
class IngestServicer(rpc.IngestServiceServicer):
    def __init__(self, sources: SourceStore) -> None:
        self.sources = sources

    async def CreateSource(self, request, context):
        try:
            config = json.loads(request.config_json or "{}")
        except ValueError:
            raise InvalidRequest("config_json is not valid JSON") from None
        source = await self.sources.create(
            request.tenant_id, request.name, request.type, config, request.secret, list(request.allowed_ips),
            rate_limit(request.rate_limit_per_second, request.rate_limit_burst),
        )
        return pb.CreateSourceResponse(source=source_message(source), secret=source.secret)

    async def GetSource(self, request, context):
        return source_message(await self.sources.get(request.tenant_id, request.id))

    async def ListSources(self, request, context):
        return pb.ListSourcesResponse(sources=[source_message(s) for s in await self.sources.list(request.tenant_id)])
