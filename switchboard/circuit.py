"""A circuit breaker per endpoint (delivery) or provider (AI): stop hammering what keeps failing.

Closed: calls flow. After ``threshold`` consecutive failures the circuit
opens: nothing is sent for ``cooldown_s`` (deliveries wait without spending
attempts; AI requests go to the next provider). Then it is half-open: one call
goes through as a probe; its success closes the circuit, its failure opens it
again for another cooldown.

State is per process. Processes that share circuits (the delivery processes,
services/delivery/limits.py) tell each other what :meth:`CircuitBreakers.record`
reports as changed, with its wall-clock time (:meth:`CircuitBreakers.opened_at`),
and apply what they hear with :meth:`CircuitBreakers.apply_opened` and
:meth:`CircuitBreakers.apply_closed`: the later news wins, whatever order it
arrives in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal
from collections.abc import Callable

__all__ = ["EndpointCircuit", "CircuitBreakers", "Change", "OPENED", "CLOSED"]

Change = Literal["opened", "closed"]
OPENED: Change = "opened"
CLOSED: Change = "closed"


@dataclass
class EndpointCircuit:
    threshold: int = 5
    cooldown_s: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    # When it last closed: news of an opening from before then is stale.
    closed_at: float | None = None

    def wait_s(self, now: float) -> float:
        """0 when a delivery may go now; else how long until it may."""
        if self.opened_at is None:
            return 0.0
        remaining = self.opened_at + self.cooldown_s - now
        if remaining > 0:
            return remaining
        if self.probing:
            return min(1.0, self.cooldown_s)  # one probe at a time
        self.probing = True
        return 0.0

    def record(self, ok: bool, now: float) -> Change | None:
        """Count a call's outcome; OPENED when it opened the circuit (or opened it again),
        CLOSED when it closed an open one, else None."""
        self.probing = False
        if ok:
            self.failures = 0
            if self.opened_at is None:
                return None
            self.opened_at, self.closed_at = None, now
            return CLOSED
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = now
            return OPENED
        return None

    @property
    def state(self) -> str:
        return "closed" if self.opened_at is None else "open"


class CircuitBreakers:
    def __init__(self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        # Times shared with other processes are wall-clock epoch seconds (their monotonic clocks differ).
        self.wall_clock = wall_clock
        self._circuits: dict[str, EndpointCircuit] = {}

    def circuit(self, endpoint_id: str) -> EndpointCircuit:
        if endpoint_id not in self._circuits:
            self._circuits[endpoint_id] = EndpointCircuit(self.threshold, self.cooldown_s)
        return self._circuits[endpoint_id]

    def wait_s(self, endpoint_id: str) -> float:
        return self.circuit(endpoint_id).wait_s(self.clock())

    def record(self, endpoint_id: str, ok: bool) -> Change | None:
        """Count a call's outcome; what changed that processes sharing the circuit must hear, if anything."""
        return self.circuit(endpoint_id).record(ok, self.clock())

    def release(self, endpoint_id: str) -> None:
        """A half-open probe that made no call (nothing recorded) frees its turn for the next one."""
        self.circuit(endpoint_id).probing = False

    def opened_at(self, endpoint_id: str) -> float | None:
        """When the circuit (last) opened, in wall-clock epoch seconds; None while it is closed."""
        circuit = self._circuits.get(endpoint_id)
        if circuit is None or circuit.opened_at is None:
            return None
        return self._wall(circuit.opened_at)

    def closed_at(self, endpoint_id: str) -> float | None:
        """When the circuit last closed, in wall-clock epoch seconds; None if it never did here."""
        circuit = self._circuits.get(endpoint_id)
        if circuit is None or circuit.closed_at is None:
            return None
        return self._wall(circuit.closed_at)

    def apply_opened(self, endpoint_id: str, opened_at: float, cooldown_s: float) -> bool:
        """Another process opened the circuit at ``opened_at`` (wall clock) for ``cooldown_s``:
        hold calls here too. Ignored (False) when this circuit opened or closed since."""
        circuit = self.circuit(endpoint_id)
        at = self._local(opened_at)
        if (circuit.opened_at is not None and at <= circuit.opened_at) or \
                (circuit.closed_at is not None and at <= circuit.closed_at):
            return False
        circuit.opened_at, circuit.cooldown_s = at, cooldown_s
        circuit.failures = max(circuit.failures, circuit.threshold)
        return True

    def apply_closed(self, endpoint_id: str, closed_at: float) -> bool:
        """Another process closed the circuit at ``closed_at`` (wall clock): calls flow here too.
        Ignored (False) when this circuit is closed already or opened again since."""
        circuit = self._circuits.get(endpoint_id)
        if circuit is None:
            return False  # never used here: nothing to close
        at = self._local(closed_at)
        if circuit.opened_at is None:
            circuit.closed_at = max(at, circuit.closed_at if circuit.closed_at is not None else at)
            return False
        if at < circuit.opened_at:
            return False
        circuit.opened_at, circuit.closed_at, circuit.failures = None, at, 0
        return True

    def _local(self, wall: float) -> float:
        return self.clock() - (self.wall_clock() - wall)

    def _wall(self, local: float) -> float:
        return self.wall_clock() - (self.clock() - local)

    def states(self) -> dict[str, int]:
        """How many circuits are closed, open, or half-open (cooldown over: a probe may go), for metrics.

        Read-only, and safe to call from another thread (the metrics server's).
        """
        now = self.clock()
        counts = {"closed": 0, "open": 0, "half_open": 0}
        for circuit in list(self._circuits.values()):
            opened_at = circuit.opened_at
            if opened_at is None:
                counts["closed"] += 1
            elif opened_at + circuit.cooldown_s > now:
                counts["open"] += 1
            else:
                counts["half_open"] += 1
        return counts
