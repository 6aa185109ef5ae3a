"""Attempt records in, delivery statistics out: the domain of AnalyticsService."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from nats.aio.msg import Msg
from psycopg_pool import AsyncConnectionPool

from switchboard.database import describe_error
from switchboard.events import AttemptRecord
from switchboard.messaging import ACK, TERM, Decision, decode, retry_in

__all__ = ["DeliveryStats", "AttemptLedger"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryStats:
    attempts: int
    succeeded: int
    retrying: int
    failed: int
    latency_p50_ms: float
    latency_p99_ms: float

    @property
    def success_rate(self) -> float:
        settled = self.succeeded + self.failed
        return self.succeeded / settled if settled else 0.0


class AttemptLedger:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def record(self, attempt: AttemptRecord) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                """INSERT INTO analytics.attempts
                       (delivery_id, number, tenant_id, endpoint_id, event_type, outcome, status_code, latency_ms, at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                (attempt.delivery_id, attempt.number, attempt.tenant_id, attempt.endpoint_id, attempt.event_type,
                 attempt.outcome, attempt.status_code, attempt.latency_ms,
                 datetime.fromtimestamp(attempt.at, timezone.utc)),
            )

    async def handle(self, msg: Msg) -> Decision:
        try:
            attempt = AttemptRecord.from_message(decode(msg.data))
        except (ValueError, TypeError) as exc:
            logger.error("unreadable attempt record dropped", extra={"error": str(exc)})
            return TERM
        try:
            await self.record(attempt)
        except Exception as exc:
            logger.warning("attempt not recorded; will retry", extra={"error": describe_error(exc)})
            return retry_in(2.0)
        return ACK

    async def stats(self, tenant_id: str) -> DeliveryStats:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT count(*) AS attempts,
                          count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
                          count(*) FILTER (WHERE outcome = 'retrying') AS retrying,
                          count(*) FILTER (WHERE outcome = 'failed') AS failed,
                          coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), 0) AS p50,
                          coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms), 0) AS p99
                   FROM analytics.attempts WHERE tenant_id = %s""",
                (tenant_id,),
            )
            row = await cur.fetchone()
        return DeliveryStats(row["attempts"], row["succeeded"], row["retrying"], row["failed"], row["p50"], row["p99"])
