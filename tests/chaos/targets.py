"""The chaos suite's targets, checked against every scenario's ledger."""

from __future__ import annotations

from tests.chaos.ledger import Report

__all__ = ["DUPLICATE_BOUND", "RECOVERY_S", "IN_FLIGHT_S", "missed_targets"]

RECOVERY_S = 15.0
# A killed consumer's in-flight messages are redelivered within 5 s (a 4 s ack wait); the
# figure measured is to their delivery, so it includes the send itself.
IN_FLIGHT_S = 5.5
# Sends a killed delivery process had made but not yet recorded are made again: at most an endpoint's
# share of a process (SWITCHBOARD_ENDPOINT_MAX_IN_FLIGHT, 16) plus a margin for one group commit.
DUPLICATE_BOUND = 20


def missed_targets(report: Report, *, expect_503: bool = False, in_flight_redelivered: bool = False) -> list[str]:
    """What ``report`` misses; ``in_flight_redelivered`` for a killed consumer (its in-flight messages)."""
    missed = []
    if in_flight_redelivered and report.in_flight_max_s is not None:
        # With one process of the service (as `switchboard up` runs it) the redelivered messages wait
        # for its replacement: a slow restart (a busy machine) is allowed, a wait beyond it is not.
        restarted = (report.back_after_s or 0.0) + (report.recovery_delivery_s or 0.0) + 1.0
        bound = max(IN_FLIGHT_S, restarted)
        if report.in_flight_max_s > bound:
            missed.append(f"in-flight events delivered {report.in_flight_max_s:.1f} s after the fault "
                          f"(target {IN_FLIGHT_S} s, or 1 s after the restarted consumer's first delivery)")
    if report.lost:
        missed.append(f"{report.lost} accepted events never delivered, e.g. {report.lost_sample}")
    if report.delivered_never_accepted:
        missed.append(f"{report.delivered_never_accepted} events delivered that were never accepted")
    if report.foreign_duplicates or report.id_mismatches:
        missed.append(f"{report.foreign_duplicates} duplicates under another id, {report.id_mismatches} webhooks "
                      "accepted under two event ids")
    if report.duplicates > DUPLICATE_BOUND:
        missed.append(f"{report.duplicates} duplicate deliveries (bound {DUPLICATE_BOUND})")
    if report.edge_5xx_not_503:
        missed.append(f"the edge answered 5xx other than 503: {report.edge_5xx_not_503}")
    if report.gave_up or report.refused:
        missed.append(f"{report.gave_up} webhooks never accepted though retried, {report.refused} refused with a 4xx")
    if expect_503 and not report.answers.get("503"):
        missed.append("the edge never answered 503 while the fault lasted")
    if report.back_after_s is None:
        missed.append("the dependency was not back within 30 s")
    else:
        for what, seconds in (("202", report.recovery_202_s), ("delivery", report.recovery_delivery_s)):
            if seconds is None or seconds > RECOVERY_S:
                missed.append(f"first {what} after the dependency was back: "
                              f"{'never' if seconds is None else f'{seconds:.1f} s'} (target {RECOVERY_S:.0f} s)")
    return missed
