from datetime import datetime, UTC

from services.router.event_store import EventStore
from services.router.route_store import RouteStore
from services.router.routing import Route, decide, parse_route_spec
from switchboard.events import Event
from switchboard.ids import new_id

NOW = datetime.now(UTC)


def route(id_: str, endpoints: tuple[str, ...], source: str | None = None, types: tuple[str, ...] = (),
          tenant: str = "t1", enabled: bool = True) -> Route:
    return Route(id_, tenant, id_, source, types, endpoints, enabled, NOW)


def event(type_: str = "invoice.paid", source: str = "s1", tenant: str = "t1") -> Event:
    return Event(id="e1", tenant_id=tenant, source_id=source, type=type_, received_at=0.0, payload={})


def test_match_all_route_takes_every_event() -> None:
    assert [e for _, e in decide(event(), [route("r", ("ep1",))]).deliveries] == ["ep1"]


def test_source_and_type_globs_filter() -> None:
    routes = [
        route("by-source", ("ep1",), source="s2"),
        route("by-type", ("ep2",), types=("invoice.*",)),
        route("other-type", ("ep3",), types=("customer.*", "charge.failed")),
        route("disabled", ("ep4",), enabled=False),
        route("other-tenant", ("ep5",), tenant="t2"),
    ]
    assert [e for _, e in decide(event(), routes).deliveries] == ["ep2"]
    assert [e for _, e in decide(event("charge.failed", source="s2"), routes).deliveries] == ["ep1", "ep3"]


def test_an_endpoint_named_by_two_routes_gets_one_delivery() -> None:
    planned = decide(event(), [route("r1", ("ep1", "ep2")), route("r2", ("ep2", "ep3"))]).deliveries
    assert [(r.id, e) for r, e in planned] == [("r1", "ep1"), ("r1", "ep2"), ("r2", "ep3")]


def test_platform_events_go_only_to_routes_that_name_them() -> None:
    routes = [
        route("everything", ("ep1",)),
        route("every-type", ("ep2",), types=("*",)),
        route("by-source", ("ep3",), source="switchboard"),
        route("by-type", ("ep4",), types=("switchboard.alert.*",)),
    ]
    alert = event("switchboard.alert.failure_rate", source="switchboard")
    plan = decide(alert, routes, explain_all=True)
    assert [e for _, e in plan.deliveries] == ["ep3", "ep4"]
    assert "platform events go only to routes naming" in plan.verdicts[0].reasons[0]
    assert [e for _, e in decide(event(), routes).deliveries] == ["ep1", "ep2"]


async def test_events_are_stored_once_and_only_read_by_their_tenant(pool) -> None:
    from pathlib import Path

    import pytest

    from switchboard.database import apply_migrations
    from switchboard.errors import NotFound

    await apply_migrations(pool, "router", Path(__file__).parents[3] / "services/router/migrations")
    store = EventStore(pool)
    e = Event(id=new_id("evt"), tenant_id="t1", source_id="s1", type="a", received_at=1.5e9, payload={"k": [1]},
              headers={"h": "v"}, provider_event_id="p1", body=b'{"k": [1]}')
    assert await store.store(e) is True
    assert await store.store(e) is False
    assert (await store.get("t1", e.id)).event == e
    with pytest.raises(NotFound):
        await store.get("t2", e.id)
    with pytest.raises(NotFound):
        await store.get("t1", "evt_\x00")

    routes = RouteStore(pool)
    created = await routes.create("t1", parse_route_spec({"name": "r", "event_types": ["a.*"],
                                                          "endpoint_ids": ["ep1", "ep1", "ep2"]}))
    assert created.endpoint_ids == ("ep1", "ep2")
    assert await routes.list("t2") == []


async def test_json_scalars_nulls_and_text_survive_the_batched_insert(pool) -> None:
    """Rows go to PostgreSQL as one jsonb document: a null payload, scalars and times come back as they were."""
    from pathlib import Path

    from switchboard.database import apply_migrations

    await apply_migrations(pool, "router", Path(__file__).parents[3] / "services/router/migrations")
    store = EventStore(pool)
    kept = [
        Event(id=new_id("evt"), tenant_id="t1", source_id="s1", type="a", received_at=1.5e9 + 0.123456,
              payload=None, body=b"null"),
        Event(id=new_id("evt"), tenant_id="t1", source_id="s1", type="b", received_at=1.7e9, payload="text",
              occurred_at=1.6e9, conversation_key="c'k", author="a\"b", provider_event_id=None),
        Event(id=new_id("evt"), tenant_id="t1", source_id="s1", type="c", received_at=1.7e9,
              payload=[1, 2.5, True, {"n": None, "big": 2**62}], headers={"x-é": "caf\u00e9"}),
        # Bytes text cannot hold (NUL, not UTF-8), and text that is not JSON, each with its Content-Type.
        Event(id=new_id("evt"), tenant_id="t1", source_id="s1", type="d", received_at=1.7e9, payload=None,
              body=b"\x00\xff\xfe raw \x00", content_type="application/octet-stream"),
        Event(id=new_id("evt"), tenant_id="t1", source_id="s1", type="e", received_at=1.7e9, payload=None,
              body="<a>caf\u00e9</a>".encode(), content_type="application/xml; charset=utf-8"),
    ]
    assert [await store.store(e) for e in kept] == [True] * 5
    for e in kept:
        assert (await store.get("t1", e.id)).event == e


def test_conditions_on_the_payload_refuse_an_event_without_one_and_say_why() -> None:
    from services.router.conditions import AIConditions, Filters

    text = Event(id="e1", tenant_id="t1", source_id="s1", type="note", received_at=0.0, payload=None,
                 body=b"hello", content_type="text/plain; charset=utf-8")
    filtered = Route("filtered", "t1", "f", None, (), ("ep1",), True, NOW,
                     filters=Filters.parse({"all": [{"path": "$.a", "op": "exists", "value": False}]}))
    by_ai = Route("ai", "t1", "a", None, (), ("ep2",), True, NOW, ai=AIConditions.parse({"category": ["x"]}))
    other_type = Route("other", "t1", "o", None, ("invoice.*",), ("ep3",), True, NOW,
                       filters=Filters.parse({"all": [{"path": "$.a", "op": "exists", "value": False}]}))
    plan = decide(text, [filtered, by_ai, other_type, route("plain", ("ep4",))])
    assert [e for _, e in plan.deliveries] == ["ep4"]
    reasons = {v.route.id: (v.matched, v.reasons) for v in plan.verdicts}
    assert reasons["filtered"] == (False, ["filters need a JSON payload (this event is text/plain)"])
    assert reasons["ai"] == (False, ["ai conditions need a JSON payload (this event is text/plain)"])
    assert "other" not in reasons and plan.not_shown == 1  # not of its type: only counted, as ever
    # The same filter holds for a JSON event whose payload lacks the field, and for a form's fields.
    assert [e for _, e in decide(event(), [filtered]).deliveries] == ["ep1"]
    form = Event(id="e2", tenant_id="t1", source_id="s1", type="note", received_at=0.0, payload={"b": "1"},
                 body=b"b=1", content_type="application/x-www-form-urlencoded")
    assert [e for _, e in decide(form, [filtered]).deliveries] == ["ep1"]
