"""PostgreSQL: the async connection pool and per-schema SQL migrations.

Each service owns one schema and keeps its migrations as numbered plain SQL
files (``services/<name>/migrations/0001_init.sql``); reading them tells the
data model. :func:`apply_migrations` applies the missing ones in order, each in
its own transaction, under an advisory lock so that several processes starting
at once apply each file exactly once.
"""

from __future__ import annotations

import contextlib

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from switchboard.errors import InvalidRequest, SwitchboardError, Unavailable

__all__ = [
    "atomically",
    "DatabaseUnavailable",
    "Migration",
    "apply_migrations",
    "as_platform_error",
    "contains_nul",
    "describe_dsn",
    "describe_error",
    "each_alone_on_bad_data",
    "jsonb",
    "load_migrations",
    "open_pool",
    "storable_json",
    "storable_text",
]

logger = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class DatabaseUnavailable(Unavailable):
    """PostgreSQL cannot be reached; the message names the server, never a password."""

    code = "database_unavailable"


@overload
def storable_text(value: str) -> str: ...
@overload
def storable_text(value: None) -> None: ...
@overload
def storable_text(value: str | None) -> str | None: ...
def storable_text(value: str | None) -> str | None:
    """``value`` without NUL characters, which PostgreSQL's text and jsonb cannot hold.

    For text that comes from outside (a receiver's answer, an error message):
    one such character must not fail the statement it travels in.
    """
    return value.replace("\x00", "") if value and "\x00" in value else value


def _dumps(value: Any) -> bytes:
    # Non-text keys become text, as the standard library's json does.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def jsonb(value: Any) -> Jsonb:
    """A jsonb parameter encoded with orjson (the hot paths' JSON: several times the stdlib's speed)."""
    return Jsonb(value, dumps=_dumps)


T = TypeVar("T")
R = TypeVar("R")


async def each_alone_on_bad_data(run: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
                                 items: Sequence[T]) -> list[R | Exception]:
    """``run(items)``; if the batch holds data PostgreSQL refuses, each item again on its own,
    so one bad row fails only its own caller (who gets the error as its result)."""
    try:
        return list(await run(items))
    except psycopg.DataError:
        if len(items) == 1:
            raise
    results: list[R | Exception] = []
    for item in items:
        try:
            results.extend(await run([item]))
        except psycopg.DataError as exc:
            results.append(exc)
    return results


def describe_error(exc: BaseException) -> str:
    """A log-safe description: PostgreSQL's messages can quote the data (payloads,
    secrets) in their detail and context, so only the primary message is kept."""
    if isinstance(exc, psycopg.Error):
        primary = exc.diag.message_primary if exc.diag else None
        return f"{type(exc).__name__}: {primary or 'database error'}"
    return f"{type(exc).__name__}: {exc}"[:300]


def contains_nul(value: Any) -> bool:
    """True when a JSON value holds a NUL character, which PostgreSQL text and jsonb cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(v) for v in value)
    return False


def storable_json(value: Any) -> Any:
    """A JSON value with every NUL character removed (from keys and strings), rebuilt only when it holds one.

    For a message stored after it was sent (an AI-drafted reply, say): a NUL
    must not make its record fail, or the delivery would be sent again and again.
    """
    if not contains_nul(value):
        return value
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {storable_json(k): storable_json(v) for k, v in value.items()}
    return [storable_json(v) for v in value]


def as_platform_error(exc: BaseException) -> SwitchboardError | None:
    """The platform error a database failure means for the caller, if it has one."""
    if isinstance(exc, psycopg.DataError):
        return InvalidRequest("the request holds characters or values that cannot be stored")
    if isinstance(exc, (psycopg.OperationalError, PoolTimeout, PoolClosed)):
        return DatabaseUnavailable("the database is unavailable; retry later")
    return None


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a connection string, without user or password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable database URL>"
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = parts.get("port") or "5432"
    return f"{host}:{port}/{parts.get('dbname') or ''}"


async def open_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0,
                    application_name: str | None = None, wait: bool = True) -> AsyncConnectionPool:
    """Open a pool, failing fast with a clear message when the server is down.

    ``application_name`` names the pool's sessions in ``pg_stat_activity`` (and
    in PostgreSQL's logs): which service a query or a lock belongs to. With
    ``wait=False`` the pool opens at once whether the server is up or not, and
    connects in the background (each use meanwhile fails as unavailable).
    """
    if wait:
        try:
            # One direct attempt first: the pool would otherwise retry quietly
            # until its timeout and then report nothing useful.
            conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=max(1, int(timeout)))
            await conn.close()
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {describe_dsn(dsn)}: {reason}") from None
    pool = AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"autocommit": True, "row_factory": dict_row,
                **({"application_name": application_name} if application_name else {})},
        timeout=timeout,
    )
    await pool.open(wait=wait, timeout=timeout)
    return pool


def atomically(conn: psycopg.AsyncConnection, statements: int):
    """What makes ``statements`` statements commit together on an autocommit connection.

    One statement is atomic by itself: wrapping it in BEGIN and COMMIT would
    only add two round trips (and a backend's CPU for each) to every batch,
    which at low rates is every event.
    """
    return conn.transaction() if statements > 1 else contextlib.nullcontext()


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path) -> list[Migration]:
    """The migrations in ``directory``, ordered; a misnamed or repeated file is an error."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise ValueError(f"two migrations share version {version} in {directory}")
        migrations[version] = Migration(version, match.group(2), path.read_text())
    return [migrations[v] for v in sorted(migrations)]


async def apply_migrations(pool: AsyncConnectionPool[Any], schema: str, directory: Path) -> list[int]:
    """Apply the missing migrations of ``schema``; returns the versions applied now."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        raise ValueError(f"bad schema name {schema!r}")
    migrations = load_migrations(directory)
    applied_now: list[int] = []
    async with pool.connection() as conn:
        # Session-level lock: held across the per-file transactions below.
        await conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"switchboard.migrations.{schema}",))
        try:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                        version integer PRIMARY KEY,
                        name text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            cur = await conn.execute(f"SELECT version FROM {schema}.schema_migrations")
            done = {row["version"] for row in await cur.fetchall()}
            for migration in migrations:
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL search_path TO {schema}")
                    await conn.execute(migration.sql)
                    await conn.execute(
                        f"INSERT INTO {schema}.schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                logger.info("migration applied", extra={"schema": schema, "version": migration.version})
                applied_now.append(migration.version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"switchboard.migrations.{schema}",))
    return applied_now
