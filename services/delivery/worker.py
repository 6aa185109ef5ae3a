"""The DELIVERIES consumer: one attempt walks admit -> send -> settle -> apply.

- admit: the delivery waits (a hold: no attempt spent) while its endpoint is
  over its in-flight cap or rate limit or its circuit is open; a delivery
  already settled is acknowledged; one that cannot be sent (endpoint off or
  deleted, transform failed, unknown destination) is attempted without a send.
- send: through the target's destination plugin, with its signing secrets.
- settle: the pure verdict on the result (services/delivery/settle.py).
- apply: the dead letter (for a dead one), the attempt recorded, analytics
  told, then ack or retry later.

Exactly-once *in effect*: a delivery already succeeded (or failed for good) is
acknowledged without sending again, and a crash between sending and recording
re-sends with the same ``webhook-id`` so the receiver can de-duplicate.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple, TypeVar
from dataclasses import replace
from datetime import datetime, UTC

from nats.aio.msg import Msg

from plugins.destinations.spec import Destination, DestinationContext, EndpointTarget, OutboundMessage, SendResult
from plugins.manager import PluginRegistry, UnknownPlugin
from switchboard.circuit import CircuitBreakers
from services.delivery.delivery_log import Attempt, DeliveryLog
from services.delivery.endpoint_store import Endpoint, EndpointStore
from services.delivery.health import EndpointHealth
from services.delivery.limits import CircuitSync, SharedRateLimits
from services.delivery.options import EndpointOptions, parse_options
from services.delivery.ordering import KeyPath, KeyQueue, ordering_key
from services.delivery.settle import Dead, Retry, Verdict, settle
from services.delivery.turns import SlotTurns
from switchboard.bodies import needs_json
from switchboard.database import describe_error, storable_text
from switchboard.errors import NotFound, Unavailable
from switchboard.outages import platform_error
from switchboard.bus import Bus
from switchboard.events import SKIPPED, AttemptRecord, DeadLetter, DeliveryMessage, DeliveryNotice
from switchboard.messaging import ACK, NEW_DELIVERY_HEADER, TERM, Decision, retry_after, retry_in
from switchboard import metrics
from switchboard.telemetry import extract_trace_context, start_span, tag_current_span, tracer

logger = logging.getLogger(__name__)
_tracer = tracer(__name__)


def _bounded(headers: Mapping[str, str], count: int = 30, length: int = 256) -> dict[str, str]:
    """A receiver's headers as kept in the log: at most ``count``, each value cut to ``length``."""
    return {storable_text(str(k)[:64].lower()): storable_text(str(v)[:length])
            for k, v in list(headers.items())[:count]}


# A hold is reported once it has lasted this long (or its wait is this long):
# an in-flight cap that clears within a moment is not worth a report.
HOLD_REPORT_AFTER_S = 1.0
# Deliveries whose holds are remembered; the oldest are forgotten beyond this.
MAX_HOLDS_TRACKED = 50_000
# How long an attempt already sent waits for PostgreSQL (or NATS) to record it
# before its message is given back (and the delivery sent again, same webhook-id).
RECORD_PATIENCE_S = 120.0

# How long a delivery over its endpoint's in-flight cap waits in the process for a slot, and how
# many may wait per slot, before one is given back to the stream instead (a hold).
SLOT_WAIT_S = 1.0
SLOT_WAITERS_PER_SLOT = 4

T = TypeVar("T")


class _Slot:
    """One of an endpoint's in-flight slots, given back once: as the send ends, or with the delivery.

    max_in_flight bounds requests at the receiver; a slot kept while the attempt
    is recorded would stretch each slot's turn by PostgreSQL's and NATS's round
    trips, and under load turn the cap into the throughput limit.
    """

    __slots__ = ("_free",)

    def __init__(self, free: Callable[[], None]) -> None:
        self._free: Callable[[], None] | None = free

    def release(self) -> None:
        if self._free is not None:
            free, self._free = self._free, None
            free()


def _never_stored(msg: Msg) -> bool:
    """The router's copy of a delivery, handed out for the first time: nothing of it is stored yet.

    A copy the router published again after the streams' duplicate window (all
    routers down that long between publishing and acking) is the one exception:
    it is sent again with the same webhook-id, then its record finds the first
    one's and it comes back to act on the stored state, so it is never settled
    twice. A hold, a retry or a redelivery has num_delivered > 1; a manual retry
    or a test event has no header: each reads the state first.
    """
    return (msg.headers or {}).get(NEW_DELIVERY_HEADER) == "1" and msg.metadata.num_delivered == 1


