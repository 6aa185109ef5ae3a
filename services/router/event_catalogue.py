"""The tenant's catalogue of event types: what each type means, its payload's JSON Schema and an
example, whether POST /v1/events validates against it, and the retry schedule its deliveries carry.

The rules (names, schemas, examples, schedules) are checked here when a type is saved, so the edge
that validates payloads and the delivery worker that applies a schedule never meet a bad one. The
store keeps the types in PostgreSQL (``router.event_types``) and, for the router's hot path, a short
per-tenant cache of their schedules (a change shows within a second in every router process, at
once in the one that made it).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from collections.abc import Iterator, Mapping

import orjson
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, best_match
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from switchboard.errors import Conflict, InvalidRequest, NotFound

__all__ = ["EventType", "RetrySchedule", "EventCatalogue", "check_name", "check_schema", "check_example",
           "validator_of", "payload_problem", "attempts_within", "DEFAULT_BACKOFF", "MAX_SCHEMA_BYTES",
           "MAX_EXAMPLE_BYTES", "MAX_TYPES", "DEFAULT_LIMIT", "MAX_LIMIT", "PAGE_BYTES"]

MAX_NAME = 200
MAX_DESCRIPTION = 2000
# Of the compact JSON text: the edge keeps every validating schema of a tenant compiled.
MAX_SCHEMA_BYTES = 64 * 1024
MAX_EXAMPLE_BYTES = 64 * 1024
# A tenant's types: the edge loads every validating one.
MAX_TYPES = 1000
# A schema's regular expressions run on the edge for every event of the type.
MAX_PATTERN = 1000
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
# A page of ListEventTypes ends after about this much schema and example text (gRPC answers stay
# far below the 4 MiB a client takes by default).
PAGE_BYTES = 1024 * 1024
# The platform's backoff (services/delivery/retry.py's RetryPolicy): what a schedule's omitted fields take.
DEFAULT_BACKOFF = {"initial_delay_seconds": 5.0, "max_delay_seconds": 3600.0, "multiplier": 2.0}
MAX_ATTEMPTS = 1000
# Each field of a schedule: (lowest, highest, whole number).
_RETRY_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "max_attempts": (1, MAX_ATTEMPTS, True),
    "retry_for_seconds": (1, 30 * 86400, False),
    "initial_delay_seconds": (0.01, 86400, False),
    "max_delay_seconds": (0.01, 7 * 86400, False),
    "multiplier": (1, 10, False),
}
# Where a glob, a path or a space would make the name ambiguous in routes' patterns or in the URL.
_NOT_IN_NAMES = re.compile(r"[\s/*?\[\]]")
# Keywords whose values are data, not subschemas: a "$ref" in an enum is just a value.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples", "example"})


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME or not name.isprintable() \
            or _NOT_IN_NAMES.search(name):
        raise InvalidRequest(f"{field}: an event type's name is 1 to {MAX_NAME} printable characters without "
                             "spaces, / or the glob characters * ? [ ]", field=field)
    return name


def _json_size(value: Any) -> int:
    return len(orjson.dumps(value))


def _subschemas(schema: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every object of a schema that may be a (sub)schema, with where it is; data keywords left out."""
    if isinstance(schema, Mapping):
        yield path, schema
        for key, value in schema.items():
            if key not in _DATA_KEYWORDS:
                yield from _subschemas(value, (*path, key))
    elif isinstance(schema, list):
        for n, value in enumerate(schema):
            yield from _subschemas(value, (*path, n))


def _where(prefix: str, path: tuple[str | int, ...] | Any) -> str:
    out = prefix
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validator_of(schema: Mapping[str, Any]) -> Any:
    """A validator for a checked schema: its ``$schema``'s draft, Draft 2020-12 when it names none."""
    return validators.validator_for(schema, default=Draft202012Validator)(schema)


