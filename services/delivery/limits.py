"""Per-endpoint limits shared by every delivery process of a machine (or of several).

All delivery processes take from one durable consumer, so any of them may
deliver to any endpoint: what limits an endpoint must be shared.

- **Rate limits** (:class:`SharedRateLimits`): one token bucket per
  rate-limited endpoint in PostgreSQL, refilled on the database's clock and
  taken from in one statement (:meth:`EndpointStore.lease_tokens`). Asking
  the database for every delivery would add a statement per delivery, so a
  process takes a *lease* of up to ``max(1, rate / 20)`` tokens (50 ms
  worth, at most the burst) and spends it itself; a lease not spent within
  LEASE_TTL_S is dropped. The total over all processes stays within the
  bucket's rate (plus its burst); a process that found the bucket empty does
  not ask again before the next token is due. A delivery the limit holds is
  sent back to the stream until about its turn (:meth:`SharedRateLimits.turn_in`,
  services/delivery/turns.py): the deliveries this process held before it are
  spaced at the endpoint's rate, so a backlog waits in the stream rather than
  circling through every process each time a token might be due. Endpoints
  without a rate limit never come here.
- **Circuits** (:class:`CircuitSync`): the JetStream KV bucket
  DELIVERY_CIRCUITS holds, under each endpoint id, its circuit as a process
  last opened (``{"state": "open", "opened_at", "cooldown_s"}``, wall-clock
  epoch seconds) or closed it (``{"state": "closed", "closed_at"}``). Each
  process writes its own changes (after the delivery, never in its way) and
  watches the bucket into its own :class:`CircuitBreakers`, so checking a
  circuit stays a dictionary lookup. The half-open probe is claimed with a
  compare-and-set on the key (an "open again from now" record): of the
  processes whose cooldown ran out together, one wins and probes, the others
  hold for another cooldown. While NATS is unreachable each process falls
  back to its own circuits (and may probe on its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import cast

import orjson
from nats.aio.client import Client as NATS
from nats.js.errors import APIError, KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from services.delivery.endpoint_store import EndpointStore
from services.delivery.turns import HeldTurns
from switchboard.circuit import CircuitBreakers
from switchboard.errors import Unavailable
from switchboard.messaging import CIRCUITS_BUCKET, follow_bucket
from switchboard.ratelimit import RateLimit
# Leases as the edge's shared buckets take them: 50 ms of the rate, dropped after a second unspent.
from switchboard.shared_buckets import LEASE_S, LEASE_TTL_S, lease_size

__all__ = ["LEASE_S", "LEASE_TTL_S", "lease_size", "SharedRateLimits", "CircuitSync"]

logger = logging.getLogger(__name__)

# Endpoints whose leases are remembered; beyond it they are forgotten (a new lease is asked).
MAX_LEASES = 100_000


@dataclass(slots=True)
class _Lease:
    tokens: int = 0
    expires: float = 0.0
    # The shared bucket was found without a whole token: none is due before then.
    empty_until: float = 0.0


class SharedRateLimits:
    """Each endpoint's rate limit, across every delivery process, from leases of its shared bucket."""

    def __init__(self, store: EndpointStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._leases: dict[str, _Lease] = {}
        # One lease asked at a time per endpoint: concurrent deliveries share its answer.
        self._asking: dict[str, asyncio.Future[None]] = {}
        # When the last delivery this process held for each endpoint is due back.
        self._turns = HeldTurns(clock)

    async def take(self, endpoint_id: str, limit: RateLimit) -> float:
        """Take a token for one delivery: 0 when it may go now, else seconds until one is due.

        Raises what PostgreSQL raises when a lease must be asked and cannot be.
        """
        while True:
            now = self.clock()
            lease = self._leases.get(endpoint_id)
            if lease is not None:
                if lease.tokens and lease.expires > now:
                    lease.tokens -= 1
                    return 0.0
                if lease.empty_until > now:
                    return lease.empty_until - now
            asking = self._asking.get(endpoint_id)
            if asking is None:
                asking = self._asking[endpoint_id] = asyncio.ensure_future(self._lease(endpoint_id, limit))
                asking.add_done_callback(lambda done: self._asked(endpoint_id, done))
            # Shielded: a delivery cancelled while waiting leaves the lease to the others.
            await asyncio.shield(asking)
            # Tokens came (or the bucket is empty until a known time): look again. Other deliveries
            # waiting on the same lease may have spent it; then the next lease is asked.

    def turn_in(self, endpoint_id: str, limit: RateLimit, wait_s: float) -> float:
        """Seconds a delivery :meth:`take` held (``wait_s`` until the next token) should stay away: a
        token's time after the one held before it, or until the next token if that is later.

        Each process spaces its own held deliveries at the endpoint's whole rate: with several
        processes some come back to an empty bucket and queue again, once or twice each, where
        holding each for the next token's ``wait_s`` had all of them back every few milliseconds.
        """
        return self._turns.next(endpoint_id, 1.0 / limit.rate_per_s, wait_s)

    def _asked(self, endpoint_id: str, done: asyncio.Future[None]) -> None:
        if self._asking.get(endpoint_id) is done:
            del self._asking[endpoint_id]
        if not done.cancelled():
            done.exception()  # retrieved: a failure is raised to the waiters, not logged as lost

    async def _lease(self, endpoint_id: str, limit: RateLimit) -> None:
        granted, wait_s = await self.store.lease_tokens(endpoint_id, limit, lease_size(limit))
        now = self.clock()
        if len(self._leases) >= MAX_LEASES and endpoint_id not in self._leases:
            self._leases.clear()
        lease = self._leases.setdefault(endpoint_id, _Lease())
        lease.tokens, lease.expires = granted, now + LEASE_TTL_S
        lease.empty_until = now + wait_s if wait_s > 0 else 0.0


# The record format in DELIVERY_CIRCUITS.
RECORD_VERSION = 1
# How long a claim or a write may wait for NATS (a claim holds up its delivery).
_NATS_TIMEOUT_S = 1.0


def encode_open(opened_at: float, cooldown_s: float, probing: bool = False) -> bytes:
    record = {"v": RECORD_VERSION, "state": "open", "opened_at": opened_at, "cooldown_s": cooldown_s}
    return orjson.dumps({**record, "probing": True} if probing else record)


def encode_closed(closed_at: float) -> bytes:
    return orjson.dumps({"v": RECORD_VERSION, "state": "closed", "closed_at": closed_at})


class CircuitSync:
    """Shares a process's endpoint circuits with the other delivery processes through DELIVERY_CIRCUITS.

    :meth:`tell` writes a change the process made (in the background, in
    order), :meth:`claim_probe` asks for the half-open probe, and :meth:`run`
    watches the bucket into ``circuits`` for as long as the process runs.
    """

    def __init__(self, nc: NATS, circuits: CircuitBreakers, bucket: str = CIRCUITS_BUCKET,
                 timeout_s: float = _NATS_TIMEOUT_S) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.circuits = circuits
        self.bucket = bucket
        self.timeout_s = timeout_s
        self._kv: KeyValue | None = None
        # Each key's last sequence as watched: what a probe's compare-and-set expects.
        self._revisions: dict[str, int] = {}
        # Records to write, the latest per key, by one writer task (so one key's writes stay in order).
        self._pending: dict[str, bytes] = {}
        self._writer: asyncio.Task[None] | None = None
        self._write_failing = False

    async def _open(self) -> KeyValue:
        if not self.nc.is_connected:
            raise Unavailable("NATS is not connected")
        if self._kv is None:
            self._kv = await self.js.key_value(self.bucket)
        return self._kv

    def tell(self, endpoint_id: str) -> None:
        """Write the endpoint's circuit as it is here now (open or closed) for the other processes."""
        opened_at = self.circuits.opened_at(endpoint_id)
        if opened_at is None:
            record = encode_closed(self.circuits.closed_at(endpoint_id) or self.circuits.wall_clock())
        else:
            record = encode_open(opened_at, self.circuits.circuit(endpoint_id).cooldown_s)
        self._pending.pop(endpoint_id, None)  # re-inserted last: written after what came before it
        self._pending[endpoint_id] = record
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="circuit writes")

    async def _write_pending(self) -> None:
        while self._pending:
            endpoint_id = next(iter(self._pending))
            record = self._pending.pop(endpoint_id)
            try:
                async with asyncio.timeout(self.timeout_s):
                    await (await self._open()).put(endpoint_id, record)
            except Exception as exc:  # the others learn from their own failures meanwhile
                log = logger.debug if self._write_failing else logger.warning
                log("circuit change not shared", extra={"endpoint_id": endpoint_id,
                                                       "error": f"{type(exc).__name__}: {exc}"})
                self._write_failing = True
            else:
                self._write_failing = False

    async def claim_probe(self, endpoint_id: str) -> bool:
        """Whether this process sends the endpoint's half-open probe (its own circuit gave it the turn).

        Claimed by writing "open again from now" over the record this process
        last saw: a process that saw an older record (another claimed, or
        closed, meanwhile) loses, and learns the news from the watch. When
        NATS does not answer, the local turn stands.
        """
        record = encode_open(self.circuits.wall_clock(), self.circuits.circuit(endpoint_id).cooldown_s,
                             probing=True)
        # The record this process decided on, read before any await: news the watch brings
        # meanwhile (another's claim) must make this claim lose, not become what it expects.
        last = self._revisions.get(endpoint_id, 0)
        try:
            async with asyncio.timeout(self.timeout_s):
                await (await self._open()).update(endpoint_id, record, last=last)
        except KeyWrongLastSequenceError:
            return False
        except APIError as exc:
            if exc.err_code in (10071, 10164):  # a wrong last sequence, reported as such by older servers
                return False
            logger.warning("probe not claimed; probing anyway", extra={"endpoint_id": endpoint_id, "error": str(exc)})
        except Exception as exc:
            logger.debug("probe not claimed; probing anyway",
                         extra={"endpoint_id": endpoint_id, "error": f"{type(exc).__name__}: {exc}"})
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        """Watch the bucket until ``stopping`` is set; failures are retried with a growing delay, never raised."""
        try:
            await follow_bucket(self.nc, self.bucket, self, stopping)
        finally:
            if self._writer is not None:
                # What this process changed last is worth sharing before it goes.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._writer), self.timeout_s)

    # BucketFollower: every key's latest record, then each change.
    def loaded(self, entries: list[KeyValue.Entry]) -> None:
        for entry in entries:
            self._apply(entry)

    def changed(self, entry: KeyValue.Entry) -> None:
        self._apply(entry)

    def lost(self) -> None:
        """Circuits stay as last seen; a claim against a stale revision loses and is read again."""

    def _apply(self, entry: KeyValue.Entry) -> None:
        endpoint_id = entry.key
        if entry.revision is not None:
            self._revisions[endpoint_id] = entry.revision
        if entry.operation in (KV_DEL, KV_PURGE):  # removed by hand (or expired): closed from now
            self.circuits.apply_closed(endpoint_id, self.circuits.wall_clock())
            return
        try:
            record = orjson.loads(cast(bytes, entry.value))  # a put (neither of the above) has a value
            if record.get("v") != RECORD_VERSION:
                raise ValueError(f"unknown record version {record.get('v')!r}")
            if record["state"] == "open":
                self.circuits.apply_opened(endpoint_id, float(record["opened_at"]), float(record["cooldown_s"]))
            elif record["state"] == "closed":
                self.circuits.apply_closed(endpoint_id, float(record["closed_at"]))
            else:
                raise ValueError(f"unknown state {record['state']!r}")
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # orjson's decode error is a ValueError
            logger.warning("unreadable circuit record", extra={"endpoint_id": endpoint_id, "error": str(exc)})
