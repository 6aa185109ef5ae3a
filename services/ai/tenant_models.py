"""Tenants' own local models: the local provider's category model retrained on the corpus and a tenant's corrections.

A retrain (``POST /v1/ai/retrain``) reads the tenant's corrected events from
the router (:class:`CorrectionSource`), trains in a process of its own (pure
Python, several seconds: off the event loop, and one training at a time per AI
process), and keeps the weights in ``ai.tenant_models``. From then on the
local provider answers that tenant's classifications with them
(``AIRequest.tuned_model``), which may know categories of the tenant's own
that the corrections taught it. One training per tenant at a time, whatever AI
processes run: the row's ``training_since`` is the claim, and a claim older
than ``CLAIM_TTL`` (its process died) is taken over. Nightly, under a lease,
the tenants that trained once and have corrections newer than their model are
retrained (:meth:`TenantModels.retrain_due`). Docs: docs/ai.md#learning-from-corrections.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from collections.abc import Awaitable, Callable

from psycopg_pool import AsyncConnectionPool

from plugins.ai.local import MODEL
from plugins.ai.local.model import LABELS, Weights
from switchboard.errors import Conflict, InvalidRequest

__all__ = ["ModelState", "Correction", "CorrectionSource", "TenantModels", "train_in_subprocess", "CLAIM_TTL"]

logger = logging.getLogger(__name__)

# A training claim older than this is a dead process's: another may take it over.
CLAIM_TTL = timedelta(minutes=15)
# The most recent corrections a tenant's model learns from.
MAX_CORRECTIONS = 5000
# Tenants' models held in memory per AI process (each some MB): the least recently used goes.
MAX_LOADED = 50


@dataclass(frozen=True)
class Correction:
    """A corrected event, as a training row: what the local model reads of it, and its category."""

    source_type: str
    event_type: str
    payload: Any
    text: str
    category: str
    labelled_at: datetime

    def row(self) -> dict[str, Any]:
        return {"source_type": self.source_type, "event_type": self.event_type, "payload": self.payload,
                "text": self.text, "category": self.category}


class CorrectionSource(Protocol):
    async def corrections(self, tenant_id: str, limit: int) -> list[Correction]:
        """The tenant's corrected events, newest first, at most ``limit``."""


@dataclass(frozen=True)
class ModelState:
    tenant_id: str
    model: str
    # builtin, training, ready or failed
    status: str
    corrections: int = 0
    trained_at: datetime | None = None
    training_since: datetime | None = None
    error: str | None = None
    categories: tuple[str, ...] = LABELS


# A trainer: the corrections' rows → model.json text.
Trainer = Callable[[list[dict[str, Any]]], Awaitable[str]]


def train_in_subprocess(data: str = "") -> Trainer:
    """A trainer running ``python -m plugins.ai.local.training --corrections -`` (pure Python for seconds: in a
    process of its own, the event loop and its GIL stay free), one at a time per AI process; a cancelled training
    kills its process. ``data``: the directory of the built-in training rows ("": the source tree's)."""
    one_at_a_time = asyncio.Semaphore(1)
    command = [sys.executable, "-m", "plugins.ai.local.training", "--corrections", "-"]
    if data:
        command += ["--data", data]

    async def trainer(rows: list[dict[str, Any]]) -> str:
        async with one_at_a_time:
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            try:
                out, err = await process.communicate(json.dumps(rows).encode())
            except BaseException:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                raise
        if process.returncode != 0:
            said = err.decode(errors="replace").strip().splitlines()
            raise RuntimeError(said[-1] if said else f"the training exited with {process.returncode}")
        return out.decode()

    return trainer


def _name(version: int) -> str:
    return f"{MODEL}-tenant-v{version}"


def _state(tenant_id: str, row: dict[str, Any] | None, now: datetime) -> ModelState:
    if row is None:
        return ModelState(tenant_id, MODEL, "builtin")
    training = row["training_since"] is not None and row["training_since"] > now - CLAIM_TTL
    status = ("training" if training else "failed" if row["last_error"]
              else "ready" if row["version"] else "builtin")
    return ModelState(tenant_id, _name(row["version"]) if row["version"] else MODEL, status, row["corrections"],
                      row["trained_at"], row["training_since"], row["last_error"] or None,
                      tuple(row["labels"]) or LABELS)


