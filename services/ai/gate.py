"""Per-provider rate limits with priority lanes.

Each provider has a requests-per-minute and a tokens-per-minute budget
(token buckets). A request that does not fit waits, but urgent requests go
first: while an urgent request waits for a provider, normal ones do not take
its budget. Nobody waits longer than ``max_wait_s``; a request that cannot
get in by then goes to the next provider in the chain instead (an AI that is
over its limits must never stall routing).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from collections.abc import Callable

from switchboard.ratelimit import RateLimit, TokenBuckets

__all__ = ["LANES", "ProviderLimits", "ProviderGate"]

#: Lanes, first served first.
LANES = ("urgent", "normal")


@dataclass(frozen=True)
class ProviderLimits:
    requests_per_minute: float
    tokens_per_minute: float


class ProviderGate:
    def __init__(self, limits: dict[str, ProviderLimits], clock: Callable[[], float] = time.monotonic,
                 poll_s: float = 0.02) -> None:
        self.limits = limits
        self.clock = clock
        self.poll_s = poll_s
        self._buckets = TokenBuckets(clock=clock)
        self._waiting: Counter[tuple[str, str]] = Counter()

    def _rates(self, provider: str) -> tuple[RateLimit, RateLimit] | None:
        limits = self.limits.get(provider)
        if limits is None:
            return None
        return (RateLimit(limits.requests_per_minute / 60, max(1, int(limits.requests_per_minute))),
                RateLimit(limits.tokens_per_minute / 60, max(1, int(limits.tokens_per_minute))))

    def _try(self, provider: str, tokens: int) -> bool:
        rates = self._rates(provider)
        if rates is None:
            return True  # no limits configured for this provider
        requests, token_rate = rates
        if not self._buckets.take(f"{provider}:requests", requests).allowed:
            return False
        if not self._buckets.take(f"{provider}:tokens", token_rate, tokens).allowed:
            self._buckets.give_back(f"{provider}:requests", requests)
            return False
        return True

    async def admit(self, provider: str, tokens: int, lane: str, max_wait_s: float) -> bool:
        """True once the request fits the provider's budgets; False after ``max_wait_s``."""
        ahead = LANES[:LANES.index(lane)]
        deadline = self.clock() + max_wait_s
        self._waiting[(provider, lane)] += 1
        try:
            while True:
                if not any(self._waiting[(provider, other)] for other in ahead) and self._try(provider, tokens):
                    return True
                if self.clock() >= deadline:
                    return False
                await asyncio.sleep(self.poll_s)
        finally:
            self._waiting[(provider, lane)] -= 1
