"""The analytics service process."""

from __future__ import annotations

from services.analytics.servicer import AnalyticsServicer
from services.analytics.stats import AttemptLedger
from switchboard.messaging import CONSUMERS, consume
from switchboard.service import Runtime, ServiceApp
from switchboard.v1 import analytics_pb2_grpc as rpc


class AnalyticsApp(ServiceApp):
    name = "analytics"
    grpc_services = ["switchboard.v1.AnalyticsService"]

    def register(self, server, runtime: Runtime) -> None:
        self.ledger = AttemptLedger(runtime.pool)
        rpc.add_AnalyticsServiceServicer_to_server(AnalyticsServicer(self.ledger), server)

    async def start(self, runtime: Runtime) -> None:
        runtime.background(consume(
            runtime.js, CONSUMERS["analytics"], self.ledger.handle, concurrency=16, stopping=runtime.stopping,
        ), "attempts consumer")
