"""The event-type catalogue against real PostgreSQL: the rules a type is saved under (names, schemas,
examples, retry schedules), updates checked as a whole, tenants kept apart, pages by name and by size,
and the schedules the router stamps on each delivery; and the router queueing a type's schedule with
its deliveries over real JetStream."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.router import event_catalogue
from services.router.consumer import EventRouter
from services.router.dispatch import Dispatcher
from services.router.event_catalogue import EventCatalogue, RetrySchedule, attempts_within
from services.router.event_store import EventStore
from services.router.replies import ReplyStore
from services.router.route_store import RouteStore
from services.router.routing import parse_route_spec
from services.router.templates import TemplateStore
from switchboard.bus import Bus
from switchboard.database import apply_migrations
from switchboard.errors import Conflict, InvalidRequest, NotFound
from switchboard.events import DeliveryMessage, Event
from switchboard.ids import new_id
from switchboard.messaging import decode, ensure_streams
from switchboard.settings import Settings
from tests.services.router.endpoint_types import NO_FILTERS
from tests.services.router.no_ai import NO_AI

MIGRATIONS = Path(__file__).parents[3] / "services/router/migrations"

INVOICE_SCHEMA = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "object", "required": ["amount"],
                            "properties": {"amount": {"type": "integer", "minimum": 0},
                                           "currency": {"$ref": "#/$defs/currency"}}}},
    "$defs": {"currency": {"type": "string", "pattern": "^[A-Z]{3}$"}},
}
INVOICE_EXAMPLE = {"data": {"amount": 4900, "currency": "EUR"}}


@pytest.fixture
async def catalogue(pool) -> EventCatalogue:
    await apply_migrations(pool, "router", MIGRATIONS)
    return EventCatalogue(pool)


def refused(exc: pytest.ExceptionInfo[InvalidRequest], field: str, *words: str) -> None:
    assert exc.value.field == field, (exc.value.field, exc.value.message)
    assert exc.value.message.startswith(field.split(".")[0]), exc.value.message
    for word in words:
        assert word in exc.value.message, (word, exc.value.message)


async def test_a_type_is_kept_with_its_schema_example_and_schedule_and_read_back_exactly(catalogue) -> None:
    created = await catalogue.create("t1", {
        "name": "invoice.paid", "description": "An invoice was paid in full.", "schema": INVOICE_SCHEMA,
        "example": INVOICE_EXAMPLE, "validate": True, "retry": {"retry_for_seconds": 3 * 86400}})
    assert (created.name, created.revision, created.validate, created.deprecated) == ("invoice.paid", 1, True, False)
    got = await catalogue.get("t1", "invoice.paid")
    assert got == created
    # The schema keeps its keys in the order given (jsonb would sort them).
    assert list(got.schema) == list(INVOICE_SCHEMA) and got.schema == INVOICE_SCHEMA
    assert got.example == INVOICE_EXAMPLE
    assert got.retry == RetrySchedule(retry_for_seconds=259200.0)

    with pytest.raises(Conflict):
        await catalogue.create("t1", {"name": "invoice.paid"})
    # Another tenant's catalogue is its own: same name, no clash, and neither sees the other's.
    theirs = await catalogue.create("t2", {"name": "invoice.paid", "description": "theirs"})
    assert theirs.description == "theirs" and (await catalogue.get("t1", "invoice.paid")).description != "theirs"
    with pytest.raises(NotFound):
        await catalogue.get("t2", "nope")
    await catalogue.delete("t2", "invoice.paid")
    with pytest.raises(NotFound):
        await catalogue.get("t2", "invoice.paid")
    assert (await catalogue.get("t1", "invoice.paid")) == created
    with pytest.raises(NotFound):
        await catalogue.delete("t2", "invoice.paid")
    with pytest.raises(NotFound):
        await catalogue.update("t2", "invoice.paid", {"description": "x"})


@pytest.mark.parametrize("name", ["", "x" * 201, "invoice.*", "invoice paid", "a/b", "in[v]", "what?", "tab\there",
                                  "nul\x00", "new\nline"])
async def test_names_that_are_globs_paths_or_unprintable_are_refused(catalogue, name: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        await catalogue.create("t1", {"name": name})
    refused(exc, "name", "printable")


async def test_names_as_providers_send_them_are_taken(catalogue) -> None:
    for name in ("invoice.paid", "pull_request", "conversation.user.created", "Order-Created:v2", "x" * 200, "é.ü"):
        assert (await catalogue.create("t1", {"name": name})).name == name


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"schema": {"type": "integer", "minimum": "zero"}}, "schema.minimum", ["'zero' is not of type 'number'"]),
    ({"schema": {"type": "strin"}}, "schema.type", ["strin"]),
    ({"schema": ["not", "an", "object"]}, "schema", ["JSON object"]),
    ({"schema": {"$ref": "https://example.com/schema.json"}}, "schema.$ref", ["inside the schema"]),
    ({"schema": {"$ref": "#/$defs/missing"}}, "schema.$ref", ["points at nothing"]),
    ({"schema": {"properties": {"a": {"$id": "https://example.com/a", "type": "string"}}}},
     "schema.properties.a.$id", ["only the schema itself"]),
    ({"schema": {"type": "string", "pattern": "a" * 1001}}, "schema.pattern", ["1000"]),
    ({"schema": {"type": "string", "pattern": "(unclosed"}}, "schema.pattern", ["regex"]),
    ({"schema": {"type": "object", "properties": {f"p{n}": {"description": "x" * 100} for n in range(700)}}},
     "schema", ["64 KiB"]),
    ({"schema": INVOICE_SCHEMA, "example": {"data": {"amount": "4900"}}}, "example.data.amount",
     ["'4900' is not of type 'integer'", "valid against the schema"]),
    ({"schema": INVOICE_SCHEMA, "example": {"data": {"amount": 1, "currency": "euro"}}}, "example.data.currency",
     ["does not match"]),
    ({"example": {"blob": "x" * (64 * 1024)}}, "example", ["64 KiB"]),
    ({"validate": True}, "validate", ["schema"]),
    ({"description": "x" * 2001}, "description", ["2000"]),
    ({"retry": {}}, "retry", ["max_attempts", "retry_for_seconds"]),
    ({"retry": {"max_attempts": 0}}, "retry.max_attempts", ["from 1 to 1000"]),
    ({"retry": {"max_attempts": 2.5}}, "retry.max_attempts", ["whole number"]),
    ({"retry": {"max_attempts": True}}, "retry.max_attempts", ["whole number"]),
    ({"retry": {"retry_for_seconds": 31 * 86400}}, "retry.retry_for_seconds", ["from 1 to 2592000"]),
    ({"retry": {"max_attempts": 5, "multiplier": 0.5}}, "retry.multiplier", ["from 1 to 10"]),
    ({"retry": {"max_attempts": 5, "jitter": 0.1}}, "retry.jitter", ["unknown field"]),
    ({"retry": {"max_attempts": 5, "initial_delay_seconds": 7200}}, "retry.initial_delay_seconds",
     ["max_delay_seconds (3600)"]),
    ({"retry": {"retry_for_seconds": 30 * 86400, "max_delay_seconds": 60}}, "retry.retry_for_seconds",
     ["more than 1000 attempts"]),
])
async def test_each_rule_is_a_400_naming_its_field(catalogue, fields, field: str, words: list[str]) -> None:
    with pytest.raises(InvalidRequest) as exc:
        await catalogue.create("t1", {"name": "order.created", **fields})
    refused(exc, field.split(".")[0] if field.startswith(("schema", "example")) else field, *words)
    assert exc.value.message.startswith(field + ":"), exc.value.message
    with pytest.raises(NotFound):
        await catalogue.get("t1", "order.created")


async def test_schemas_in_other_drafts_anchors_and_refs_inside_data_are_taken(catalogue) -> None:
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
              "properties": {"id": {"type": "string"}}, "required": ["id"]}
    assert (await catalogue.create("t1", {"name": "seven", "schema": draft7, "example": {"id": "a"}})).schema == draft7
    with pytest.raises(InvalidRequest) as exc:
        await catalogue.create("t1", {"name": "seven.bad", "schema": draft7, "example": {}})
    refused(exc, "example", "'id' is a required property")
    anchored = {"$defs": {"money": {"$anchor": "money", "type": "integer"}}, "properties": {"a": {"$ref": "#money"}},
                "enum": [{"$ref": "https://not.followed/since/it/is/data"}, {"a": 1}]}
    assert (await catalogue.create("t1", {"name": "anchored", "schema": anchored, "example": {"a": 1}})).schema


async def test_an_update_changes_the_fields_given_and_is_checked_as_a_whole(catalogue) -> None:
    await catalogue.create("t1", {"name": "invoice.paid", "schema": INVOICE_SCHEMA, "example": INVOICE_EXAMPLE})
    deprecated = await catalogue.update("t1", "invoice.paid", {"deprecated": True,
                                                                "description": "Use invoice.settled"})
    assert (deprecated.deprecated, deprecated.description, deprecated.revision) == (True, "Use invoice.settled", 2)
    assert deprecated.schema == INVOICE_SCHEMA and deprecated.example == INVOICE_EXAMPLE
    # Nothing changed: the revision stays.
    assert (await catalogue.update("t1", "invoice.paid", {})).revision == 2

    # A new schema the stored example does not meet is refused; the type is unchanged.
    stricter = {**INVOICE_SCHEMA, "properties": {"data": {"type": "object", "required": ["amount", "customer"]}}}
    with pytest.raises(InvalidRequest) as exc:
        await catalogue.update("t1", "invoice.paid", {"schema": stricter})
    refused(exc, "example", "'customer' is a required property")
    assert (await catalogue.get("t1", "invoice.paid")).revision == 2
    # Removing the schema of a validating type is refused too.
    await catalogue.update("t1", "invoice.paid", {"validate": True})
    with pytest.raises(InvalidRequest) as exc:
        await catalogue.update("t1", "invoice.paid", {"schema": None})
    refused(exc, "validate", "schema")
    # Both at once, and a cleared field takes its default.
    cleared = await catalogue.update("t1", "invoice.paid", {"schema": None, "validate": None, "example": None,
                                                             "description": None})
    assert (cleared.schema, cleared.validate, cleared.example, cleared.description) == (None, False, None, "")
    with pytest.raises(InvalidRequest) as exc:
        await catalogue.update("t1", "invoice.paid", {"name": "invoice.settled"})
    refused(exc, "name", "cannot be changed")


def test_a_window_becomes_the_attempts_that_start_within_it() -> None:
    # 5 s doubling, capped at 1 h: 5+10+...+2560 = 5115 s in 10 retries, then hourly.
    assert attempts_within(5115, 5, 3600, 2) == 11
    assert attempts_within(5114.9, 5, 3600, 2) == 10
    assert attempts_within(3 * 86400, 5, 3600, 2) == 11 + (3 * 86400 - 5115) // 3600
    assert attempts_within(1, 5, 3600, 2) == 1  # no retry fits: one attempt
    assert attempts_within(600, 60, 60, 1) == 11
    assert RetrySchedule(retry_for_seconds=3600).effective() == {
        "max_attempts": 10, "initial_delay_seconds": 5.0, "max_delay_seconds": 3600.0, "multiplier": 2.0,
        "retry_for_seconds": 3600}
    # Both bounds: the fewer attempts.
    assert RetrySchedule(max_attempts=3, retry_for_seconds=3600).effective()["max_attempts"] == 3
    assert RetrySchedule(max_attempts=30, retry_for_seconds=60).effective()["max_attempts"] == 4
    assert RetrySchedule(max_attempts=4, initial_delay_seconds=1).effective() == {
        "max_attempts": 4, "initial_delay_seconds": 1, "max_delay_seconds": 3600.0, "multiplier": 2.0,
        "retry_for_seconds": None}


async def test_pages_by_name_with_filters_and_a_cursor(catalogue, monkeypatch) -> None:
    names = [f"type.{n:02d}" for n in range(12)]
    for n, name in enumerate(names):
        await catalogue.create("t1", {"name": name, "deprecated": n % 3 == 0, "schema": {"type": "object"},
                                      "validate": n % 4 == 0})
    await catalogue.create("t2", {"name": "type.00x"})

    async def walk(**filters) -> list[list[str]]:
        pages, cursor = [], None
        while True:
            page, cursor = await catalogue.page("t1", cursor=cursor, **filters)
            pages.append([t.name for t in page])
            if cursor is None:
                return pages

    assert await walk() == [names]
    assert await walk(limit=5) == [names[:5], names[5:10], names[10:]]
    assert [n for p in await walk(deprecated="exclude", limit=2) for n in p] == \
        [n for i, n in enumerate(names) if i % 3]
    assert await walk(deprecated="only") == [[n for i, n in enumerate(names) if i % 3 == 0]]
    assert await walk(validate=True) == [[n for i, n in enumerate(names) if i % 4 == 0]]
    assert await walk(validate=False, deprecated="only") == [["type.03", "type.06", "type.09"]]
    assert await walk(limit=12) == [names]
    assert (await catalogue.page("t3")) == ([], None)
    # A page also ends after PAGE_BYTES of schemas and examples, never before its first type.
    monkeypatch.setattr(event_catalogue, "PAGE_BYTES", len('{"type":"object"}') * 3)
    assert await walk() == [names[i:i + 3] for i in range(0, 12, 3)]
    monkeypatch.setattr(event_catalogue, "PAGE_BYTES", 1)
    assert await walk(deprecated="only") == [["type.00"], ["type.03"], ["type.06"], ["type.09"]]


async def test_a_catalogue_holds_a_bounded_number_of_types(catalogue, monkeypatch) -> None:
    monkeypatch.setattr(event_catalogue, "MAX_TYPES", 3)
    for n in range(3):
        await catalogue.create("t1", {"name": f"t.{n}"})
    with pytest.raises(InvalidRequest) as exc:
        await catalogue.create("t1", {"name": "t.3"})
    refused(exc, "name", "at most 3 event types")
    with pytest.raises(Conflict):  # an existing name is still a conflict, not the cap
        await catalogue.create("t1", {"name": "t.0"})
    await catalogue.create("t2", {"name": "t.3"})


async def test_schedules_are_cached_briefly_and_dropped_by_a_change(pool, catalogue) -> None:
    await catalogue.create("t1", {"name": "payment.failed", "retry": {"retry_for_seconds": 259200}})
    await catalogue.create("t1", {"name": "notification.sent", "retry": {"max_attempts": 3,
                                                                         "initial_delay_seconds": 60}})
    await catalogue.create("t1", {"name": "order.created"})
    schedules = await catalogue.schedules("t1")
    assert set(schedules) == {"payment.failed", "notification.sent"}
    assert (schedules["payment.failed"]["max_attempts"], schedules["payment.failed"]["retry_for_seconds"]) == \
        (81, 259200)
    assert schedules["notification.sent"] == {"max_attempts": 3, "initial_delay_seconds": 60,
                                              "max_delay_seconds": 3600.0, "multiplier": 2.0, "retry_for_seconds": None}
    # Another router process's change shows after the TTL; this one's at once.
    other = EventCatalogue(pool, cache_ttl_s=3600)
    assert set(await other.schedules("t1")) == {"payment.failed", "notification.sent"}
    await catalogue.update("t1", "order.created", {"retry": {"max_attempts": 2}})
    assert (await catalogue.schedules("t1"))["order.created"]["max_attempts"] == 2
    assert "order.created" not in await other.schedules("t1")
    await catalogue.delete("t1", "payment.failed")
    assert set(await catalogue.schedules("t1")) == {"notification.sent", "order.created"}
    assert await catalogue.schedules("t2") == {}


async def test_each_delivery_carries_its_types_schedule_and_others_none(pool, js, catalogue) -> None:
    await ensure_streams(js, Settings.from_env({}))
    routes = RouteStore(pool)
    await routes.create("t1", parse_route_spec({"name": "all", "endpoint_ids": ["ep_1", "ep_2"]}))
    await catalogue.create("t1", {"name": "payment.failed", "retry": {"retry_for_seconds": 3600,
                                                                      "max_delay_seconds": 600}})
    store = EventStore(pool)
    dispatcher = Dispatcher(routes, TemplateStore(pool), ai=NO_AI, replies=ReplyStore(pool),
                            endpoint_types=NO_FILTERS, catalogue=catalogue)
    router = EventRouter(Bus(js, 5.0), store, dispatcher)
    payment = Event(id=new_id("evt"), tenant_id="t1", source_id="src_1", type="payment.failed",
                    received_at=1.7e9, payload={"amount": 1})
    order = Event(id=new_id("evt"), tenant_id="t1", source_id="src_1", type="order.created", received_at=1.7e9,
                  payload={})
    assert (await router.route(payment)).action == "ack" and (await router.route(order)).action == "ack"

    sub = await js.pull_subscribe("deliveries.t1.>", "check")
    queued = [DeliveryMessage.from_message(decode(m.data)) for m in await sub.fetch(4, timeout=5)]
    expected = {"max_attempts": attempts_within(3600, 5, 600, 2), "initial_delay_seconds": 5.0,
                "max_delay_seconds": 600, "multiplier": 2.0, "retry_for_seconds": 3600}
    assert {(m.event_type, m.endpoint_id): m.retry for m in queued} == {
        ("payment.failed", "ep_1"): expected, ("payment.failed", "ep_2"): expected,
        ("order.created", "ep_1"): None, ("order.created", "ep_2"): None}
    # The decision kept with the event says which schedule its deliveries carry.
    payment_routing = (await store.get("t1", payment.id)).routing
    order_routing = (await store.get("t1", order.id)).routing
    assert payment_routing is not None and order_routing is not None
    assert payment_routing["retry"] == {"event_type": "payment.failed", **expected} and "retry" not in order_routing


def test_a_delivery_message_without_a_schedule_still_reads() -> None:
    message = DeliveryMessage(event_id="evt_1", tenant_id="t1", endpoint_id="ep_1", route_id="rt_1",
                              event_type="a", source_id="src_1", received_at=1.0, payload={})
    written = message.to_message()
    assert written["retry"] is None
    del written["retry"]  # as a router before this field wrote it
    assert DeliveryMessage.from_message(written) == message
    scheduled = DeliveryMessage(**{**message.__dict__, "retry": {"max_attempts": 3}})
    assert DeliveryMessage.from_message(scheduled.to_message()).retry == {"max_attempts": 3}
