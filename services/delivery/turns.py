"""How long a delivery an endpoint's limit holds stays away: until about its turn.

A held delivery is given back to the stream with a delay. Given back for a fixed
moment, a backlog circles: every held message comes back, is held again, and
costs NATS and a process about what a delivery costs, many times over (300
deliveries at a 20/s rate limit were handled 18,696 times; 200 to a slow
endpoint over its in-flight cap, 3,081 times). So each process spaces the
deliveries it holds for an endpoint one after another, at the pace the limit
lets them go: a rate limit's token interval (:class:`SharedRateLimits`), or
the time a send takes over the process's share of the in-flight cap
(:class:`SlotTurns`). With several processes each spaces its own; some come
back to a full endpoint and queue again, once or twice each.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

__all__ = ["MAX_TURN_S", "HeldTurns", "SlotTurns"]

# The longest a held delivery is sent away for: past it, it comes back and takes its turn again (a process
# that held it and was restarted forgets the turns it gave out).
MAX_TURN_S = 60.0
# Endpoints whose turns (or send times) are remembered; beyond it, those past are forgotten.
MAX_ENDPOINTS = 100_000
# What a send is taken to last before one to the endpoint has been timed (and none is in flight).
FIRST_SEND_S = 0.005
# The weight of each new send time in an endpoint's running average.
SEND_TIME_WEIGHT = 0.2


class HeldTurns:
    """When the last delivery this process held for each endpoint is due back."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._due: dict[str, float] = {}

    def next(self, endpoint_id: str, spacing_s: float, at_least_s: float) -> float:
        """Seconds the delivery held now should stay away: ``spacing_s`` after the one held before it, and
        at least ``at_least_s`` (at most MAX_TURN_S)."""
        now = self.clock()
        turn = min(now + MAX_TURN_S, max(now + at_least_s, self._due.get(endpoint_id, 0.0) + spacing_s))
        if len(self._due) >= MAX_ENDPOINTS and endpoint_id not in self._due:
            self._due = {key: due for key, due in self._due.items() if due > now}
        self._due[endpoint_id] = turn
        return turn - now


class SlotTurns:
    """Turns of the deliveries an endpoint's in-flight cap holds: one slot frees about every
    (send time / cap) seconds. The send time is this process's running average for the endpoint, or how
    long its oldest send in flight has taken so far if that is longer (a receiver grown slow, or one
    never timed: its backlog comes back sooner at first, and later as the sends show how slow it is)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.turns = HeldTurns(clock)
        self._send_s: dict[str, float] = {}
        # Endpoint id -> its sends in flight here: token -> when it started.
        self._sending: dict[str, dict[int, float]] = {}
        self._tokens = itertools.count()

    def begin(self, endpoint_id: str) -> int:
        """A send to the endpoint starts; :meth:`end` it with the token returned."""
        token = next(self._tokens)
        self._sending.setdefault(endpoint_id, {})[token] = self.clock()
        return token

    def end(self, endpoint_id: str, token: int) -> None:
        sending = self._sending.get(endpoint_id, {})
        started = sending.pop(token, None)
        if not sending:
            self._sending.pop(endpoint_id, None)
        if started is None:
            return
        seconds = self.clock() - started
        before = self._send_s.get(endpoint_id)
        if before is None and len(self._send_s) >= MAX_ENDPOINTS:
            self._send_s.clear()
        self._send_s[endpoint_id] = seconds if before is None else before + SEND_TIME_WEIGHT * (seconds - before)

    def send_time(self, endpoint_id: str) -> float:
        """The running average of this process's sends to the endpoint (FIRST_SEND_S before the first)."""
        return self._send_s.get(endpoint_id, FIRST_SEND_S)

    def turn_in(self, endpoint_id: str, cap: int, waiting: int) -> float:
        """Seconds a delivery over the endpoint's ``cap`` slots stays away, with ``waiting`` deliveries
        already waiting in the process for a slot: they go first, then those held before it, then it."""
        send_s = self.send_time(endpoint_id)
        sending = self._sending.get(endpoint_id)
        if sending:
            send_s = max(send_s, self.clock() - min(sending.values()))
        slot_s = send_s / cap
        return self.turns.next(endpoint_id, slot_s, max(0.05, (waiting + 1) * slot_s))
