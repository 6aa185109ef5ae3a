"""The change feed of sources: the JetStream KV bucket SOURCES, mirrored by every ingest process.

PostgreSQL is the truth; the bucket is how every edge learns of it without
asking PostgreSQL on the webhook hot path:

- **Writes** (:class:`SourceFeed`, the :class:`~services.ingest.sources.SourceStore`'s
  change feed): after each commit, the source's whole record under its id (a
  delete deletes the key). Each record carries the source's revision
  (counted up by every change in PostgreSQL), and a write never replaces a
  newer revision: it compares and sets on the key's last sequence, so of two
  edges changing one source at once, the older record never lands last. A
  write that fails (NATS down) leaves the change committed all the same.
- **The mirror** (:class:`SourceWatcher`): every ingest process watches the
  bucket (an ordered consumer, last record per key, then every change) into
  a :class:`~services.ingest.sources.SourceMirror`; it reads the whole bucket
  again whenever its NATS connection came back (a restarted server).
- **Reconciliation** (:class:`SourceReconciler`): every process compares
  PostgreSQL's ``(id, revision)`` list with the bucket right after each
  (re)read of the bucket and every ``SWITCHBOARD_SOURCE_RECONCILE_INTERVAL``,
  and repairs the bucket (a write lost while NATS was down, a key an operator
  deleted, a source deleted while its KV delete failed). Its writes compare
  and set too, so any number of processes may reconcile at once.

A record holds the source's signing secrets (the current one, and the
previous one during a rotation's grace period) as they are in PostgreSQL:
NATS holds them, and whoever may read the bucket may sign webhooks
(docs/operations.md, "Ingest without PostgreSQL").
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast, overload
from collections.abc import Iterable

import orjson
from nats.aio.client import Client as NATS
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from services.ingest.sources import Source, SourceMirror, SourceStore
from switchboard.errors import Unavailable
from switchboard.messaging import SOURCES_BUCKET, follow_bucket
from switchboard.ratelimit import RateLimit
from switchboard.secretbox import SealedWithUnknownKey, SecretBox

__all__ = [
    "encode_record",
    "decode_record",
    "SourceFeed",
    "Held",
    "SourceWatcher",
    "Reconciled",
    "SourceReconciler",
]

logger = logging.getLogger(__name__)

RECORD_VERSION = 1
# JetStream's answers to a compare-and-set whose expected last sequence is not the key's.
_WRONG_LAST_SEQUENCE = (10071, 10164)
# Writers racing on one key: look again this many times, then leave it to reconciliation.
_CAS_ATTEMPTS = 3


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@overload
def _parsed_when(value: str) -> datetime: ...
@overload
def _parsed_when(value: str | None) -> datetime | None: ...
def _parsed_when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def encode_record(source: Source, box: SecretBox) -> bytes:
    """The bucket's record of a source: every field the webhook hot path needs, with its revision
    (its secrets sealed, as in PostgreSQL)."""
    return orjson.dumps({
        "v": RECORD_VERSION,
        "id": source.id,
        "revision": source.revision,
        "tenant_id": source.tenant_id,
        "name": source.name,
        "type": source.type,
        "config": source.config,
        "secret": box.seal(source.secret),
        "previous_secret": box.seal_optional(source.previous_secret),
        "previous_secret_expires_at": _when(source.previous_secret_expires_at),
        "created_at": _when(source.created_at),
        "allowed_ips": list(source.allowed_ips),
        "rate_per_s": source.rate_limit.rate_per_s if source.rate_limit else None,
        "rate_burst": source.rate_limit.burst if source.rate_limit else None,
        "disabled_at": _when(source.disabled_at),
    })


def decode_record(data: bytes, box: SecretBox) -> Source:
    """The source in a record, its secrets opened; ValueError when it is not one this code wrote."""
    try:
        record = orjson.loads(data)
        if record.get("v") != RECORD_VERSION:
            raise ValueError(f"unknown record version {record.get('v')!r}")
        rate = RateLimit(record["rate_per_s"], record["rate_burst"]) if record["rate_per_s"] else None
        return Source(
            id=record["id"], tenant_id=record["tenant_id"], name=record["name"], type=record["type"],
            config=record["config"], secret=box.open(record["secret"]),
            created_at=_parsed_when(record["created_at"]), allowed_ips=tuple(record["allowed_ips"]), rate_limit=rate,
            previous_secret=box.open_optional(record["previous_secret"]),
            previous_secret_expires_at=_parsed_when(record["previous_secret_expires_at"]),
            disabled_at=_parsed_when(record["disabled_at"]), revision=int(record["revision"]),
        )
    # orjson's decode error is a ValueError; a secret sealed with a master key this process lacks is unreadable too.
    except (KeyError, TypeError, AttributeError, ValueError, SealedWithUnknownKey) as exc:
        raise ValueError(f"not a source record: {type(exc).__name__}: {exc}") from None


# nats-py types an entry's value and revision Optional, but every entry it reads or watches has both.
def _sequence(entry: KeyValue.Entry) -> int:
    """The key's sequence in the stream."""
    return cast(int, entry.revision)


