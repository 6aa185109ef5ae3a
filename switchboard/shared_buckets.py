"""Token buckets shared by every process of the platform: each source's limit on ``/in`` and each API
key's on ``/v1`` and on the gRPC ports hold however many replicas serve them.

A bucket is one entry of the KV bucket ``RATE_LIMITS`` (``source.<id>``, ``key.<id>``,
``grpc-key.<id>``): ``{"tokens": t, "at": epoch seconds}``, refilled at its rate by whoever writes it
next. Asking NATS for every request would add a round trip to each, so a process takes a *lease* of
up to LEASE_S of the rate (at least one token, at most the burst) with compare-and-set on the entry's
revision, and spends it itself; a lease not spent within LEASE_TTL_S is dropped, and a process that
found the bucket empty does not ask again before a token is due. Over all processes the admitted
rate stays within the rate, plus the burst, plus one lease per process. An entry not written for an
hour is forgotten: the bucket is full again (``max_age``; longer than any limit takes to refill).

Refilling on each writer's wall clock assumes the replicas' clocks agree to well within a lease
(NTP does). While NATS cannot be asked, each process falls back to a bucket of its own, as before
buckets were shared: the limit then holds per process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from switchboard.messaging import RATE_LIMITS_BUCKET
from switchboard.ratelimit import RateLimit, TokenBuckets, Verdict

__all__ = ["LEASE_S", "LEASE_TTL_S", "SharedTokenBuckets", "lease_size"]

logger = logging.getLogger(__name__)

# A lease is this long's worth of a bucket's rate (at least one token, at most its burst).
LEASE_S = 0.05
# Tokens of a lease not spent within this are dropped: a process the traffic left keeps none for later.
LEASE_TTL_S = 1.0
# Compare-and-set rounds lost to other processes before a lease is given up as contended.
MAX_ROUNDS = 8
# Buckets whose leases are remembered; beyond it they are forgotten (a new lease is asked).
MAX_KEYS = 100_000
# A lease takes two round trips to NATS (well under a millisecond); one that takes longer than this
# (NATS away, or electing a leader) gives way to this process's own bucket, and NATS is not asked
# again for NATS_AWAY_S: requests are never held waiting for it.
ASK_TIMEOUT_S = 0.25
NATS_AWAY_S = 1.0


def lease_size(limit: RateLimit) -> int:
    return max(1, min(limit.burst, int(limit.rate_per_s * LEASE_S)))


@dataclass(slots=True)
class _Lease:
    tokens: int = 0
    expires: float = 0.0
    # The shared bucket had no whole token: none is due before then.
    empty_until: float = 0.0
    # What the shared bucket held after this lease was taken (for RateLimit-Remaining).
    left: float = 0.0


class SharedTokenBuckets:
    """Buckets of one ``kind`` (``source``, ``key``, ``grpc-key``) shared through ``js`` (None: this
    process's own, as in tests without NATS)."""

    def __init__(self, js: JetStreamContext | None, kind: str, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.js = js
        self.kind = kind
        self.clock = clock
        self.wall = wall
        self.local = TokenBuckets(clock=clock)
        self._leases: dict[str, _Lease] = {}
        self._asking: dict[str, asyncio.Future[None]] = {}
        self._kv: KeyValue | None = None
        self._away_until = 0.0

    async def take(self, key: str, limit: RateLimit) -> Verdict:
        """Take one token of ``key``'s bucket."""
        if self.js is None or self._away_until > self.clock():
            return self.local.take(key, limit)
        while True:
            now = self.clock()
            lease = self._leases.get(key)
            if lease is not None and lease.tokens > 0 and lease.expires > now:
                lease.tokens -= 1
                remaining = lease.tokens + int(lease.left)
                return Verdict(True, limit.burst, remaining, (limit.burst - remaining) / limit.rate_per_s, 0.0)
            if lease is not None and lease.empty_until > now:
                wait = lease.empty_until - now
                return Verdict(False, limit.burst, 0, limit.burst / limit.rate_per_s, wait)
            asking = self._asking.get(key)
            if asking is not None:  # another request of this key is asking already: share its answer
                await asyncio.shield(asking)
                continue
            asking = self._asking[key] = asyncio.get_running_loop().create_future()
            try:
                if not await self._renew(key, limit):
                    return self.local.take(key, limit)  # NATS away: this process's own bucket
            finally:
                del self._asking[key]
                asking.set_result(None)

    async def _renew(self, key: str, limit: RateLimit) -> bool:
        """A new lease of ``key`` (or the time its bucket is empty for); False when NATS cannot be asked."""
        try:
            granted, wait_s, left = await asyncio.wait_for(
                self._lease(f"{self.kind}.{key}", limit, lease_size(limit)), ASK_TIMEOUT_S)
        except Exception as exc:  # NATS away (or slow): nats-py raises several unrelated types
            self._away_until = self.clock() + NATS_AWAY_S
            logger.debug("shared rate limit not asked; this process's own applies", extra={"error": repr(exc)})
            return False
        if len(self._leases) >= MAX_KEYS and key not in self._leases:
            self._leases.clear()
        now = self.clock()
        self._leases[key] = _Lease(granted, now + LEASE_TTL_S, 0.0 if granted else now + wait_s, left)
        return True

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            assert self.js is not None
            self._kv = await self.js.key_value(RATE_LIMITS_BUCKET)
        return self._kv

    async def _lease(self, name: str, limit: RateLimit, want: int) -> tuple[int, float, float]:
        """Take up to ``want`` tokens of the shared bucket ``name``: (taken, seconds until a token is due
        when none was, tokens left)."""
        kv = await self._bucket()
        for _ in range(MAX_ROUNDS):
            try:
                entry = await kv.get(name)
            except (KeyNotFoundError, KeyDeletedError):  # never written, forgotten or deleted: a full bucket
                entry = None
            now = self.wall()
            if entry is None or not entry.value:
                tokens = float(limit.burst)
            else:
                state = orjson.loads(entry.value)
                elapsed = max(0.0, now - float(state["at"]))
                tokens = min(float(limit.burst), float(state["tokens"]) + elapsed * limit.rate_per_s)
            taken = min(want, math.floor(tokens))
            if taken == 0:
                return 0, (1.0 - tokens) / limit.rate_per_s, tokens
            value = orjson.dumps({"tokens": tokens - taken, "at": now})
            try:
                if entry is None:
                    await kv.create(name, value)
                else:
                    await kv.update(name, value, last=entry.revision)
            except KeyWrongLastSequenceError:
                continue  # another process wrote it in between: read it again
            return taken, 0.0, tokens - taken
        # Lost every round to other processes: as if empty, for the time a lease lasts.
        return 0, LEASE_S, 0.0