class TenantModels:
    """The tenants' models: trained on demand or nightly, kept in PostgreSQL, held in memory while used.

    Which model answers a tenant is checked every ``cache_ttl_s`` (the process that trained it knows at once);
    its weights are read only when its version changed."""

    def __init__(self, pool: AsyncConnectionPool[Any], source: CorrectionSource, trainer: Trainer,
                 cache_ttl_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.source = source
        self.trainer = trainer
        self.cache_ttl_s = cache_ttl_s
        self.clock = clock
        # tenant → (checked until, version, weights or None)
        self._loaded: dict[str, tuple[float, int, Weights | None]] = {}
        self._tasks: set[asyncio.Task] = set()

    async def current(self, tenant_id: str) -> Weights | None:
        """The tenant's own model (None: it has none, the shipped one answers)."""
        hit = self._loaded.get(tenant_id)
        if hit is not None and hit[0] > self.clock():
            return hit[2]
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT version FROM ai.tenant_models WHERE tenant_id = %s", (tenant_id,))
            row = await cur.fetchone()
        version = row["version"] if row else 0
        weights = hit[2] if hit is not None and hit[1] == version else await self._weights(tenant_id, version)
        self._loaded.pop(tenant_id, None)
        self._loaded[tenant_id] = (self.clock() + self.cache_ttl_s, version, weights)
        while len(self._loaded) > MAX_LOADED:
            self._loaded.pop(next(iter(self._loaded)))
        return weights

    async def _weights(self, tenant_id: str, version: int) -> Weights | None:
        if not version:
            return None
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT version, weights FROM ai.tenant_models WHERE tenant_id = %s",
                                     (tenant_id,))
            row = await cur.fetchone()
        if row is None or not row["weights"]:
            return None
        weights = await asyncio.to_thread(Weights.from_json, row["weights"])  # some MB of JSON: off the loop
        return Weights(weights.labels, weights.bias, weights.weights, name=_name(row["version"]))

    async def state(self, tenant_id: str) -> ModelState:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT version, labels, corrections, trained_at, training_since, last_error, now() AS now
                   FROM ai.tenant_models WHERE tenant_id = %s""", (tenant_id,))
            row = await cur.fetchone()
        return _state(tenant_id, row, row["now"] if row else datetime.now().astimezone())

    async def retrain(self, tenant_id: str) -> ModelState:
        """Start training the tenant's model in the background; Conflict while one is training, InvalidRequest
        when it has no corrections to learn from."""
        if not await self._claim(tenant_id):
            raise Conflict("the tenant's model is already training: follow it at GET /v1/ai/model")
        try:
            corrections = await self.source.corrections(tenant_id, MAX_CORRECTIONS)
            if not corrections:
                raise InvalidRequest("the tenant has no corrections to learn from: label events first "
                                     "(POST /v1/events/{event_id}/labels)")
        except BaseException:
            await self._release(tenant_id)
            raise
        task = asyncio.create_task(self._train(tenant_id, corrections), name=f"training {tenant_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await self.state(tenant_id)

    async def retrain_due(self) -> int:
        """Retrain the tenants that trained a model once and have corrections newer than it; how many."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT tenant_id, trained_at FROM ai.tenant_models WHERE version > 0")
            tenants = await cur.fetchall()
        retrained = 0
        for row in tenants:
            newest = await self.source.corrections(row["tenant_id"], 1)
            if not newest or (row["trained_at"] and newest[0].labelled_at <= row["trained_at"]):
                continue
            try:
                await self.retrain(row["tenant_id"])
            except Conflict:
                continue
            retrained += 1
            await asyncio.gather(*self._tasks, return_exceptions=True)  # one at a time: the worker is shared
        return retrained

    async def _claim(self, tenant_id: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """INSERT INTO ai.tenant_models (tenant_id, training_since) VALUES (%s, now())
                   ON CONFLICT (tenant_id) DO UPDATE SET training_since = now(), updated_at = now()
                   WHERE tenant_models.training_since IS NULL OR tenant_models.training_since < now() - %s
                   RETURNING tenant_id""", (tenant_id, CLAIM_TTL))
            return await cur.fetchone() is not None

    async def _release(self, tenant_id: str, error: str | None = None) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                """UPDATE ai.tenant_models SET training_since = NULL, last_error = coalesce(%s, last_error),
                       updated_at = now() WHERE tenant_id = %s""", (error, tenant_id))

    async def _train(self, tenant_id: str, corrections: list[Correction]) -> None:
        started = time.perf_counter()
        try:
            text = await self.trainer([c.row() for c in corrections])
            labels = list(Weights.from_json(text).labels)
        except asyncio.CancelledError:
            await asyncio.shield(self._release(tenant_id, "training stopped: its AI process stopped"))
            raise
        except Exception as exc:
            logger.warning("a tenant's model failed to train", extra={"tenant_id": tenant_id, "error": str(exc)})
            await self._release(tenant_id, f"training failed: {exc}"[:500])
            return
        async with self.pool.connection() as conn:
            await conn.execute(
                """UPDATE ai.tenant_models
                   SET version = version + 1, weights = %s, labels = %s, corrections = %s, trained_at = now(),
                       training_since = NULL, last_error = NULL, updated_at = now()
                   WHERE tenant_id = %s""", (text, labels, len(corrections), tenant_id))
        self._loaded.pop(tenant_id, None)
        logger.info("a tenant's model trained", extra={"tenant_id": tenant_id, "corrections": len(corrections),
                                                       "seconds": round(time.perf_counter() - started, 1)})

    async def close(self) -> None:
        """Stop the trainings under way (their claims lapse after CLAIM_TTL)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
