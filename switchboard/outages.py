"""What a dependency being down means: the caller's error, and each dependency's state.

A service that cannot reach NATS or PostgreSQL answers 503 (gRPC
``UNAVAILABLE``) with ``Retry-After``, never 500: :func:`platform_error`
recognises those failures wherever they surface. :func:`dependency_states` is
what ``/readyz`` reports, one entry per dependency the process needs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import nats.errors
import psycopg
from nats.aio.client import Client as NATS
from nats.js import errors as js_errors
from psycopg_pool import AsyncConnectionPool

from switchboard.database import as_platform_error as database_error, describe_error
from switchboard.errors import SwitchboardError, Unavailable

__all__ = ["platform_error", "DependencyState", "dependency_states", "PostgresProbe"]

# NATS failures that mean "not reachable now", not a mistake in the request.
_NATS_DOWN = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    js_errors.ServiceUnavailableError,
)


class MessagingUnavailable(Unavailable):
    code = "messaging_unavailable"


def platform_error(exc: BaseException) -> SwitchboardError | None:
    """The platform error an infrastructure failure means for the caller, if it is one."""
    if isinstance(exc, _NATS_DOWN):
        return MessagingUnavailable("the message store is unavailable; retry later")
    if isinstance(exc, psycopg.InterfaceError):  # a connection closed under us
        return database_error(psycopg.OperationalError(str(exc)))
    return database_error(exc)


@dataclass(frozen=True)
class DependencyState:
    up: bool
    detail: str | None = None

    def as_json(self) -> dict[str, object]:
        return {"state": "up" if self.up else "down", **({"detail": self.detail} if self.detail else {})}


class PostgresProbe:
    """``SELECT 1`` on a pooled connection, at most once per ``interval_s`` (probes may come often)."""

    def __init__(self, pool: AsyncConnectionPool, timeout_s: float = 2.0, interval_s: float = 1.0) -> None:
        self.pool = pool
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self._checked_at = -float("inf")
        self._state = DependencyState(False, "not checked yet")
        self._lock = asyncio.Lock()

    async def state(self) -> DependencyState:
        async with self._lock:
            if time.monotonic() - self._checked_at >= self.interval_s:
                self._state = await self._check()
                self._checked_at = time.monotonic()
            return self._state

    async def _check(self) -> DependencyState:
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.pool.connection(timeout=self.timeout_s) as conn:
                    await conn.execute("SELECT 1")
        except TimeoutError:
            return DependencyState(False, f"no answer within {self.timeout_s:g} s")
        except Exception as exc:  # whatever the driver raises, the answer is "down"
            return DependencyState(False, describe_error(exc))
        return DependencyState(True)


async def dependency_states(nc: NATS, postgres: PostgresProbe) -> dict[str, DependencyState]:
    nats_state = DependencyState(True) if nc.is_connected else DependencyState(
        False, "reconnecting" if nc.is_reconnecting else "disconnected")
    return {"nats": nats_state, "postgres": await postgres.state()}
