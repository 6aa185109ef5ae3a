"""Chaos: the real platform under one fault each, steady traffic through it, a zero-loss ledger after.

Targets, every scenario: no accepted event lost; nothing delivered that was
never accepted (beyond what the sender could not know, "ambiguous"); every
webhook accepted in the end (the sender retries as a provider would); from the
edge no 5xx other than 503; duplicates only as repeats of one ``webhook-id``
and at most a bound; the dependency back, and a 202 and a delivery again,
within 15 s of it (``targets.py``).

``test_chaos_short_kill_delivery`` (500 events, kill -9 of the delivery
process) runs with the default test run; the rest only with
SWITCHBOARD_CHAOS=full, as ``make chaos`` sets.
"""

from __future__ import annotations

import os

import pytest

from tests.chaos.faults import FreezePostgres, KillNats, KillPostgres, KillService, NatsStoreFull, ReceiverOutage
from tests.chaos.scenario import ChaosRun, Outcome, Plan
from tests.chaos.targets import missed_targets

pytestmark = pytest.mark.chaos

full_suite = pytest.mark.skipif(os.environ.get("SWITCHBOARD_CHAOS") != "full",
                                reason="full chaos suite: run `make chaos`")

SERVICES = ("ingest", "router", "delivery", "ai", "auth", "analytics")
RATE = 50.0
# The NATS store-full scenario: JetStream's whole file store, and each stream's share of it (five streams
# reserve theirs up front, so the filler can take the rest).
MAX_FILE_STORE = 128 << 20
STREAM_MAX_BYTES = 8 << 20


def check(outcome: Outcome, *, expect_503: bool = False, in_flight_redelivered: bool = False) -> None:
    missed = missed_targets(outcome.report, expect_503=expect_503, in_flight_redelivered=in_flight_redelivered)
    assert not missed, "\n".join(["missed targets:", *missed, "", *outcome.report.lines(),
                                  "", "platform warnings and errors:", outcome.log])


def plan(name: str, seconds: float, fault_at_s: float = 5.0) -> Plan:
    return Plan(name, count=int(RATE * seconds), rate=RATE, fault_at_s=fault_at_s)


def test_chaos_short_kill_delivery(chaos_run: ChaosRun) -> None:
    """The short form in every test run: ~500 events, the delivery process killed mid-stream."""
    outcome = chaos_run(Plan("short-kill-delivery", count=500, rate=RATE, fault_at_s=4.0),
                        lambda platform, _: KillService(platform.state_dir, "delivery"))
    check(outcome, in_flight_redelivered=True)


@full_suite
@pytest.mark.parametrize("service", SERVICES)
def test_chaos_kill_service(chaos_run: ChaosRun, service: str) -> None:
    outcome = chaos_run(plan(f"kill-{service}", 25, fault_at_s=6.0),
                        lambda platform, _: KillService(platform.state_dir, service))
    check(outcome, in_flight_redelivered=service in ("router", "delivery"))


@full_suite
def test_chaos_kill_nats(chaos_run: ChaosRun) -> None:
    outcome = chaos_run(plan("kill-nats", 25, fault_at_s=6.0), lambda platform, _: KillNats(platform.state_dir))
    check(outcome)


@full_suite
def test_chaos_kill_postgres(chaos_run: ChaosRun) -> None:
    outcome = chaos_run(plan("kill-postgres", 25, fault_at_s=6.0),
                        lambda platform, _: KillPostgres(platform.state_dir))
    check(outcome)


@full_suite
def test_chaos_freeze_postgres(chaos_run: ChaosRun) -> None:
    outcome = chaos_run(plan("sigstop-postgres-20s", 40),
                        lambda platform, _: FreezePostgres(platform.state_dir, seconds=20.0))
    check(outcome)


@full_suite
def test_chaos_receiver_outage(chaos_run: ChaosRun) -> None:
    outcome = chaos_run(plan("receiver-5xx-30s", 50), lambda _, receiver: ReceiverOutage(receiver, seconds=30.0))
    check(outcome)


@full_suite
def test_chaos_nats_store_full(chaos_run: ChaosRun) -> None:
    """JetStream's store full: the edge answers 503 (not 500) meanwhile, and no accepted event is lost.

    Needs the platform to honour SWITCHBOARD_NATS_MAX_FILE_STORE (bytes): EmbeddedNats writes it as
    ``jetstream { max_file_store: N }``; the streams' own limits are set to fit in it.
    """
    outcome = chaos_run(plan("nats-store-full-15s", 40),
                        lambda platform, _: NatsStoreFull(platform.state_dir, MAX_FILE_STORE, seconds=15.0),
                        SWITCHBOARD_NATS_MAX_FILE_STORE=str(MAX_FILE_STORE),
                        SWITCHBOARD_STREAM_MAX_BYTES=str(STREAM_MAX_BYTES),
                        SWITCHBOARD_DEDUP_MAX_BYTES=str(STREAM_MAX_BYTES))
    check(outcome, expect_503=True)
