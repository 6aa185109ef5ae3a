"""What one attempt's result means for its delivery: done, try again later, or dead.

Pure: no clock, no I/O; the worker applies the verdict (services/delivery/worker.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from plugins.destinations.spec import SendResult
from services.delivery.retry import RetryPolicy

__all__ = ["Succeeded", "Retry", "Dead", "Verdict", "settle"]


@dataclass(frozen=True)
class Succeeded:
    outcome: ClassVar[str] = "succeeded"


@dataclass(frozen=True)
class Retry:
    """Attempt again after ``delay_s``; the delivery stays pending."""

    delay_s: float
    outcome: ClassVar[str] = "retrying"


@dataclass(frozen=True)
class Dead:
    """No more attempts: the delivery fails and goes to the dead-letter stream."""

    reason: str
    outcome: ClassVar[str] = "failed"


Verdict = Succeeded | Retry | Dead


def settle(result: SendResult, attempt: int, policy: RetryPolicy) -> Verdict:
    """The verdict on ``result``, the ``attempt``-th of the delivery's current cycle (a manual retry
    starts a new cycle with the policy's whole budget)."""
    if result.ok:
        return Succeeded()
    if policy.should_retry(attempt, result.retryable):
        return Retry(policy.next_delay(attempt, result.retry_after_s))
    if not result.retryable:
        return Dead(result.error or f"refused by the receiver (HTTP {result.status_code})")
    return Dead(f"gave up after {attempt} attempts: {result.error or f'HTTP {result.status_code}'}")
