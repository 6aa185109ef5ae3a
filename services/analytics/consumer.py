"""The ATTEMPTS consumer: reports (attempts, routing outcomes, delivery notices)
recorded in batches, acked after commit.

``switchboard.messaging.consume`` calls :meth:`AttemptIntake.handle` once per
message, many at once. Each call puts its report in a buffer and waits; the
buffer is written as one batch (one statement, see :mod:`ledger`) when it
holds ``max_batch`` reports or its oldest has waited ``max_wait_s``. Every
waiting call then returns the batch's decision: ack only once the rows are
committed, nak (redelivered later) if the batch failed. One batch is written
at a time per process; the next fills meanwhile.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from nats.aio.msg import Msg

from services.analytics.ledger import AttemptLedger, Report, check_report
from switchboard.database import describe_error
from switchboard.events import AttemptRecord, DeliveryNotice, RoutingOutcome
from switchboard.messaging import ACK, TERM, Decision, decode, retry_after, retry_in

__all__ = ["AttemptIntake"]

logger = logging.getLogger(__name__)

RETRY_DELAY_S = 2.0

# The report a subject carries: attempts.<tenant> an attempt, attempts.<tenant>.<kind> the others
# (switchboard/messaging.py).
_KINDS = {"routing": RoutingOutcome, "notice": DeliveryNotice}


def read_report(subject: str, data: dict) -> Report:
    """The report in a message on ``subject``; ValueError when there is none."""
    parts = subject.split(".")
    if len(parts) == 2:
        return AttemptRecord.from_message(data)
    kind = _KINDS.get(parts[-1]) if len(parts) == 3 else None
    if kind is None:
        raise ValueError(f"no report is sent on {subject}")
    return kind.from_message(data)


class AttemptIntake:
    def __init__(self, ledger: AttemptLedger, *, max_batch: int = 500, max_wait_s: float = 0.05) -> None:
        self.ledger = ledger
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._buffer: list[tuple[Report, asyncio.Future[Decision]]] = []
        self._full = asyncio.Event()
        self._writer: asyncio.Task | None = None

    async def handle(self, msg: Msg) -> Decision:
        try:
            report = read_report(msg.subject, decode(msg.data))
            check_report(report)
        except (ValueError, TypeError) as exc:
            logger.error("unreadable report dropped", extra={"error": str(exc), "subject": msg.subject})
            return TERM
        return await self.submit(report)

    async def submit(self, report: Report) -> Decision:
        """Queue one report; the decision once its batch is written (or not)."""
        done: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._buffer.append((report, done))
        if len(self._buffer) >= self.max_batch:
            self._full.set()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all(), name="analytics batch writer")
        return await done

    async def _write_all(self) -> None:
        batch: list[tuple[Report, asyncio.Future[Decision]]] = []
        try:
            while self._buffer:
                if len(self._buffer) < self.max_batch:
                    self._full.clear()
                    try:
                        await asyncio.wait_for(self._full.wait(), self.max_wait_s)
                    except asyncio.TimeoutError:
                        pass
                batch, self._buffer = self._buffer[:self.max_batch], self._buffer[self.max_batch:]
                await self._write(batch)
                batch = []
        finally:
            self._writer = None
            # Work is left only if the writer was cancelled: those messages come back later.
            left, self._buffer = [*batch, *self._buffer], []
            for _, done in left:
                if not done.done():
                    done.set_result(retry_in(RETRY_DELAY_S))

    async def _write(self, batch: list[tuple[Report, asyncio.Future[Decision]]]) -> None:
        decisions: list[Decision]
        try:
            await self.ledger.record_batch(a for a, _ in batch)
            decisions = [ACK] * len(batch)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            # Something in one report: write them one by one, so only that one waits.
            logger.warning("report batch refused; writing one by one", extra={"error": describe_error(exc)})
            decisions = [await self._write_one(report) for report, _ in batch]
        except Exception as exc:
            logger.warning("report batch not recorded; will retry", extra={"error": describe_error(exc),
                                                                            "reports": len(batch)})
            decisions = [retry_after(exc, RETRY_DELAY_S)] * len(batch)
        for (_, done), decision in zip(batch, decisions):
            if not done.done():
                done.set_result(decision)

    async def _write_one(self, report: Report) -> Decision:
        try:
            await self.ledger.record_batch([report])
        except Exception as exc:
            logger.warning("report not recorded; will retry",
                           extra={"error": describe_error(exc), "report": type(report).__name__})
            return retry_after(exc, RETRY_DELAY_S)
        return ACK
