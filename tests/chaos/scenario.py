"""One chaos scenario: a running platform, a slice to the receiver, steady sending, one fault, then the ledger.

Timeline: the sender starts; ``fault_at_s`` later the fault is injected (and
awaited: a 20 s freeze takes 20 s, a kill returns once the process is back or
its back-timeout passed); sending goes on to ``count`` events and retries
until each is accepted or ``give_up_s`` after the last was first sent; then the
receiver is watched until every accepted event was delivered or ``drain_s``
after sending ended. Every report is also kept in ``REPORTS`` for the
session's summary.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol
from collections.abc import Callable

from tests.chaos.faults import Fault
from tests.chaos.harness import ID_HEADER, ChaosReceiver, Sender, SentEvent
from tests.chaos.ledger import Report, build_report
from tests.e2e.slice import Slice, create_slice
from tests.platform_runner import Platform

__all__ = ["ChaosRun", "FaultFactory", "Outcome", "Plan", "REPORTS", "chaos_slice", "run_scenario"]

REPORTS: list[Report] = []

FaultFactory = Callable[[Platform, ChaosReceiver], Fault]


@dataclass(frozen=True)
class Plan:
    name: str
    count: int
    rate: float = 50.0
    fault_at_s: float = 5.0
    give_up_s: float = 30.0
    # A message a killed worker held comes back after the consumers' ack_wait (4 s now; this would
    # still see it come back after the 60 s it used to be, as in-flight latency rather than a loss).
    drain_s: float = 75.0


@dataclass(frozen=True)
class Outcome:
    report: Report
    # The platform's own account of the fault: its last warnings and errors.
    log: str


class ChaosRun(Protocol):
    """The ``chaos_run`` fixture: the platform started with ``env``, ``fault`` made for it, ``plan`` run."""

    def __call__(self, plan: Plan, fault: FaultFactory, **env: str) -> Outcome: ...


def chaos_slice(platform: Platform, receiver: ChaosReceiver) -> Slice:
    """A generic source whose retries dedupe (``id_header``), routed to the receiver."""
    with platform.client() as api:
        return create_slice(api, receiver.url, config={"event_type_field": "type", "id_header": ID_HEADER})


async def run_scenario(platform: Platform, receiver: ChaosReceiver, source: Slice, fault: Fault, plan: Plan,
                       sent: list[SentEvent] | None = None) -> Report:
    """The scenario's ledger; ``sent`` (when given) receives the sender's account of every webhook."""
    sender = Sender(platform.edge_url, source.source_id, source.source_secret, rate=plan.rate, count=plan.count,
                    give_up_s=plan.give_up_s)
    sending = asyncio.create_task(sender.run())
    try:
        await asyncio.sleep(plan.fault_at_s)
        timing = await fault.inject()
        await sending
    finally:
        sending.cancel()
    accepted_ids = {eid for e in sender.events for eid in e.event_ids}
    deadline = sender.finished_sending + plan.drain_s
    drained_at = None
    while True:
        delivered = {r.event_id for r in receiver.snapshot() if r.ok}
        if accepted_ids <= delivered:
            drained_at = time.monotonic()
            break
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # late copies (duplicates) still count
    if sent is not None:
        sent.extend(sender.events)
    report = build_report(plan.name, fault.label, plan.rate, sender.events, receiver.snapshot(), timing,
                          sender.finished_sending, drained_at)
    REPORTS.append(report)
    return report