def check_schema(schema: Any, field: str = "schema") -> dict[str, Any]:
    """A JSON Schema the edge can apply to every event of its type; InvalidRequest naming what is wrong."""
    if not isinstance(schema, Mapping):
        raise InvalidRequest(f"{field}: must be a JSON object (a JSON Schema)", field=field)
    schema = dict(schema)
    if _json_size(schema) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(f"{field}: must be at most {MAX_SCHEMA_BYTES // 1024} KiB as JSON", field=field)
    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequest(f"{_where(field, exc.absolute_path)}: {_short(exc.message)}", field=field) from None
    refs: list[tuple[tuple[str | int, ...], str]] = []
    for path, sub in _subschemas(schema):
        if path and "$id" in sub and isinstance(sub["$id"], str):
            raise InvalidRequest(f"{_where(field, path)}.$id: only the schema itself may have an $id", field=field)
        for keyword in ("$ref", "$dynamicRef"):
            if isinstance(sub.get(keyword), str):
                refs.append(((*path, keyword), sub[keyword]))
        if isinstance(sub.get("pattern"), str) and len(sub["pattern"]) > MAX_PATTERN:
            raise InvalidRequest(f"{_where(field, (*path, 'pattern'))}: at most {MAX_PATTERN} characters",
                                 field=field)
        if isinstance(sub.get("patternProperties"), Mapping) and any(
                len(p) > MAX_PATTERN for p in sub["patternProperties"]):
            raise InvalidRequest(f"{_where(field, (*path, 'patternProperties'))}: patterns of at most "
                                 f"{MAX_PATTERN} characters", field=field)
    if refs:
        resource = Resource.from_contents(schema, default_specification=DRAFT202012)
        resolver = Registry().with_resource(resource.id() or "", resource).resolver(base_uri=resource.id() or "")
        for path, ref in refs:
            # Nothing is ever fetched: a reference points inside the schema, and must find something there.
            if not ref.startswith("#"):
                raise InvalidRequest(f"{_where(field, path)}: must point inside the schema (#/$defs/...)",
                                     field=field)
            try:
                resolver.lookup(ref)
            except Unresolvable:
                raise InvalidRequest(f"{_where(field, path)}: {ref} points at nothing in the schema",
                                     field=field) from None
    return schema


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _short(text: str, limit: int = 300) -> str:
    """An error message of bounded length (jsonschema's quote whole instances)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def payload_problem(validator: Any, payload: Any, field: str) -> str | None:
    """What is wrong with ``payload`` under the validator, as ``<field>.<path>: <problem>``; None: valid."""
    error = best_match(validator.iter_errors(payload))
    if error is None:
        return None
    return f"{_where(field, error.absolute_path)}: {_short(error.message)}"


def check_example(example: Any, schema: Mapping[str, Any] | None, field: str = "example") -> Any:
    if example is None:
        return None
    if _json_size(example) > MAX_EXAMPLE_BYTES:
        raise InvalidRequest(f"{field}: must be at most {MAX_EXAMPLE_BYTES // 1024} KiB as JSON", field=field)
    if schema is not None:
        problem = payload_problem(validator_of(schema), example, field)
        if problem is not None:
            raise InvalidRequest(f"{problem} (the example must be valid against the schema)", field=field)
    return example


def attempts_within(retry_for_s: float, initial_s: float, max_delay_s: float, multiplier: float) -> int:
    """The attempts whose nominal start (backoff without jitter) is at most ``retry_for_s`` after the first;
    one past :data:`MAX_ATTEMPTS` when the window holds more."""
    attempts, elapsed, delay = 1, 0.0, initial_s
    while attempts <= MAX_ATTEMPTS:
        step = min(delay, max_delay_s)
        if elapsed + step > retry_for_s:
            break
        elapsed += step
        attempts += 1
        delay *= multiplier
    return attempts


@dataclass(frozen=True)
class RetrySchedule:
    """How often and how long an event type's deliveries are tried, as given (unset: not given)."""

    max_attempts: int | None = None
    retry_for_seconds: float | None = None
    initial_delay_seconds: float | None = None
    max_delay_seconds: float | None = None
    multiplier: float | None = None

    @classmethod
    def parse(cls, given: Any, field: str = "retry") -> RetrySchedule | None:
        """A checked schedule (None: none); InvalidRequest naming the field at fault."""
        if given is None:
            return None
        if not isinstance(given, Mapping):
            raise InvalidRequest(f"{field}: must be a JSON object", field=field)
        unknown = sorted(set(given) - set(_RETRY_BOUNDS))
        if unknown:
            raise InvalidRequest(f"{field}.{unknown[0]}: unknown field (takes {', '.join(_RETRY_BOUNDS)})",
                                 field=f"{field}.{unknown[0]}")
        values: dict[str, Any] = {}
        for name, (low, high, whole) in _RETRY_BOUNDS.items():
            value = given.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    whole and not float(value).is_integer()) or not low <= value <= high:
                kind = "a whole number" if whole else "a number"
                raise InvalidRequest(f"{field}.{name}: must be {kind} from {_number(low)} to {_number(high)}",
                                     field=f"{field}.{name}")
            values[name] = int(value) if whole else float(value)
        schedule = cls(**values)
        if schedule.max_attempts is None and schedule.retry_for_seconds is None:
            raise InvalidRequest(f"{field}: give max_attempts, retry_for_seconds or both", field=field)
        effective = schedule.effective()
        if effective["initial_delay_seconds"] > effective["max_delay_seconds"]:
            raise InvalidRequest(f"{field}.initial_delay_seconds: must be at most max_delay_seconds "
                                 f"({effective['max_delay_seconds']:g})", field=f"{field}.initial_delay_seconds")
        if effective["max_attempts"] > MAX_ATTEMPTS:
            raise InvalidRequest(f"{field}.retry_for_seconds: takes more than {MAX_ATTEMPTS} attempts with this "
                                 "backoff; raise max_delay_seconds or give max_attempts",
                                 field=f"{field}.retry_for_seconds")
        return schedule

    def to_json(self) -> dict[str, Any]:
        """The fields given."""
        return {name: getattr(self, name) for name in _RETRY_BOUNDS if getattr(self, name) is not None}

    def effective(self) -> dict[str, Any]:
        """What each delivery of the type carries: every backoff field, and max_attempts (the fewer of the
        given one and those retry_for_seconds holds). retry_for_seconds, when given, stays for a worker
        that also bounds the time itself (jitter and Retry-After move the nominal schedule)."""
        backoff = {name: getattr(self, name) if getattr(self, name) is not None else default
                   for name, default in DEFAULT_BACKOFF.items()}
        limits = [self.max_attempts] if self.max_attempts is not None else []
        if self.retry_for_seconds is not None:
            limits.append(attempts_within(self.retry_for_seconds, backoff["initial_delay_seconds"],
                                          backoff["max_delay_seconds"], backoff["multiplier"]))
        return {"max_attempts": min(limits), **backoff, "retry_for_seconds": self.retry_for_seconds}


