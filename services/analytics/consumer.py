"""The ATTEMPTS consumer: reports (attempts, routing outcomes, delivery notices)
recorded in batches, acked after commit.

``switchboard.messaging.consume`` reads each message (:func:`read_report`) and
calls :meth:`AttemptIntake.handle`, many at once. Each call's report joins a
batch (switchboard/batching.py) written in one transaction (see :mod:`ledger`)
once it holds ``max_batch`` reports or has waited ``max_wait_s``. Every
waiting call then returns the batch's decision: ack only once the rows are
committed, nak (redelivered later) if the batch failed. One batch is written
at a time per process; the next fills meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg
from nats.aio.msg import Msg

from services.analytics.ledger import AttemptLedger, check_report
from switchboard.batching import Batcher
from switchboard.database import describe_error
from switchboard.events import AttemptRecord, DeliveryNotice, Report, RoutingOutcome
from switchboard.messaging import ACK, Decision, decode, retry_after

__all__ = ["AttemptIntake"]

logger = logging.getLogger(__name__)

RETRY_DELAY_S = 2.0

# The report a subject carries: attempts.<tenant> an attempt, attempts.<tenant>.<kind> the others
# (switchboard/messaging.py).
_KINDS: dict[str, type[RoutingOutcome] | type[DeliveryNotice]] = {"routing": RoutingOutcome, "notice": DeliveryNotice}


def read_report(msg: Msg) -> Report:
    """The report in a message, checked; ValueError (or TypeError) when there is none any batch could store."""
    parts = msg.subject.split(".")
    kind = AttemptRecord if len(parts) == 2 else _KINDS.get(parts[-1]) if len(parts) == 3 else None
    if kind is None:
        raise ValueError(f"no report is sent on {msg.subject}")
    report = kind.from_message(decode(msg.data))
    check_report(report)
    return report


class AttemptIntake:
    def __init__(self, ledger: AttemptLedger, *, max_batch: int = 500, max_wait_s: float = 0.05) -> None:
        self.ledger = ledger
        self._batches: Batcher[Report, Decision] = Batcher(self._write, max_batch=max_batch, max_concurrent=1,
                                                           linger_s=max_wait_s)

    async def handle(self, report: Report, msg: Msg) -> Decision:
        """One ATTEMPTS message, read by :func:`read_report`: the decision once its batch is written (or not)."""
        return await self.submit(report)

    async def submit(self, report: Report) -> Decision:
        return await self._batches.submit(report)

    async def _write(self, batch: Sequence[Report]) -> list[Decision]:
        try:
            await self.ledger.record_batch(batch)
            return [ACK] * len(batch)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            # Something in one report: write them one by one, so only that one waits.
            logger.warning("report batch refused; writing one by one", extra={"error": describe_error(exc)})
            return [await self._write_one(report) for report in batch]
        except Exception as exc:
            logger.warning("report batch not recorded; will retry", extra={"error": describe_error(exc),
                                                                            "reports": len(batch)})
            return [retry_after(exc, RETRY_DELAY_S)] * len(batch)

    async def _write_one(self, report: Report) -> Decision:
        try:
            await self.ledger.record_batch([report])
        except Exception as exc:
            logger.warning("report not recorded; will retry",
                           extra={"error": describe_error(exc), "report": type(report).__name__})
            return retry_after(exc, RETRY_DELAY_S)
        return ACK