def _value(entry: KeyValue.Entry) -> bytes:
    return cast(bytes, entry.value)


def _wrong_last_sequence(exc: APIError) -> bool:
    return isinstance(exc, KeyWrongLastSequenceError) or exc.err_code in _WRONG_LAST_SEQUENCE


class SourceFeed:
    """Writes to the bucket: the SourceStore's change feed, and reconciliation's repairs.

    Every call fails fast while NATS is disconnected and gives up after
    ``timeout_s``, raising: the caller's change is committed in PostgreSQL,
    and reconciliation writes it later.
    """

    def __init__(self, nc: NATS, box: SecretBox, bucket: str = SOURCES_BUCKET, timeout_s: float = 2.0) -> None:
        self.nc = nc
        self.box = box
        self.js = nc.jetstream()
        self.bucket = bucket
        self.timeout_s = timeout_s
        self._kv: KeyValue | None = None

    async def _open(self) -> KeyValue:
        if not self.nc.is_connected:
            raise Unavailable("NATS is not connected")
        if self._kv is None:
            self._kv = await self.js.key_value(self.bucket)
        return self._kv

    async def publish(self, source: Source) -> None:
        """Write the source's record unless the bucket holds the same or a newer revision."""
        async with asyncio.timeout(self.timeout_s):
            kv = await self._open()
            for _ in range(_CAS_ATTEMPTS):
                held, last = await self._held(kv, source.id)
                if held is not None and held >= source.revision:
                    return
                try:
                    await kv.update(source.id, encode_record(source, self.box), last=last)
                    return
                except APIError as exc:
                    if not _wrong_last_sequence(exc):
                        raise
                    # Another writer came in between: look at what it wrote.
        raise RuntimeError(f"source {source.id} kept changing in the bucket; reconciliation will write it")

    async def retract(self, source_id: str) -> None:
        """Delete the source's key (its record is gone for every mirror)."""
        async with asyncio.timeout(self.timeout_s):
            await (await self._open()).delete(source_id)

    async def replace(self, source: Source, last: int) -> bool:
        """Reconciliation's write: PostgreSQL's record, if the key is still at sequence ``last``
        (0: never written); False when another write came first."""
        async with asyncio.timeout(self.timeout_s):
            try:
                await (await self._open()).update(source.id, encode_record(source, self.box), last=last)
            except APIError as exc:
                if _wrong_last_sequence(exc):
                    return False
                raise
        return True

    async def remove(self, source_id: str, last: int) -> bool:
        """Reconciliation's delete, if the key is still at sequence ``last``; False when another write came first."""
        async with asyncio.timeout(self.timeout_s):
            try:
                await (await self._open()).delete(source_id, last=last)
            except APIError as exc:
                if _wrong_last_sequence(exc):
                    return False
                raise
        return True

    async def _held(self, kv: KeyValue, key: str) -> tuple[int | None, int]:
        """The revision of the record held for ``key`` (None: none, or unreadable) and the key's last sequence."""
        try:
            entry = await kv.get(key)
        except KeyNotFoundError as exc:
            # A deleted key keeps a marker, whose sequence a write must name.
            return None, _sequence(exc.entry) if exc.entry is not None else 0
        try:
            return decode_record(_value(entry), self.box).revision, _sequence(entry)
        except ValueError:
            return None, _sequence(entry)


@dataclass(frozen=True)
class Held:
    """What the bucket holds for a key, as last watched."""

    sequence: int
    # The record's revision; None for a deleted key or a record that cannot be read.
    revision: int | None
    deleted: bool


