"""An endpoint's health, as its attempts show it: the circuit breaker, the failure streak, auto-disable.

The circuit is per process and shared with the other delivery processes
(services/delivery/limits.py: CircuitSync); the streak (``failing_since``) is
in PostgreSQL, written in batches: concurrent attempts' outcomes share one
statement (switchboard/batching.py), and a success writes only to end a streak.
"""

from __future__ import annotations

import logging
from datetime import datetime, UTC
from plugins.destinations.spec import SendResult
from services.delivery.endpoint_store import Endpoint, EndpointStore
from services.delivery.limits import CircuitSync
from switchboard.batching import Batcher
from switchboard.circuit import CircuitBreakers

__all__ = ["EndpointHealth"]

logger = logging.getLogger(__name__)


class EndpointHealth:
    def __init__(self, endpoints: EndpointStore, circuits: CircuitBreakers,
                 circuit_sync: CircuitSync | None = None) -> None:
        """``circuit_sync`` shares ``circuits`` with the other delivery processes (None: they are this
        process's own)."""
        self.endpoints = endpoints
        self.circuits = circuits
        self.circuit_sync = circuit_sync
        self._failures: Batcher[str, datetime] = Batcher(endpoints.note_failures)
        self._successes: Batcher[str, None] = Batcher(endpoints.note_successes)

    async def wait_s(self, endpoint_id: str) -> float:
        """0 when a delivery to the endpoint may go now (then :meth:`release` it once done); else how long
        its circuit keeps it waiting. Of the processes sharing circuits, one at a time probes a half-open one."""
        wait = self.circuits.wait_s(endpoint_id)
        if not wait and self.circuit_sync is not None and self.circuits.circuit(endpoint_id).probing:
            if not await self.circuit_sync.claim_probe(endpoint_id):
                self.circuits.release(endpoint_id)
                # Another process probes; its outcome comes through the circuits bucket.
                wait = min(1.0, self.circuits.circuit(endpoint_id).cooldown_s)
        return wait

    def usable(self, endpoint: Endpoint) -> bool:
        """Whether the endpoint can take a delivery at once (a failover candidate)."""
        return endpoint.disabled_at is None and endpoint.deleted_at is None and not self.circuits.wait_s(endpoint.id)

    def release(self, endpoint_id: str) -> None:
        self.circuits.release(endpoint_id)

    async def observe(self, endpoint: Endpoint, result: SendResult, auto_disable_after_s: float | None) -> None:
        """Learn from a send to ``endpoint``: feed its circuit and failure streak, and disable it when its
        receiver asked to or it has failed for ``auto_disable_after_s``."""
        # A final 4xx means the receiver is up; only what a retry might cure counts against it.
        healthy = result.ok or not result.retryable
        had_failures = self.circuits.circuit(endpoint.id).failures > 0
        if self.circuits.record(endpoint.id, healthy) is not None and self.circuit_sync is not None:
            self.circuit_sync.tell(endpoint.id)  # opened or closed: the other processes hear of it
        if healthy:
            if had_failures or endpoint.failing_since is not None:
                await self._successes.submit(endpoint.id)
        else:
            since = await self._failures.submit(endpoint.id)
            failing_for = (datetime.now(UTC) - since).total_seconds()
            if auto_disable_after_s and failing_for >= auto_disable_after_s:
                reason = f"failing since {since.isoformat(timespec='seconds')}: {result.error or 'no success'}"
                await self._disable(endpoint, reason[:500], "endpoint auto-disabled")
        if result.disable_endpoint:
            await self._disable(endpoint, result.disable_endpoint, "endpoint disabled by its receiver")

    async def _disable(self, endpoint: Endpoint, reason: str, why: str) -> None:
        if await self.endpoints.disable_enabled(endpoint.tenant_id, endpoint.id, reason):
            logger.warning(why, extra={"endpoint_id": endpoint.id, "reason": reason})
