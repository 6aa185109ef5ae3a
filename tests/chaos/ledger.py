"""The zero-loss ledger: what the sender was told against what the receiver got, around one fault.

Definitions (times are seconds, relative to the fault's start unless said):

- accepted: webhooks answered 202 (their ``Switchboard-Event-Id``);
  gave up: never answered 202 though retried until the give-up time;
  refused: given up on a 4xx (a provider does not retry those);
- delivered: distinct event ids the receiver answered 2xx;
- lost: accepted and never delivered (target 0);
- duplicates: extra 2xx deliveries of one ``webhook-id``; foreign duplicates:
  one body id delivered under two event ids, or one event under two
  webhook-ids (target 0: a receiver could not de-duplicate those);
- delivered-never-accepted: delivered without any 202 for it (target 0),
  except "ambiguous": its sender saw a 5xx, a timeout or a dropped connection,
  any of which may hide a stored event; ambiguous-retried: those later
  answered 202 by a retry (the same event id, since retries dedupe);
- recovery: from the dependency being back to the first 202, and to the
  first delivery, after that;
- error window: first to last answer other than 202 (statuses and
  connection errors, counted in ``answers``);
- in-flight: events accepted before the fault and delivered only after it
  struck (or delivered before and again after: a send the killed worker had
  not recorded); the latest of them came ``in-flight max`` after it.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tests.chaos.faults import FaultTiming
from tests.chaos.harness import Receipt, SentEvent

__all__ = ["Report", "build_report"]


def _after(times: list[float], origin: float | None) -> float | None:
    if origin is None:
        return None
    later = [t for t in times if t >= origin]
    return min(later) - origin if later else None


def _fmt(value: float | None, unit: str = " s") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


@dataclass
class Report:
    scenario: str
    fault: str
    fault_detail: str
    rate: float
    sent: int
    accepted: int
    gave_up: int
    refused: int
    delivered: int
    lost: int
    duplicates: int
    max_copies: int
    foreign_duplicates: int
    delivered_never_accepted: int
    ambiguous_delivered: int
    ambiguous_retried: int
    id_mismatches: int
    answers: dict[str, int]
    receiver_refusals: int
    back_after_s: float | None
    fault_s: float
    error_window: tuple[float, float] | None
    recovery_202_s: float | None
    recovery_delivery_s: float | None
    in_flight: int
    in_flight_max_s: float | None
    latency_p50_s: float | None
    latency_p99_s: float | None
    latency_max_s: float | None
    drained_s: float | None
    lost_sample: list[str] = field(default_factory=list)

    @property
    def edge_5xx_not_503(self) -> dict[str, int]:
        return {k: v for k, v in self.answers.items() if k.isdigit() and int(k) >= 500 and k != "503"}

    def lines(self) -> list[str]:
        window = "none" if self.error_window is None else \
            f"{self.error_window[0]:+.2f} s .. {self.error_window[1]:+.2f} s"
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(self.answers.items())) or "-"
        return [
            f"== chaos {self.scenario}: {self.fault} ({self.sent} events at {self.rate:.0f}/s) ==",
            f"  accepted {self.accepted}/{self.sent} (gave up {self.gave_up}, refused {self.refused}), "
            f"delivered {self.delivered}, LOST {self.lost}"
            + (f" e.g. {', '.join(self.lost_sample)}" if self.lost_sample else ""),
            f"  duplicates {self.duplicates} (same webhook-id; at most {self.max_copies} copies), "
            f"foreign duplicates {self.foreign_duplicates}, delivered-never-accepted "
            f"{self.delivered_never_accepted} (ambiguous {self.ambiguous_delivered}; ambiguous-retried "
            f"{self.ambiguous_retried}), event-id mismatches {self.id_mismatches}",
            f"  edge answers: {answers}; receiver refusals {self.receiver_refusals}",
            f"  fault: {self.fault_detail or '-'}; lasted {self.fault_s:.2f} s, dependency back "
            f"{_fmt(self.back_after_s)} after its end; sender error window {window}",
            f"  recovery after back: first 202 {_fmt(self.recovery_202_s)}, first delivery "
            f"{_fmt(self.recovery_delivery_s)}; in-flight at the fault {self.in_flight}, "
            f"last delivered {_fmt(self.in_flight_max_s)} after it",
            f"  accept-to-delivery latency p50 {_fmt(self.latency_p50_s)}, p99 {_fmt(self.latency_p99_s)}, "
            f"max {_fmt(self.latency_max_s)}; all delivered {_fmt(self.drained_s)} after sending ended",
        ]

    def row(self) -> str:
        window = "-" if self.error_window is None else f"{self.error_window[1] - self.error_window[0]:.1f}"
        errors = ",".join(f"{k}:{v}" for k, v in sorted(self.answers.items()) if k != "202") or "-"
        return (f"{self.scenario:<22} {self.accepted:>5} {self.delivered:>5} {self.lost:>4} {self.duplicates:>4} "
                f"{self.delivered_never_accepted:>4} {self.ambiguous_delivered:>4} {window:>6} "
                f"{_fmt(self.recovery_202_s, ''):>7} {_fmt(self.recovery_delivery_s, ''):>7} "
                f"{_fmt(self.in_flight_max_s, ''):>7}  {errors}")

    @staticmethod
    def header() -> str:
        return (f"{'scenario':<22} {'acc':>5} {'deliv':>5} {'lost':>4} {'dup':>4} {'dna':>4} {'amb':>4} "
                f"{'errwin':>6} {'rec202':>7} {'recdlv':>7} {'inflt':>7}  non-202 answers")


def build_report(scenario: str, fault: str, rate: float, events: list[SentEvent], receipts: list[Receipt],
                 timing: FaultTiming, sending_ended: float, drained_at: float | None) -> Report:
    by_key = {e.key: e for e in events}
    accepted = {e.key: e for e in events if e.accepted_at is not None}
    accepted_ids = {eid for e in accepted.values() for eid in e.event_ids}
    refused = sum(1 for e in events if e.accepted_at is None and e.answers and e.answers[-1].status is not None
                  and 400 <= e.answers[-1].status < 500 and e.answers[-1].status != 429)

    delivered_receipts = [r for r in receipts if r.ok]
    first_delivery: dict[str, float] = {}
    copies: Counter[str] = Counter()
    ids_of_key: defaultdict[str, set[str]] = defaultdict(set)
    hooks_of_event: defaultdict[str, set[str]] = defaultdict(set)
    for r in delivered_receipts:
        first_delivery.setdefault(r.event_id, r.at)
        copies[r.webhook_id] += 1
        hooks_of_event[r.event_id].add(r.webhook_id)
        if r.key is not None:
            ids_of_key[r.key].add(r.event_id)
    delivered_ids = set(first_delivery)
    key_of_event = {r.event_id: r.key for r in delivered_receipts}

    never_accepted = delivered_ids - accepted_ids
    ambiguous = {eid for eid in never_accepted
                 if (sent := by_key.get(key_of_event.get(eid) or "")) is not None and sent.ambiguous}
    lost = sorted(accepted_ids - delivered_ids)

    answers: Counter[str] = Counter()
    problem_times: list[float] = []
    for e in events:
        for a in e.answers:
            answers[str(a.status) if a.status is not None else a.error or "error"] += 1
            if not a.accepted:
                problem_times.append(a.at)
    accepted_times = [a.at for e in events for a in e.answers if a.accepted]

    # In flight when the fault struck: accepted before it, and delivered (again, for a copy) only after it.
    deliveries_after: defaultdict[str, list[float]] = defaultdict(list)
    for r in delivered_receipts:
        if r.at >= timing.start:
            deliveries_after[r.event_id].append(r.at)
    in_flight_delivered: list[float] = []
    in_flight = 0
    for e in accepted.values():
        if e.accepted_at is None or e.accepted_at >= timing.start:
            continue
        before = any(first_delivery.get(eid, float("inf")) < timing.start for eid in e.event_ids)
        after = [t for eid in e.event_ids for t in deliveries_after.get(eid, [])]
        if not before or after:
            in_flight += 1
            if after:
                in_flight_delivered.append(min(after))
    latencies = sorted(min(first_delivery[eid] for eid in e.event_ids if eid in first_delivery) - e.accepted_at
                       for e in accepted.values() if e.accepted_at is not None and e.event_ids & delivered_ids)

    return Report(
        scenario=scenario, fault=fault, fault_detail=timing.detail, rate=rate, sent=len(events),
        accepted=len(accepted),
        gave_up=len(events) - len(accepted) - refused, refused=refused, delivered=len(delivered_ids),
        lost=len(lost), lost_sample=lost[:3],
        duplicates=sum(n - 1 for n in copies.values()), max_copies=max(copies.values(), default=0),
        foreign_duplicates=sum(len(ids) - 1 for ids in ids_of_key.values())
        + sum(len(hooks) - 1 for hooks in hooks_of_event.values()),
        delivered_never_accepted=len(never_accepted - ambiguous), ambiguous_delivered=len(ambiguous),
        ambiguous_retried=sum(1 for e in accepted.values() if e.ambiguous),
        id_mismatches=sum(1 for e in events if len(e.event_ids) > 1),
        answers=dict(answers), receiver_refusals=sum(1 for r in receipts if not r.ok),
        back_after_s=timing.back_after_s, fault_s=timing.end - timing.start,
        error_window=(min(problem_times) - timing.start, max(problem_times) - timing.start) if problem_times else None,
        recovery_202_s=_after(accepted_times, timing.back),
        recovery_delivery_s=_after([r.at for r in delivered_receipts], timing.back),
        in_flight=in_flight,
        in_flight_max_s=max(in_flight_delivered) - timing.start if in_flight_delivered else None,
        latency_p50_s=statistics.median(latencies) if latencies else None,
        latency_p99_s=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None,
        latency_max_s=latencies[-1] if latencies else None,
        drained_s=None if drained_at is None else max(0.0, drained_at - sending_ended),
    )
