"""The chaos ledger's arithmetic on a hand-made history (no platform: it runs with every test run)."""

from __future__ import annotations

import pytest

from tests.chaos.faults import FaultTiming
from tests.chaos.harness import Answer, Receipt, SentEvent
from tests.chaos.ledger import build_report
from tests.chaos.targets import missed_targets

pytestmark = pytest.mark.chaos


def sent(key: str, *answers: Answer) -> SentEvent:
    return SentEvent(key, int(key[1:]), list(answers))


def ok(at: float, event_id: str) -> Answer:
    return Answer(at - 0.01, at, status=202, event_id=event_id)


def receipt(at: float, event_id: str, key: str, status: int = 200) -> Receipt:
    return Receipt(at, f"{event_id}:ep_1", event_id, key, status)


def test_the_ledger_counts_losses_duplicates_and_what_was_never_accepted() -> None:
    events = [
        sent("k1", ok(9.0, "e1")),  # in flight at the fault (10.0): refused once by the receiver, delivered at 12
        sent("k2", ok(10.5, "e2")),  # delivered twice under its webhook-id
        sent("k3", Answer(10.1, 10.2, status=503), ok(11.5, "e3")),  # accepted on retry, never delivered: lost
        sent("k4", Answer(10.1, 10.2, status=503)),  # gave up after a 503, yet delivered: ambiguous
        sent("k5", Answer(10.1, 10.2, error="ConnectError", reached=False)),  # never reached the edge, yet delivered
        sent("k6", Answer(10.1, 10.3, status=500)),
    ]
    receipts = [
        receipt(9.5, "e1", "k1", status=503),
        receipt(12.0, "e1", "k1"),
        receipt(11.1, "e2", "k2"),
        receipt(11.2, "e2", "k2"),
        receipt(11.3, "e4", "k4"),
        receipt(11.4, "e5", "k5"),
    ]

    report = build_report("unit", "kill -9 nothing", 50.0, events, receipts,
                          FaultTiming(10.0, 10.0, 11.0, "pid 1, back as pid 2"), sending_ended=11.0, drained_at=None)

    assert (report.sent, report.accepted, report.gave_up, report.refused) == (6, 3, 3, 0)
    assert report.delivered == 4 and report.lost == 1 and report.lost_sample == ["e3"]
    assert report.duplicates == 1 and report.max_copies == 2 and report.foreign_duplicates == 0
    assert report.delivered_never_accepted == 1 and report.ambiguous_delivered == 1 and report.ambiguous_retried == 1
    assert report.answers == {"202": 3, "503": 2, "ConnectError": 1, "500": 1}
    assert report.edge_5xx_not_503 == {"500": 1}
    assert report.receiver_refusals == 1
    assert report.error_window == pytest.approx((0.2, 0.3))
    assert report.recovery_202_s == pytest.approx(0.5)  # e3's 202 at 11.5
    assert report.recovery_delivery_s == pytest.approx(0.1)  # e2 at 11.1
    assert report.in_flight == 1 and report.in_flight_max_s == 2.0
    assert report.drained_s is None
    missed = "\n".join(missed_targets(report))
    for target in ("accepted events never delivered", "never accepted", "other than 503", "never accepted though"):
        assert target in missed


def test_one_webhook_under_two_event_ids_is_a_foreign_duplicate() -> None:
    events = [sent("k1", Answer(1.0, 1.1, error="ReadTimeout"), ok(2.0, "e1"))]
    receipts = [receipt(1.5, "e0", "k1"), receipt(2.5, "e1", "k1")]

    report = build_report("unit", "none", 50.0, events, receipts, FaultTiming(0.5, 0.5, 0.6), 2.0, 2.5)

    assert report.foreign_duplicates == 1 and report.duplicates == 0
    # e0 was delivered without a 202, but its sender timed out once: it may have been stored then.
    assert report.ambiguous_delivered == 1 and report.delivered_never_accepted == 0
    assert report.lost == 0 and report.drained_s == 0.5
