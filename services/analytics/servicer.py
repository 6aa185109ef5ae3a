"""AnalyticsService over gRPC: a thin translation to and from :mod:`services.analytics.stats`."""

from __future__ import annotations

from services.analytics.stats import AttemptLedger
from switchboard.rpc import servicer
from switchboard.v1 import analytics_pb2 as pb, analytics_pb2_grpc as rpc


@servicer
class AnalyticsServicer(rpc.AnalyticsServiceServicer):
    def __init__(self, ledger: AttemptLedger) -> None:
        self.ledger = ledger

    async def GetDeliveryStats(self, request, context):
        s = await self.ledger.stats(request.tenant_id)
        return pb.DeliveryStats(
            attempts=s.attempts, succeeded=s.succeeded, retrying=s.retrying, failed=s.failed,
            success_rate=s.success_rate, latency_p50_ms=s.latency_p50_ms, latency_p99_ms=s.latency_p99_ms,
        )
