"""Listing and searching a tenant's stored events (no gRPC, no HTTP).

Events come newest first, by ``(received_at, id)``, a page at a time: the
cursor names the last event of a page, and the next page starts strictly
after it (keyset pagination), so events stored meanwhile never shift a page
(no gaps, no repeats). Filters: source, a type glob (the globs of routes'
``event_types``), a ``received_at`` range, the routing outcome (``status``),
the AI category of the explained decision and a route that matched. An event's status is decided
by the router when it stores the event (see migration 0005): ``routed``,
``unrouted`` or ``dropped``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, UTC
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from switchboard.errors import InvalidRequest
from switchboard.patterns import check_type_patterns, compiled_patterns

__all__ = ["STATUSES", "MAX_LIMIT", "DEFAULT_LIMIT", "EventQuery", "EventSummary", "EventPage", "EventSearch",
           "glob_to_regex"]

STATUSES = ("routed", "unrouted", "dropped")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class EventQuery:
    """What to list; every filter optional. ``until`` is exclusive."""

    source_id: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: str | None = None
    category: str | None = None
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT
    # Only events this route matched.
    route_id: str | None = None

    def check(self) -> None:
        """InvalidRequest naming the first bad field."""
        for name in ("source_id", "category", "route_id"):
            value = getattr(self, name)
            if value is not None and (not value or len(value) > 200 or not value.isprintable()):
                raise InvalidRequest(f"{name}: must be 1 to 200 printable characters")
        if self.type is not None:
            try:
                check_type_patterns([self.type])
                compiled_patterns((self.type,))
            except (InvalidRequest, IndexError, ValueError):
                raise InvalidRequest("type: must be an event type glob of 1 to 200 printable characters, "
                                     "like invoice.*") from None
        if self.status is not None and self.status not in STATUSES:
            raise InvalidRequest(f"status: must be one of {', '.join(STATUSES)}")
        if self.since is not None and self.until is not None and self.until < self.since:
            raise InvalidRequest("until: must not be before since")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}")

    def _binding(self, tenant_id: str) -> bytes:
        """What a cursor is bound to: the tenant and the filters (not the page size)."""
        return orjson.dumps([tenant_id, self.source_id, self.type, _micros(self.since), _micros(self.until),
                             self.status, self.category, self.route_id])


@dataclass(frozen=True)
class EventSummary:
    """One event as listed: what it is and what became of it (the payload is in the event itself)."""

    id: str
    tenant_id: str
    source_id: str
    source_type: str
    type: str
    provider_event_id: str | None
    conversation_key: str | None
    received_at: datetime
    occurred_at: datetime | None
    # When the router decided (stored the event with its decision).
    routed_at: datetime
    status: str
    category: str | None
    # Deliveries planned by the decision.
    deliveries: int


@dataclass(frozen=True)
class EventPage:
    events: list[EventSummary]
    # The cursor of the next page; "" on the last.
    next_cursor: str


def _micros(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _MICROSECOND


def _encode_cursor(tenant_id: str, query: EventQuery, last: EventSummary) -> str:
    position = [_micros(last.received_at), last.id]
    return base64.urlsafe_b64encode(orjson.dumps([*position, _check(tenant_id, query, position)])).decode().rstrip("=")


def _check(tenant_id: str, query: EventQuery, position: list[Any]) -> str:
    # Not a secret (the listing is tenant-scoped whatever the cursor says): it
    # makes an edited cursor, or one from another tenant or other filters, an
    # error instead of a silently different page.
    return hashlib.sha256(query._binding(tenant_id) + orjson.dumps(position)).hexdigest()[:24]


def _decode_cursor(tenant_id: str, query: EventQuery, cursor: str) -> tuple[datetime, str]:
    invalid = InvalidRequest("cursor: not one this listing gave (for these filters); start again without it")
    if len(cursor) > 512:
        raise invalid
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise invalid from None
    if not (isinstance(raw, list) and len(raw) == 3 and type(raw[0]) is int and isinstance(raw[1], str)
            and 0 < len(raw[1]) <= 200 and raw[1].isprintable() and isinstance(raw[2], str)):
        raise invalid
    if not hmac.compare_digest(raw[2], _check(tenant_id, query, raw[:2])):
        raise invalid
    try:
        return _EPOCH + raw[0] * _MICROSECOND, raw[1]
    except OverflowError:
        raise invalid from None


def _escaped(char: str) -> str:
    # In PostgreSQL's regular expressions (AREs), a backslash before a
    # character that is not alphanumeric stands for that character, inside a
    # bracket expression too.
    return "\\" + char if char.isascii() and not char.isalnum() else char


def _bracket(pattern: str, start: int, end: int) -> str:
    """``pattern[start:end]``, the inside of a ``[...]``, as fnmatch reads it (ranges, ``!``
    negation, empty ranges dropped), written for PostgreSQL."""
    if "-" not in pattern[start:end]:
        chunks = [pattern[start:end]]
    else:
        chunks = []
        i = start
        k = start + 2 if pattern[start] == "!" else start + 1
        while True:
            k = pattern.find("-", k, end)
            if k < 0:
                break
            chunks.append(pattern[i:k])
            i = k + 1
            k = k + 3
        chunk = pattern[i:end]
        if chunk:
            chunks.append(chunk)
        else:
            chunks[-1] += "-"
        for k in range(len(chunks) - 1, 0, -1):
            if chunks[k - 1][-1] > chunks[k][0]:
                chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
                del chunks[k]
    negated = bool(chunks[0]) and chunks[0][0] == "!"
    if negated:
        chunks[0] = chunks[0][1:]
    body = "-".join("".join(_escaped(c) for c in chunk) for chunk in chunks)
    if not body:
        return "." if negated else "(?!)"  # fnmatch: "[!]" is any character, "[]" none
    return f"[{'^' if negated else ''}{body}]"


def glob_to_regex(pattern: str) -> str:
    """The PostgreSQL regular expression matching exactly what :func:`switchboard.patterns.matches_any`
    matches for this one glob (fnmatch's ``*``, ``?``, ``[seq]``, ``[!seq]``; whole type, case-sensitive)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append("\\[")
            else:
                out.append(_bracket(pattern, i, j))
                i = j + 1
        else:
            out.append(_escaped(c))
    return "^" + "".join(out) + "$"


_COLUMNS = """id, tenant_id, source_id, source_type, type, provider_event_id, conversation_key, received_at,
              occurred_at, stored_at AS routed_at, status, category,
              CASE WHEN jsonb_typeof(routing->'deliveries') = 'array'
                   THEN jsonb_array_length(routing->'deliveries') ELSE 0 END AS deliveries"""


class EventSearch:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def page(self, tenant_id: str, query: EventQuery) -> EventPage:
        """A page of the tenant's events, newest first, and the cursor of the next one.

        InvalidRequest (naming the field) for a bad filter, limit or cursor.
        """
        statement, params = self.statement(tenant_id, query)
        async with self.pool.connection() as conn:
            cur = await conn.execute(statement, params)
            rows = await cur.fetchall()
        events = [EventSummary(**row) for row in rows[:query.limit]]
        more = len(rows) > query.limit
        return EventPage(events, _encode_cursor(tenant_id, query, events[-1]) if more else "")

    def statement(self, tenant_id: str, query: EventQuery) -> tuple[str, list[Any]]:
        """The query of :meth:`page` (one row more than the page, to know whether another follows)."""
        query.check()
        clauses = ["tenant_id = %s"]
        params: list[Any] = [tenant_id]
        for column in ("source_id", "status", "category"):
            value = getattr(query, column)
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if query.route_id is not None:
            # The explained decision names every route that matched (Plan.explain).
            clauses.append("routing->'routes' @> %s::jsonb")
            params.append(orjson.dumps([{"route_id": query.route_id, "matched": True}]).decode())
        if query.type is not None:
            clauses.append("type ~ %s")
            params.append(glob_to_regex(query.type))
        if query.since is not None:
            clauses.append("received_at >= %s")
            params.append(query.since)
        if query.until is not None:
            clauses.append("received_at < %s")
            params.append(query.until)
        if query.cursor:
            received_at, last_id = _decode_cursor(tenant_id, query, query.cursor)
            clauses.append("(received_at, id) < (%s, %s)")
            params += [received_at, last_id]
        return (f"""SELECT {_COLUMNS} FROM router.events WHERE {" AND ".join(clauses)}
                    ORDER BY received_at DESC, id DESC LIMIT %s""", [*params, query.limit + 1])
