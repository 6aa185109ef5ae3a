"""The analytics service process: the ATTEMPTS consumer, the pruning job, the gRPC API."""

from __future__ import annotations

from services.analytics.consumer import AttemptIntake
from services.analytics.ledger import AttemptLedger
from services.analytics.retention import Pruner, RetentionPolicy
from services.analytics.servicer import AnalyticsServicer
from services.analytics.stats import StatsReader
from switchboard.messaging import CONSUMERS, consume
from switchboard.service import Runtime, ServiceApp
from switchboard.v1 import analytics_pb2_grpc as rpc

# Reports handled at once: two batches' worth, so one fills while the other is
# written (the consumer's max_ack_pending is 1,000).
CONCURRENCY = 1000
MAX_BATCH = 500


class AnalyticsApp(ServiceApp):
    name = "analytics"
    grpc_services = ["switchboard.v1.AnalyticsService"]

    def register(self, server, runtime: Runtime) -> None:
        rpc.add_AnalyticsServiceServicer_to_server(AnalyticsServicer(StatsReader(runtime.pool)), server)

    async def start(self, runtime: Runtime) -> None:
        intake = AttemptIntake(AttemptLedger(runtime.pool), max_batch=MAX_BATCH)
        runtime.background(consume(
            runtime.js, CONSUMERS["analytics"], intake.handle, concurrency=CONCURRENCY, batch=250,
            stopping=runtime.stopping,
        ), "attempts consumer")
        settings = runtime.settings
        pruner = Pruner(runtime.pool, RetentionPolicy(settings.retention_attempts_days,
                                                      settings.retention_rollups_days))
        runtime.background(pruner.run(settings.retention_prune_interval_s, runtime.stopping), "retention pruning")
