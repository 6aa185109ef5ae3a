"""Work that must run once per platform, however many replicas of its service run: under a lease.

Alert rounds, retention rounds and other periodic sweeps run in the one process
that holds their lease, an entry of the KV bucket ``LEASES`` named after the
work (``analytics.alerts``). The holder writes it again every ``ttl_s / 4``
with compare-and-set on the entry's revision, so two processes can never both
believe they hold it; the bucket forgets an entry ``ttl_s`` after its last
write (its ``max_age``), so when the holder dies (kill -9, its machine gone)
another process takes the work over within ``ttl_s`` plus one try's wait. A
holder that stops cleanly deletes its entry and the work moves at once.

A holder that cannot renew (NATS away, or the entry taken: it was partitioned
for longer than the TTL) stops the work before the bucket could have forgotten
its entry, so the work never runs twice at once, and then tries again like
anyone else. Replay runs are leased by their own row in PostgreSQL
(services/router/replay.py), as each carries its own progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from switchboard.messaging import LEASE_TTL_S, LEASES_BUCKET

__all__ = ["Leases"]

logger = logging.getLogger(__name__)

Work = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class Leases:
    """This process's leases: :meth:`run` does a piece of work only while holding the lease named for it."""

    def __init__(self, js: JetStreamContext, holder: str | None = None, ttl_s: float = LEASE_TTL_S) -> None:
        self.js = js
        # Who holds a lease, for operators reading the bucket: the host and the process.
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.ttl_s = ttl_s
        self._kv: KeyValue | None = None

    async def run(self, name: str, work: Work, stopping: asyncio.Event) -> None:
        """Until ``stopping``: take the lease ``name`` when it is free, run ``work(lost)`` while it is held
        (``lost`` is set, and the work cancelled if it does not end by itself, when the lease is lost),
        release it when done."""
        while not stopping.is_set():
            revision = await self._acquire(name)
            if revision is None:
                await _sleep(stopping, self.ttl_s / 4)
                continue
            logger.info("lease taken", extra={"lease": name, "holder": self.holder})
            lost = asyncio.Event()
            task = asyncio.create_task(work(lost), name=f"leased {name}")
            try:
                revision = await self._hold(name, revision, task, stopping)
            finally:
                lost.set()
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if revision is not None:  # still ours: let the next holder start now
                await self._release(name, revision)
            elif not stopping.is_set():
                logger.warning("lease lost; its work stopped", extra={"lease": name, "holder": self.holder})
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.js.key_value(LEASES_BUCKET)
        return self._kv

    async def _acquire(self, name: str) -> int | None:
        """The revision of the lease's new entry, or None while another process holds it (or NATS is away)."""
        try:
            return await (await self._bucket()).create(name, self.holder.encode())
        except KeyWrongLastSequenceError:
            return None
        except Exception as exc:  # NATS away: nobody can take it now
            logger.debug("lease not taken", extra={"lease": name, "error": str(exc)})
            return None

    async def _hold(self, name: str, revision: int, task: asyncio.Task, stopping: asyncio.Event) -> int | None:
        """Renew until the work ends or ``stopping``; the last revision, or None once the lease is lost."""
        renewed_at = time.monotonic()
        while not stopping.is_set() and not task.done():
            # The work stops three quarters of a TTL after the last renewal at the latest, whatever the
            # tries in between: the bucket forgets the entry one TTL after the last write, and another
            # process may then take the lease.
            give_up_at = renewed_at + self.ttl_s * 0.75
            await _sleep(stopping, min(self.ttl_s / 4, max(0.0, give_up_at - time.monotonic())), task)
            if stopping.is_set() or task.done():
                break
            attempt_at = time.monotonic()
            if attempt_at >= give_up_at:
                logger.warning("lease not renewed in time", extra={"lease": name})
                return None
            try:
                revision = await asyncio.wait_for(
                    (await self._bucket()).update(name, self.holder.encode(), last=revision),
                    min(self.ttl_s / 4, give_up_at - attempt_at))
                renewed_at = attempt_at
            except KeyWrongLastSequenceError:
                return None  # forgotten and taken by another: it runs the work now
            except Exception as exc:  # NATS away: try again while there is time
                logger.debug("lease not renewed", extra={"lease": name, "error": str(exc)})
        return revision

    async def _release(self, name: str, revision: int) -> None:
        with contextlib.suppress(Exception):
            await (await self._bucket()).delete(name, last=revision)


async def _sleep(stopping: asyncio.Event, seconds: float, task: asyncio.Task | None = None) -> None:
    """Wait ``seconds``, or less when ``stopping`` is set or ``task`` ends."""
    waits = [asyncio.ensure_future(stopping.wait())] + ([task] if task is not None else [])
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waits[0].cancel()
