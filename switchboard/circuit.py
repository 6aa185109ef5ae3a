"""A circuit breaker per endpoint (delivery) or provider (AI): stop hammering what keeps failing.

Closed: calls flow. After ``threshold`` consecutive failures the circuit
opens: nothing is sent for ``cooldown_s`` (deliveries wait without spending
attempts; AI requests go to the next provider). Then it is half-open: one call
goes through as a probe; its success closes the circuit, its failure opens it
again for another cooldown. State is per process (each learns on its own,
quickly).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["EndpointCircuit", "CircuitBreakers"]


@dataclass
class EndpointCircuit:
    threshold: int = 5
    cooldown_s: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

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

    def record(self, ok: bool, now: float) -> None:
        self.probing = False
        if ok:
            self.failures = 0
            self.opened_at = None
            return
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = now

    @property
    def state(self) -> str:
        return "closed" if self.opened_at is None else "open"


class CircuitBreakers:
    def __init__(self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._circuits: dict[str, EndpointCircuit] = {}

    def circuit(self, endpoint_id: str) -> EndpointCircuit:
        if endpoint_id not in self._circuits:
            self._circuits[endpoint_id] = EndpointCircuit(self.threshold, self.cooldown_s)
        return self._circuits[endpoint_id]

    def wait_s(self, endpoint_id: str) -> float:
        return self.circuit(endpoint_id).wait_s(self.clock())

    def record(self, endpoint_id: str, ok: bool) -> None:
        self.circuit(endpoint_id).record(ok, self.clock())

    def release(self, endpoint_id: str) -> None:
        """A half-open probe that made no call (nothing recorded) frees its turn for the next one."""
        self.circuit(endpoint_id).probing = False

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