class SourceWatcher:
    """Keeps a :class:`SourceMirror` equal to the bucket, for as long as the process runs.

    It reads the whole bucket (then ``mirror.loaded`` is true), then follows
    every change. When NATS comes back after a disconnection it reads the
    whole bucket again (the server may have been replaced); meanwhile the
    mirror keeps answering with what it has. Failures are retried with a
    growing delay, never raised: ``run`` returns only once ``stopping`` is set.
    """

    def __init__(self, nc: NATS, mirror: SourceMirror, box: SecretBox, bucket: str = SOURCES_BUCKET,
                 snapshot_timeout_s: float = 10.0) -> None:
        self.nc = nc
        self.mirror = mirror
        self.box = box
        self.bucket = bucket
        self.snapshot_timeout_s = snapshot_timeout_s
        # Whether the whole bucket has been read since the watch (re)started.
        self.synced = False
        # Set at each such read: reconciliation runs then.
        self.resynced = asyncio.Event()
        self._held: dict[str, Held] = {}

    def bucket_view(self) -> dict[str, Held]:
        """Every key the bucket held, as last watched."""
        return dict(self._held)

    async def run(self, stopping: asyncio.Event) -> None:
        await follow_bucket(self.nc, self.bucket, self, stopping, snapshot_timeout_s=self.snapshot_timeout_s)

    # BucketFollower: the whole bucket (again after NATS came back), then each change.
    def loaded(self, entries: list[KeyValue.Entry]) -> None:
        held: dict[str, Held] = {}
        sources: dict[str, Source] = {}
        for entry in entries:
            source = self._note(entry, held)
            if source is not None:
                sources[source.id] = source
            else:
                sources.pop(entry.key, None)
        self._held = held
        self.mirror.load(sources.values())
        self.synced = True
        self.resynced.set()
        logger.info("sources mirrored", extra={"sources": len(sources)})

    def changed(self, entry: KeyValue.Entry) -> None:
        source = self._note(entry, self._held)
        if source is not None:
            self.mirror.offer(source)
        else:
            self.mirror.forget(entry.key)

    def lost(self) -> None:
        # The mirror keeps answering with what it has; reconciliation waits for the next full read.
        self.synced = False

    def _note(self, entry: KeyValue.Entry, held: dict[str, Held]) -> Source | None:
        """Record what the bucket holds for the entry's key; the source in it, if any."""
        if entry.operation in (KV_DEL, KV_PURGE):
            held[entry.key] = Held(_sequence(entry), None, deleted=True)
            return None
        try:
            source = decode_record(_value(entry), self.box)
        except ValueError as exc:
            # Left to reconciliation to overwrite; the edges ask PostgreSQL for it meanwhile.
            logger.warning("unreadable source record", extra={"source_id": entry.key, "error": str(exc)})
            held[entry.key] = Held(_sequence(entry), None, deleted=False)
            return None
        if source.id != entry.key:
            logger.warning("source record under another id", extra={"source_id": entry.key})
            held[entry.key] = Held(_sequence(entry), None, deleted=False)
            return None
        held[entry.key] = Held(_sequence(entry), source.revision, deleted=False)
        return source


@dataclass(frozen=True)
class Reconciled:
    """What one round of reconciliation wrote: records put, keys deleted."""

    put: int
    deleted: int


class SourceReconciler:
    """Repairs the bucket from PostgreSQL, right after each (re)read of the bucket and every ``interval_s``."""

    def __init__(self, store: SourceStore, feed: SourceFeed, watcher: SourceWatcher, interval_s: float = 30.0) -> None:
        self.store = store
        self.feed = feed
        self.watcher = watcher
        self.interval_s = interval_s
        self._failing = False

    async def reconcile(self) -> Reconciled | None:
        """One round; None when it cannot run now (the bucket not read yet, PostgreSQL down).

        Raises when NATS fails during the round (what was written stays written).
        """
        if not self.watcher.synced:
            return None
        # The bucket's view first, PostgreSQL's list after: a record in the view was written after its
        # commit, so a source in the view but not in the list was deleted, never just created.
        view = self.watcher.bucket_view()
        try:
            revisions = await self.store.revisions()
        except Unavailable as exc:
            self._failed(exc)
            return None
        stale = [source_id for source_id, revision in revisions.items()
                 if source_id not in view or view[source_id].revision != revision]
        gone = [key for key, held in view.items() if not held.deleted and key not in revisions]
        put = deleted = 0
        if stale:
            try:
                current = await self.store.read(stale)
            except Unavailable as exc:
                self._failed(exc)
                return None
            for source in current:
                held = view.get(source.id)
                # Compare-and-set on what was seen: a write that came meanwhile (newer) is left alone.
                if await self.feed.replace(source, held.sequence if held else 0):
                    put += 1
        for key in gone:
            if await self.feed.remove(key, view[key].sequence):
                deleted += 1
        if self._failing:
            logger.info("sources reconciliation works again")
            self._failing = False
        return Reconciled(put, deleted)

    def _failed(self, exc: BaseException) -> None:
        log = logger.debug if self._failing else logger.warning
        log("sources reconciliation skipped; retrying later", extra={"error": f"{type(exc).__name__}: {exc}"})
        self._failing = True

    async def run(self, stopping: asyncio.Event) -> None:
        """Reconcile until ``stopping`` is set; never raises."""
        while not stopping.is_set():
            self.watcher.resynced.clear()
            try:
                outcome = await self.reconcile()
            except Exception as exc:  # NATS down mid-round: next round
                self._failed(exc)
                outcome = None
            if outcome is not None and (outcome.put or outcome.deleted):
                logger.info("sources bucket repaired", extra={"put": outcome.put, "deleted": outcome.deleted})
            # Jittered, so processes started together do not reconcile in step.
            await _first_of([stopping, self.watcher.resynced], self.interval_s * random.uniform(0.8, 1.2))


async def _first_of(events: Iterable[asyncio.Event], timeout_s: float) -> None:
    """Return when any of ``events`` is set, or after ``timeout_s``."""
    waits: list[asyncio.Task[Any]] = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