@dataclass(frozen=True)
class EventType:
    tenant_id: str
    name: str
    description: str
    # None: none given.
    schema: dict[str, Any] | None
    example: Any
    deprecated: bool
    validate: bool
    retry: RetrySchedule | None
    revision: int
    created_at: datetime
    updated_at: datetime


# What a field of a type is when it is cleared (named in an update without a value).
CLEARED: dict[str, Any] = {"description": "", "schema": None, "example": None, "deprecated": False,
                           "validate": False, "retry": None}


def _checked(draft: EventType) -> EventType:
    """The type as a whole against the rules; InvalidRequest naming the first field at fault."""
    check_name(draft.name)
    if not isinstance(draft.description, str) or len(draft.description) > MAX_DESCRIPTION:
        raise InvalidRequest(f"description: at most {MAX_DESCRIPTION} characters", field="description")
    schema = check_schema(draft.schema) if draft.schema is not None else None
    check_example(draft.example, schema)
    if draft.validate and schema is None:
        raise InvalidRequest("validate: a type validates payloads against its schema: give one", field="validate")
    return replace(draft, schema=schema)


def _event_type(row: Mapping[str, Any]) -> EventType:
    return EventType(
        tenant_id=row["tenant_id"], name=row["name"], description=row["description"],
        schema=orjson.loads(row["schema"]) if row["schema"] is not None else None,
        example=orjson.loads(row["example"]) if row["example"] is not None else None,
        deprecated=row["deprecated"], validate=row["validate"],
        retry=RetrySchedule(**row["retry"]) if row["retry"] is not None else None,
        revision=row["revision"], created_at=row["created_at"], updated_at=row["updated_at"])


def _columns(t: EventType) -> dict[str, Any]:
    return {"description": t.description,
            "schema": orjson.dumps(t.schema).decode() if t.schema is not None else None,
            "example": orjson.dumps(t.example).decode() if t.example is not None else None,
            "deprecated": t.deprecated, "validate": t.validate,
            "retry": Jsonb(t.retry.to_json()) if t.retry is not None else None}


