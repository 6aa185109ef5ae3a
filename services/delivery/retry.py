"""When to try a failed delivery again."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


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

    def should_retry(self, attempt: int, retryable: bool) -> bool:
        return retryable and attempt < self.max_attempts

    def next_delay(self, attempt: int, requested_s: float | None = None) -> float:
        """Delay before attempt ``attempt + 1``; a receiver's Retry-After wins if longer."""
        delay = min(self.base_delay_s * self.multiplier ** (attempt - 1), self.max_delay_s)
        delay *= 1 + random.uniform(-self.jitter, self.jitter)
        if requested_s is not None:
            delay = max(delay, min(requested_s, self.max_delay_s))
        return delay
