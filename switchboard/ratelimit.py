"""Token buckets: a steady rate with room for a burst.

Each bucket holds up to ``burst`` tokens and refills at ``rate`` per second; a
request (or a delivery) takes one. These buckets live in the process that
applies them (an AI provider's budget share, a fallback while NATS is away);
the limits that must hold across replicas lease from shared ones
(switchboard/shared_buckets.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["RateLimit", "Verdict", "TokenBuckets"]


@dataclass(frozen=True)
class RateLimit:
    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")

    @classmethod
    def of(cls, per_second: float, burst: int | None = None) -> RateLimit:
        """From API input: the burst defaults to one second's worth (at least 1)."""
        return cls(float(per_second), int(burst or max(1, int(per_second))))


class Verdict(NamedTuple):
    """A tuple rather than a frozen dataclass: one is made per request and per delivery."""

    allowed: bool
    limit: int
    remaining: int
    # Seconds until the bucket is full again (RateLimit-Reset).
    reset_s: float
    # Seconds until one token is available (Retry-After when refused).
    retry_after_s: float

    def headers(self) -> dict[str, str]:
        """The ``RateLimit-*`` fields (IETF draft) and their ``X-RateLimit-*`` forebears."""
        values = {"Limit": str(self.limit), "Remaining": str(self.remaining),
                  "Reset": str(math.ceil(self.reset_s))}
        return {**{f"RateLimit-{k}": v for k, v in values.items()},
                **{f"X-RateLimit-{k}": v for k, v in values.items()}}


class TokenBuckets:
    """One bucket per key (an API key id, a source id)."""

    def __init__(self, max_keys: int = 100_000, clock=time.monotonic) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)

    def take(self, key: str, limit: RateLimit, cost: float = 1.0) -> Verdict:
        """Take ``cost`` tokens (one request; or, for a tokens-per-minute limit, its tokens)."""
        now = self.clock()
        tokens, updated = self._buckets.get(key, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - updated) * limit.rate_per_s)
        # A cost above the burst could never be met: it takes a full bucket instead.
        cost = min(cost, float(limit.burst))
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            # Full buckets are the default state: forgetting them loses nothing.
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < limit.burst}
        self._buckets[key] = (tokens, now)
        return Verdict(
            allowed=allowed,
            limit=limit.burst,
            remaining=int(tokens),
            reset_s=(limit.burst - tokens) / limit.rate_per_s,
            retry_after_s=0.0 if allowed else (cost - tokens) / limit.rate_per_s,
        )

    def give_back(self, key: str, limit: RateLimit, cost: float = 1.0) -> None:
        """Return tokens taken for something that did not happen after all."""
        if key in self._buckets:
            tokens, updated = self._buckets[key]
            self._buckets[key] = (min(float(limit.burst), tokens + cost), updated)
