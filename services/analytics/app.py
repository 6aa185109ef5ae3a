"""The analytics service process: the ATTEMPTS consumer, the pruning job, the alert rules, the gRPC API."""

from __future__ import annotations

import functools

from services.analytics.alerts import AlertEvaluator, AlertPolicy
from services.analytics.consumer import AttemptIntake, read_report
from services.analytics.ledger import AttemptLedger
from services.analytics.retention import AnalyticsPruner, RetentionPolicy
from services.analytics.servicer import AnalyticsServicer
from services.analytics.stats import StatsReader
from switchboard.bus import Bus
from switchboard.messaging import CONSUMERS, consume
from switchboard.service import Runtime, ServiceApp
from switchboard.v1 import analytics_pb2_grpc as rpc

# Reports handled at once: two batches' worth, so one fills while the other is
# written (the consumer's max_ack_pending is 1,000).
CONCURRENCY = 1000
MAX_BATCH = 500
# How long a report waits for others to share its write. Reports are on nobody's path to a receiver, so
# a quarter of a second costs nothing visible, while at 100 events/s it makes one write of ~50 reports
# (one transaction, a few statements) instead of one per report.
BATCH_LINGER_S = 0.25


class AnalyticsApp(ServiceApp):
    name = "analytics"
    grpc_services = ["switchboard.v1.AnalyticsService"]

    def register(self, server, runtime: Runtime) -> None:
        rpc.add_AnalyticsServiceServicer_to_server(AnalyticsServicer(StatsReader(runtime.pool)), server)

    async def start(self, runtime: Runtime) -> None:
        intake = AttemptIntake(AttemptLedger(runtime.pool), max_batch=MAX_BATCH, max_wait_s=BATCH_LINGER_S)
        runtime.background(consume(
            runtime.nc, CONSUMERS["analytics"], intake.handle, read=read_report, concurrency=CONCURRENCY, batch=250,
            stopping=runtime.stopping,
        ), "attempts consumer")
        settings = runtime.settings
        analytics = settings.analytics
        pruner = AnalyticsPruner(runtime.pool, RetentionPolicy(analytics.retention_attempts_days,
                                                               analytics.retention_rollups_days))
        runtime.singleton("analytics.retention", functools.partial(pruner.run, settings.retention_prune_interval_s))
        alerts = AlertEvaluator(runtime.pool, AlertPolicy.from_settings(analytics),
                                # An alert is an event of the tenant, published to EVENTS as ingest does.
                                Bus(runtime.js, settings.publish_timeout_s).publish)
        runtime.singleton("analytics.alerts", functools.partial(alerts.run, analytics.alert_interval_s))
