"""When to try a failed delivery again."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

# The longest wait a receiver's Retry-After can ask for, whatever the endpoint's max_delay_s.
from plugins.destinations.http_result import MAX_RETRY_AFTER_S

__all__ = ["RetryPolicy", "MAX_RETRY_AFTER_S"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped, for a bounded number of attempts.

    With the defaults (base 5 s, 8 attempts) retries come after about 5 s,
    10 s, 20 s, 40 s, 80 s, 160 s and 320 s: roughly ten minutes in all.
    """

    max_attempts: int = 8
    base_delay_s: float = 5.0
    max_delay_s: float = 3600.0
    jitter: float = 0.2
    multiplier: float = 2.0

    def over(self, schedule: Mapping[str, Any] | None) -> RetryPolicy:
        """This policy under an event type's retry schedule (``DeliveryMessage.retry``, stamped by the router
        with every value resolved): the schedule decides attempts and backoff; jitter stays the endpoint's."""
        if not schedule:
            return self
        return replace(self, max_attempts=int(schedule["max_attempts"]),
                       base_delay_s=float(schedule["initial_delay_seconds"]),
                       max_delay_s=float(schedule["max_delay_seconds"]), multiplier=float(schedule["multiplier"]))

    def should_retry(self, attempt: int, retryable: bool) -> bool:
        return retryable and attempt < self.max_attempts

    def next_delay(self, attempt: int, requested_s: float | None = None) -> float:
        """Delay before attempt ``attempt + 1``.

        A receiver's Retry-After (``requested_s``) wins if longer, even past ``max_delay_s`` (which caps
        only the backoff: the receiver knows when it will be back), but never past an hour.
        """
        delay = min(self.base_delay_s * self.multiplier ** (attempt - 1), self.max_delay_s)
        delay *= 1 + random.uniform(-self.jitter, self.jitter)
        if requested_s is not None:
            delay = max(delay, min(requested_s, MAX_RETRY_AFTER_S))
        return delay