class EventCatalogue:
    def __init__(self, pool: AsyncConnectionPool[Any], cache_ttl_s: float = 1.0) -> None:
        self.pool = pool
        # Every routed event asks for its type's schedule: a short cache keeps that off the database.
        self.cache_ttl_s = cache_ttl_s
        self._schedules: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}

    async def create(self, tenant_id: str, fields: Mapping[str, Any]) -> EventType:
        """A new type from its fields (name; description, schema, example, deprecated, validate, retry)."""
        given = {**CLEARED, **fields}
        draft = _checked(EventType(
            tenant_id=tenant_id, name=check_name(given.get("name")), description=given["description"] or "",
            schema=given["schema"], example=given["example"], deprecated=bool(given["deprecated"]),
            validate=bool(given["validate"]), retry=RetrySchedule.parse(given["retry"]), revision=1,
            created_at=datetime.min, updated_at=datetime.min))
        values = _columns(draft)
        self._schedules.pop(tenant_id, None)
        async with self.pool.connection() as conn:
            # The cap is counted in the same statement (two racing creates may pass it by one).
            cur = await conn.execute(
                f"""INSERT INTO router.event_types (tenant_id, name, {", ".join(values)})
                    SELECT %(tenant)s, %(name)s, {", ".join(f"%({n})s" for n in values)}
                    WHERE (SELECT count(*) FROM router.event_types WHERE tenant_id = %(tenant)s) < %(cap)s
                    ON CONFLICT (tenant_id, name) DO NOTHING RETURNING *""",
                {**values, "tenant": tenant_id, "name": draft.name, "cap": MAX_TYPES})
            row = await cur.fetchone()
        if row is not None:
            return _event_type(row)
        try:
            await self.get(tenant_id, draft.name)
        except NotFound:
            raise InvalidRequest(f"name: a catalogue holds at most {MAX_TYPES} event types", field="name") from None
        raise Conflict(f"event type {draft.name} already exists")

    async def update(self, tenant_id: str, name: str, changes: Mapping[str, Any]) -> EventType:
        """The type with ``changes`` (field -> new value; None clears one), checked again as a whole."""
        unknown = sorted(set(changes) - set(CLEARED))
        if unknown:
            raise InvalidRequest(f"{unknown[0]}: cannot be changed (an update takes {', '.join(CLEARED)})",
                                 field=unknown[0])
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT * FROM router.event_types WHERE tenant_id = %s AND name = %s FOR UPDATE", (tenant_id, name))
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"event type {name} not found")
            current = _event_type(row)
            if not changes:
                return current
            given = {k: CLEARED[k] if v is None else v for k, v in changes.items()}
            if "retry" in given:
                given["retry"] = RetrySchedule.parse(given["retry"])
            for flag in ("deprecated", "validate"):
                if flag in given:
                    given[flag] = bool(given[flag])
            values = _columns(_checked(replace(current, **given)))
            cur = await conn.execute(
                f"""UPDATE router.event_types SET {"".join(f"{n} = %({n})s, " for n in values)}
                        revision = revision + 1, updated_at = now()
                    WHERE tenant_id = %(tenant)s AND name = %(name)s RETURNING *""",
                {**values, "tenant": tenant_id, "name": name})
            updated = _event_type(await cur.fetchone())
        self._schedules.pop(tenant_id, None)
        return updated

    async def get(self, tenant_id: str, name: str) -> EventType:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM router.event_types WHERE tenant_id = %s AND name = %s",
                                     (tenant_id, name))
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"event type {name} not found")
        return _event_type(row)

    async def delete(self, tenant_id: str, name: str) -> None:
        self._schedules.pop(tenant_id, None)
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM router.event_types WHERE tenant_id = %s AND name = %s",
                                     (tenant_id, name))
        if cur.rowcount == 0:
            raise NotFound(f"event type {name} not found")

    async def page(self, tenant_id: str, deprecated: str = "include", validate: bool | None = None,
                   cursor: str | None = None, limit: int = DEFAULT_LIMIT) -> tuple[list[EventType], str | None]:
        """A page of the catalogue by name, after ``cursor`` (the previous page's last name), and the next
        page's cursor (None: the last page). A page ends early after :data:`PAGE_BYTES` of schemas and
        examples, never before its first type."""
        if deprecated not in ("include", "exclude", "only"):
            raise InvalidRequest("deprecated: must be one of include, exclude, only", field="deprecated")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit: must be 1 to {MAX_LIMIT}", field="limit")
        where = ["tenant_id = %(tenant)s"]
        if cursor is not None:
            where.append("name > %(cursor)s")
        if deprecated != "include":
            where.append("deprecated" if deprecated == "only" else "NOT deprecated")
        if validate is not None:
            where.append("validate" if validate else "NOT validate")
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"""SELECT * FROM (
                        SELECT *, row_number() OVER w AS n, count(*) OVER () AS total,
                               sum(coalesce(octet_length(schema), 0) + coalesce(octet_length(example), 0)) OVER w
                                   AS bytes
                        FROM router.event_types WHERE {" AND ".join(where)}
                        WINDOW w AS (ORDER BY name)) listed
                    WHERE n <= %(limit)s AND (n = 1 OR bytes <= %(page_bytes)s) ORDER BY name""",
                {"tenant": tenant_id, "cursor": cursor, "limit": limit, "page_bytes": PAGE_BYTES})
            rows = await cur.fetchall()
        types = [_event_type(row) for row in rows]
        more = bool(rows) and rows[0]["total"] > len(rows)
        return types, types[-1].name if more else None

    async def schedules(self, tenant_id: str) -> Mapping[str, dict[str, Any]]:
        """The tenant's types that have a retry schedule: name -> the schedule their deliveries carry
        (:meth:`RetrySchedule.effective`), at most ``cache_ttl_s`` old."""
        now = time.monotonic()
        cached = self._schedules.get(tenant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT name, retry FROM router.event_types WHERE tenant_id = %s AND retry IS NOT NULL", (tenant_id,))
            found = {row["name"]: RetrySchedule(**row["retry"]).effective() for row in await cur.fetchall()}
        if len(self._schedules) > 10_000:
            self._schedules.clear()
        self._schedules[tenant_id] = (now + self.cache_ttl_s, found)
        return found