class _Prepared(NamedTuple):
    """What a delivery needs of its endpoint beyond the row, worked out once per cached copy of it."""

    endpoint: Endpoint
    options: EndpointOptions
    context: DestinationContext
    # This process's share of the endpoint's max_in_flight.
    in_flight_cap: int


class DeliveryWorker:
    def __init__(
        self,
        bus: Bus,
        endpoints: EndpointStore,
        log: DeliveryLog,
        registry: PluginRegistry,
        context: DestinationContext,
        defaults: EndpointOptions,
        circuits: CircuitBreakers | None = None,
        *,
        rate_limits: SharedRateLimits | None = None,
        circuit_sync: CircuitSync | None = None,
        processes: int = 1,
        concurrency: int = 0,
        ordered: KeyQueue | None = None,
    ) -> None:
        """``processes``: how many delivery processes share the work (and each endpoint's limits);
        ``circuit_sync`` shares ``circuits`` with them (None: this process's circuits are its own)."""
        self.bus = bus
        self.endpoints = endpoints
        self.log = log
        self.registry = registry
        self.context = context
        self.defaults = defaults
        # In PostgreSQL, shared by every delivery process (services/delivery/limits.py).
        self.rate_limits = rate_limits or SharedRateLimits(endpoints)
        self.circuits = circuits or CircuitBreakers(threshold=5, cooldown_s=10.0)
        self.health = EndpointHealth(endpoints, self.circuits, circuit_sync)
        self.processes = max(1, processes)
        # Deliveries the consumer hands this worker at once (0: unknown). One endpoint's may wait
        # for its slots in up to half of them (the rest stay for the other endpoints), shared out
        # among the processes: what one process cannot send soon goes back for the others to take.
        self.slot_waiting_room = concurrency // (2 * self.processes)
        metrics.watch_circuits("delivery", self.circuits)
        self.in_flight: Counter[str] = Counter()
        # When deliveries over an endpoint's cap, with no room to wait here, come back (services/delivery/turns.py).
        self.slot_turns = SlotTurns()
        # Endpoint id -> deliveries waiting for one of its slots, oldest first (_take_slot).
        self._slot_waiters: dict[str, collections.deque[asyncio.Future[None]]] = {}
        # Delivery id -> (hold reason, since (monotonic), reported to analytics yet).
        self._holds: dict[str, tuple[str, float, bool]] = {}
        self._parsed: dict[str, _Prepared] = {}
        # Where deliveries to ordered endpoints wait their turn (services/delivery/ordering.py), and
        # what to tell when one is parked (the process's Sequencer, which sends them).
        self.ordered = ordered or KeyQueue(log.pool)
        self.parked: Callable[[], None] = lambda: None

    async def handle(self, message: DeliveryMessage, msg: Msg) -> Decision:
        """One DELIVERIES message (``consume(..., decode=...)`` has read it)."""
        with start_span(_tracer, "delivery.send", parent=extract_trace_context(msg.headers)):
            tag_current_span(event_id=message.event_id, tenant_id=message.tenant_id, delivery_id=message.delivery_id)
            try:
                return await self.deliver(message, new=_never_stored(msg))
            except Exception as exc:  # PostgreSQL or NATS trouble: try the whole step again
                logger.warning("delivery step failed; will retry",
                               extra={"delivery_id": message.delivery_id, "error": describe_error(exc)})
                return retry_after(exc, 2.0)

    async def deliver(self, message: DeliveryMessage, *, new: bool = False, parked: bool = False) -> Decision:
        """Attempt ``message`` (or hold or drop it). ``new``: no row of it can be stored yet (see
        _never_stored), so its first attempt skips the state read; otherwise the state decides.

        A delivery to an endpoint ordered per key is parked in its key's queue and acknowledged; the
        Sequencer hands it back here (``parked``) when its turn comes.
        """
        try:
            endpoint = await self.endpoints.cached(message.tenant_id, message.endpoint_id)
        except NotFound:
            logger.error("delivery for a missing endpoint dropped", extra={"delivery_id": message.delivery_id})
            await self._notify(message, message.endpoint_id, SKIPPED)
            return TERM
        _, options, _, in_flight_cap = self._prepared(endpoint)
        if options.ordering_key is not None and not parked:
            await self.ordered.park(message, ordering_key(options.ordering_key, message))
            self.parked()
            return ACK
        # Isolation: an endpoint over its share waits (no attempt is spent) and
        # leaves this process's other slots to other endpoints.
        if not await self._take_slot(endpoint.id, in_flight_cap):
            waiting = len(self._slot_waiters.get(endpoint.id, ()))
            return await self._hold(message, endpoint.id, "in_flight_cap",
                                    self.slot_turns.turn_in(endpoint.id, in_flight_cap, waiting))
        slot = _Slot(functools.partial(self._free_slot, endpoint.id))
        try:
            return await self._deliver_in_slot(message, endpoint, options, slot, new)
        finally:
            slot.release()

    async def _take_slot(self, endpoint_id: str, cap: int) -> bool:
        """One of the endpoint's ``cap`` slots in this process, waiting up to SLOT_WAIT_S for one to
        be handed on when some of its deliveries wait here already (SLOT_WAITERS_PER_SLOT per slot,
        and never more than half the consumer's concurrency over the processes: the rest is for the
        other endpoints); False when there is none: the message goes back to the stream until about
        its turn (SlotTurns).

        Waiting here, rather than giving every message over the cap back at once, keeps a busy
        endpoint's deliveries from circling through the stream (a redelivery costs NATS and this
        process as much as a delivery) while its sends finish one after another.
        """
        if self.in_flight[endpoint_id] < cap:
            self.in_flight[endpoint_id] += 1
            return True
        waiting = self._slot_waiters.setdefault(endpoint_id, collections.deque())
        room = cap * SLOT_WAITERS_PER_SLOT
        if self.slot_waiting_room:
            room = min(room, self.slot_waiting_room)
        if len(waiting) >= room:
            return False
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting.append(handed)
        try:
            async with asyncio.timeout(SLOT_WAIT_S):
                await handed
            return True
        except TimeoutError:
            # Handed a slot just as the wait ran out: it is this delivery's all the same.
            return handed.done() and not handed.cancelled()
        finally:
            with contextlib.suppress(ValueError):
                waiting.remove(handed)
            if not waiting:
                self._slot_waiters.pop(endpoint_id, None)

    def _free_slot(self, endpoint_id: str) -> None:
        """A slot is free: handed on to the longest-waiting delivery, if any, else given back."""
        waiting = self._slot_waiters.get(endpoint_id)
        while waiting:
            handed = waiting.popleft()
            if not handed.done():
                handed.set_result(None)
                return
        self.in_flight[endpoint_id] -= 1
        if not self.in_flight[endpoint_id]:
            del self.in_flight[endpoint_id]

    async def _deliver_in_slot(self, message: DeliveryMessage, endpoint: Endpoint, options: EndpointOptions,
                               slot: _Slot, new: bool) -> Decision:
        if options.rate_limit is not None:
            wait = await self.rate_limits.take(endpoint.id, options.rate_limit)
            if wait > 0:
                turn = self.rate_limits.turn_in(endpoint.id, options.rate_limit, max(0.05, wait))
                return await self._hold(message, endpoint.id, "rate_limited", turn)
        # An endpoint that keeps failing is left alone for a while (the circuit
        # is open); its messages go to its failover meanwhile, if it has one,
        # or wait without spending attempts.
        target = endpoint
        wait = await self.health.wait_s(endpoint.id)
        if wait > 0:
            failover = await self._usable_failover(endpoint)
            if failover is None:
                return await self._hold(message, endpoint.id, "circuit_open", wait)
            target = failover
        self._holds.pop(message.delivery_id, None)  # attempted: a later hold is news again
        try:
            return await self._attempt(message, endpoint, options, target, slot, new)
        finally:
            self.health.release(target.id)

    async def ordering_path(self, tenant_id: str, endpoint_id: str) -> KeyPath | None:
        """Where the endpoint's deliveries find their key; None: it is not ordered (or is gone)."""
        try:
            return self._prepared(await self.endpoints.cached(tenant_id, endpoint_id)).options.ordering_key
        except NotFound:
            return None

    def _options(self, endpoint: Endpoint) -> EndpointOptions:
        """The endpoint's parsed options, parsed once per cached copy of the endpoint."""
        return self._prepared(endpoint).options

    def _context(self, endpoint: Endpoint) -> DestinationContext:
        """The destination context with the endpoint's timeout and retry statuses."""
        return self._prepared(endpoint).context

    def _prepared(self, endpoint: Endpoint) -> _Prepared:
        cached = self._parsed.get(endpoint.id)
        if cached is None or cached.endpoint is not endpoint:
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            options = parse_options(endpoint.options, self.defaults)
            context = replace(self.context, timeout_s=options.timeout_s, retry_statuses=options.retry_statuses)
            # max_in_flight stays what it is configured as, for the machine: each of its
            # delivery processes takes an equal share (rounded up, so never 0).
            cap = math.ceil(options.max_in_flight / self.processes)
            cached = self._parsed[endpoint.id] = _Prepared(endpoint, options, context, cap)
        return cached

    async def _usable_failover(self, endpoint: Endpoint) -> Endpoint | None:
        if not endpoint.failover_endpoint_id:
            return None
        try:
            failover = await self.endpoints.cached(endpoint.tenant_id, endpoint.failover_endpoint_id)
        except NotFound:
            return None
        return failover if self.health.usable(failover) else None

    async def _attempt(self, message: DeliveryMessage, endpoint: Endpoint, options: EndpointOptions,
                       target: Endpoint, slot: _Slot, new: bool) -> Decision:
        state = None if new else await self.log.state(message.delivery_id)
        # Not stored yet: this is its first attempt, and its row is written with the outcome.
        status, attempts_so_far, cycle_start = state or ("pending", 0, 0)
        if status != "pending":
            return ACK  # a redelivery of something already settled
        number = attempts_so_far + 1
        started = datetime.now(UTC)
        admitted = self._admit(message, endpoint, target)
        if isinstance(admitted, str):
            result, latency_ms = SendResult(ok=False, error=admitted, retryable=False), 0.0
        else:
            # Timed for the endpoint whose slot it takes (a failover's send included).
            sending = self.slot_turns.begin(endpoint.id)
            try:
                result, latency_ms = await self._send(admitted, message, target, number, started)
            finally:
                self.slot_turns.end(endpoint.id, sending)
        # The receiver is done with it: recording the attempt does not keep the endpoint's slot.
        slot.release()
        if not isinstance(admitted, str):
            target_options = options if target is endpoint else self._options(target)
            await self.health.observe(target, result, target_options.auto_disable_after_s)
        verdict = settle(result, number - cycle_start, options.retry.over(message.retry))
        attempt = Attempt(number=number, started_at=started, outcome=verdict.outcome, status_code=result.status_code,
                          latency_ms=latency_ms, response_excerpt=storable_text(result.response_excerpt),
                          error=storable_text(result.error), response_headers=_bounded(result.response_headers),
                          sent_to=target.id if target is not endpoint else None)
        return await self._apply(message, verdict, attempt, target, cycle_start, first=state is None,
                                 recheck_s=options.retry.base_delay_s)

    def _admit(self, message: DeliveryMessage, endpoint: Endpoint, target: Endpoint) -> Destination | str:
        """The destination to send through, or why nothing is sent (the attempt then fails for good, kept
        with its dead letter: fix the cause, then retry it by hand or replay the event)."""
        if message.transform_error:
            return message.transform_error
        if endpoint.deleted_at is not None:
            return "endpoint deleted"
        if endpoint.disabled_at is not None:
            return f"endpoint disabled: {endpoint.disabled_reason or 'by an operator'}"
        try:
            destination = self.registry.destination(target.destination)
        except UnknownPlugin as exc:
            return str(exc)
        if not message.has_payload and not getattr(destination, "sends_any_body", False):
            return needs_json(f"the {target.destination} destination needs", message.content_type)
        return destination

    async def _send(self, destination: Destination, message: DeliveryMessage, target: Endpoint, number: int,
                    started: datetime) -> tuple[SendResult, float]:
        """Send once: the result and how long it took (ms)."""
        secret, previous_secret = target.signing_secrets(started)
        clock = time.perf_counter()
        try:
            result = await destination.send(
                OutboundMessage(
                    delivery_id=message.delivery_id,
                    event_id=message.event_id,
                    tenant_id=message.tenant_id,
                    event_type=message.event_type,
                    payload=message.payload,
                    attempt=number,
                    body=message.body,
                    source_id=message.source_id,
                    conversation_key=message.conversation_key,
                    content_type=message.content_type,
                ),
                EndpointTarget(url=target.url, secret=secret, config=target.config, previous_secret=previous_secret),
                self._context(target),
            )
        except Exception as exc:  # a plugin bug must not lose the delivery
            logger.exception("destination raised", extra={"delivery_id": message.delivery_id})
            result = SendResult(ok=False, error=f"{type(exc).__name__}: {exc}"[:500], retryable=True)
        return result, (time.perf_counter() - clock) * 1000

    async def _apply(self, message: DeliveryMessage, verdict: Verdict, attempt: Attempt, target: Endpoint,
                     cycle_start: int, *, first: bool, recheck_s: float) -> Decision:
        """Act on the verdict: dead-letter, record the attempt, tell analytics; ack or retry later.

        ``first``: no row of the delivery is stored yet (written now, with the attempt).
        """
        if isinstance(verdict, Dead):
            # Dead-letter first: if this publish fails, the whole step is retried
            # and the attempt is not yet recorded as final.
            await self._once_recorded(message.delivery_id, lambda: self.bus.publish(
                DeadLetter(message, attempt.error, attempt.number, cycle_start)))
        recorded = await self._once_recorded(message.delivery_id, lambda: self.log.record_attempt(
            message.delivery_id, attempt, new=message if first else None))
        if not recorded:
            # A redelivered copy of this message raced us and recorded this attempt (or
            # stored the delivery) first. Let the message come back and act on the state it left.
            logger.warning("attempt already recorded by another worker", extra={"delivery_id": message.delivery_id})
            return retry_in(recheck_s)
        metrics.record_delivery_attempt(target.destination, verdict.outcome, attempt.latency_ms / 1000)
        await self._report(message, target.id, attempt)
        # A success is counted (switchboard_delivery_attempts_total), not logged at info: one line per
        # delivery was a good part of a busy platform's CPU. Failures stay at info: an open circuit
        # holds a failing endpoint's deliveries, so they are few.
        logger.log(logging.INFO if isinstance(verdict, (Retry, Dead)) else logging.DEBUG, "delivery attempt", extra={
            "delivery_id": message.delivery_id, "tenant_id": message.tenant_id, "attempt": attempt.number,
            "outcome": verdict.outcome, "status_code": attempt.status_code,
            **({"reason": verdict.reason} if isinstance(verdict, Dead) else {}),
        })
        if isinstance(verdict, Retry):
            return retry_in(verdict.delay_s)
        return ACK

    async def _once_recorded(self, delivery_id: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run a step that records an attempt already made, waiting out an outage of PostgreSQL or
        NATS (the consumer keeps the message in progress meanwhile) rather than giving the message
        back, which would send it again. Past RECORD_PATIENCE_S, or on any other error, it raises."""
        delay, deadline = 0.5, time.monotonic() + RECORD_PATIENCE_S
        while True:
            try:
                return await step()
            except Exception as exc:
                if not isinstance(platform_error(exc), Unavailable) or time.monotonic() + delay > deadline:
                    raise
                logger.warning("attempt made but not recorded yet; waiting for the database",
                               extra={"delivery_id": delivery_id, "error": describe_error(exc)})
            await asyncio.sleep(delay)
            delay = min(2 * delay, 5.0)

    async def _hold(self, message: DeliveryMessage, endpoint_id: str, reason: str, delay_s: float) -> Decision:
        """Give the message back for ``delay_s`` without an attempt; tell analytics why, once per reason.

        Not per hold (a held message comes back every fraction of a second), and
        not for a hold that clears at once (see HOLD_REPORT_AFTER_S).
        """
        metrics.record_delivery_hold(reason)
        now = time.monotonic()
        held = self._holds.get(message.delivery_id)
        if held is None or held[0] != reason:
            held = (reason, now, False)
        if not held[2] and (delay_s >= HOLD_REPORT_AFTER_S or now - held[1] >= HOLD_REPORT_AFTER_S):
            await self._notify(message, endpoint_id, reason)
            held = (reason, held[1], True)
        self._holds.pop(message.delivery_id, None)  # re-inserted last: the dict stays oldest first
        self._holds[message.delivery_id] = held
        if len(self._holds) > MAX_HOLDS_TRACKED:
            del self._holds[next(iter(self._holds))]
        return retry_in(delay_s)

    async def _notify(self, message: DeliveryMessage, endpoint_id: str, state: str) -> None:
        """Tell analytics a delivery is held (``state`` a hold reason) or skipped; never fails the delivery."""
        await self.bus.report(DeliveryNotice(
            delivery_id=message.delivery_id, tenant_id=message.tenant_id, endpoint_id=endpoint_id,
            event_type=message.event_type, state=state, at=time.time(), source_id=message.source_id,
            category=message.category, priority=message.priority))

    async def _report(self, message: DeliveryMessage, sent_to: str, attempt: Attempt) -> None:
        """Tell analytics; a lost report never fails a delivery.

        The attempt counts for the endpoint it went to (a failover's answers are its own).
        """
        await self.bus.report(AttemptRecord(
            delivery_id=message.delivery_id, number=attempt.number, tenant_id=message.tenant_id,
            endpoint_id=sent_to, event_type=message.event_type, outcome=attempt.outcome,
            status_code=attempt.status_code, latency_ms=attempt.latency_ms, at=time.time(),
            source_id=message.source_id, category=message.category, priority=message.priority,
            error=attempt.error[:200] if attempt.error else None,
        ))
