"""Route conditions: JSON paths, operators, all/any, AI labels; every decision explained."""

import pytest

from services.router.conditions import AIConditions, Filters, PayloadFilter, parse_path
from services.router.routing import Route, decide, needs_classification, parse_route_spec, route_from_spec
from switchboard.errors import InvalidRequest
from switchboard.events import Event

PAYLOAD = {"data": {"object": {"amount_due": 4900, "currency": "usd", "tags": ["vip", "eu"],
                               "customer": {"email": "ada@example.com"}, "lines": [{"id": "il_1"}]}},
           "type": "invoice.payment_failed", "odd key": True}


def event(payload=PAYLOAD, type_="invoice.payment_failed", source="src_1") -> Event:
    return Event(id="evt_1", tenant_id="t1", source_id=source, type=type_, received_at=0.0, payload=payload)


@pytest.mark.parametrize("path,steps", [
    ("$", ()), ("$.data.object.amount_due", ("data", "object", "amount_due")),
    ("$.data.object.lines[0].id", ("data", "object", "lines", 0, "id")), ('$["odd key"]', ("odd key",)),
])
def test_paths_parse(path: str, steps: tuple) -> None:
    assert parse_path(path) == steps


@pytest.mark.parametrize("path", ["data.amount", "$..a", "$.a[x]", "$.a[", "$ a", "$.", "$." + "a" * 600])
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_path(path)


@pytest.mark.parametrize("condition,met", [
    ({"path": "$.data.object.amount_due", "op": "gte", "value": 1000}, True),
    ({"path": "$.data.object.amount_due", "op": "lt", "value": 1000}, False),
    ({"path": "$.data.object.amount_due", "op": "gt", "value": "1000"}, False),  # a number is not a string
    ({"path": "$.data.object.currency", "op": "eq", "value": "usd"}, True),
    ({"path": "$.data.object.currency", "op": "ne", "value": "eur"}, True),
    ({"path": "$.data.object.currency", "op": "in", "value": ["usd", "gbp"]}, True),
    ({"path": "$.data.object.tags", "op": "contains", "value": "vip"}, True),
    ({"path": "$.data.object.customer.email", "op": "contains", "value": "@example.com"}, True),
    ({"path": "$.data.object.customer.email", "op": "regex", "value": "^ada@"}, True),
    ({"path": "$.data.object.lines[0].id", "op": "eq", "value": "il_1"}, True),
    ({"path": '$["odd key"]', "op": "eq", "value": True}, True),
    ({"path": "$.data.object.discount", "op": "exists", "value": False}, True),
    ({"path": "$.data.object.currency", "op": "exists", "value": True}, True),
    # A missing field, or an index past the end, is false and never an error.
    ({"path": "$.data.object.discount.amount", "op": "eq", "value": None}, False),
    ({"path": "$.data.object.discount", "op": "ne", "value": 5}, False),
    ({"path": "$.data.object.lines[9].id", "op": "eq", "value": "il_1"}, False),
    ({"path": "$.data.object.tags.vip", "op": "exists", "value": True}, False),
    ({"path": "$.data.object.amount_due", "op": "regex", "value": "49"}, False),  # regex only on strings
])
def test_operators(condition: dict, met: bool) -> None:
    result, reason = PayloadFilter.parse(condition).evaluate(PAYLOAD)
    assert result is met and condition["path"] in reason


@pytest.mark.parametrize("condition,message", [
    ({"path": "$.a", "op": "like", "value": 1}, "not one of"),
    ({"path": "$.a", "op": "in", "value": "x"}, "needs a list"),
    ({"path": "$.a", "op": "exists", "value": "yes"}, "true or false"),
    ({"path": "$.a", "op": "regex", "value": "(unclosed"}, "is invalid"),
    ({"path": "$.a", "op": "gt", "value": [1]}, "number or a string"),
    ({"path": "a", "op": "eq", "value": 1}, r"must start with \$"),
    ({"op": "eq", "value": 1}, "a filter is"),
])
def test_bad_filters_are_refused_with_a_clear_message(condition: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        PayloadFilter.parse(condition)


def test_all_and_any() -> None:
    big = {"path": "$.data.object.amount_due", "op": "gte", "value": 1000}
    eur = {"path": "$.data.object.currency", "op": "eq", "value": "eur"}
    both, either = Filters.parse({"all": [big, eur]}), Filters.parse({"any": [big, eur]})
    assert both is not None and either is not None
    assert both.evaluate(PAYLOAD)[0] is False
    assert either.evaluate(PAYLOAD)[0] is True
    assert Filters.parse(None) is None
    bad: object
    for bad in ({"some": [big]}, {"all": []}, {"all": [big], "any": [eur]}):
        with pytest.raises(InvalidRequest):
            Filters.parse(bad)


def test_ai_conditions() -> None:
    conditions = AIConditions.parse({"category": ["billing"], "priority": ["high", "urgent"], "min_confidence": 0.7})
    assert conditions is not None
    labels = {"category": "billing", "priority": "high", "sentiment": "negative", "confidence": 0.91}
    met, reasons = conditions.evaluate(labels)
    assert met and "ai confidence 0.91 >= 0.7" in reasons
    assert conditions.evaluate({**labels, "confidence": 0.5})[0] is False
    assert conditions.evaluate(None) == (False, ["no AI classification available"])
    for bad in ({"priority": ["x" * 21]}, {"priority": list("abcdef")}, {"min_confidence": 2}, {"mood": "x"}):
        with pytest.raises(InvalidRequest):
            AIConditions.parse(bad)


def test_ai_priorities_are_the_tenants_levels() -> None:
    """Any level names parse (a stored route outlives a change of scale); saving checks them against the scale."""
    conditions = AIConditions.parse({"priority": ["urgent"]})
    assert conditions is not None
    conditions.check_priorities(("urgent", "normal"))
    assert conditions.evaluate({"priority": "urgent"})[0] is True
    assert conditions.evaluate({"priority": "normal"}) == (False, ["ai priority 'normal' not in ['urgent']"])
    meh = AIConditions.parse({"priority": ["meh", "high"]})
    assert meh is not None
    with pytest.raises(InvalidRequest, match="priority values are the tenant's priority levels") as refused:
        meh.check_priorities(("urgent", "high", "normal", "low"))
    assert refused.value.field == "ai.priority" and "not 'meh'" in str(refused.value)


def route(id_: str, **spec) -> Route:
    return route_from_spec("t1", parse_route_spec({"endpoint_ids": ["ep_" + id_], **spec}), id_)


def test_decisions_are_explained_and_ai_is_needed_only_when_the_rest_matches() -> None:
    routes = [
        route("big", filters={"all": [{"path": "$.data.object.amount_due", "op": "gte", "value": 1000}]},
              event_types=["invoice.*"]),
        route("angry", ai={"sentiment": ["negative"]}, event_types=["invoice.*"]),
        route("github", ai={"category": ["code"]}, source_id="src_github"),
    ]
    assert needs_classification(event(), routes)
    assert not needs_classification(event(type_="customer.created"), routes)
    plan = decide(event(), routes, {"category": "billing", "priority": "high", "sentiment": "negative",
                                    "confidence": 0.8}, explain_all=True)
    assert [e for _, e in plan.deliveries] == ["ep_big", "ep_angry"]
    explained = plan.explain({"category": "billing"})
    assert [r["matched"] for r in explained["routes"]] == [True, True, False]
    assert "type invoice.payment_failed matches ['invoice.*']" in explained["routes"][0]["reasons"]
    assert "$.data.object.amount_due 4900 gte 1000" in explained["routes"][0]["reasons"]
    assert "ai sentiment 'negative' in ['negative']" in explained["routes"][1]["reasons"]
    assert explained["routes"][2]["reasons"] == ["source src_1 is not src_github"]
    # Without a classification, AI routes do not match; the others still do.
    assert [e for _, e in decide(event(), routes, None).deliveries] == ["ep_big"]
    # Routing (not a simulation) explains what matched, or got as far as its AI conditions; it counts the rest.
    kept = decide(event(), routes, None).explain()
    assert [r["route_id"] for r in kept["routes"]] == ["big", "angry"] and kept["routes_not_shown"] == 1


def test_a_drop_route_stops_every_delivery_and_routes_are_checked_as_a_whole() -> None:
    routes = [route("all"), route_from_spec("t1", parse_route_spec(
        {"action": "drop", "filters": {"any": [{"path": "$.data.object.tags", "op": "contains", "value": "vip"}]}}),
        "drop-vip")]
    plan = decide(event(), routes)
    assert plan.deliveries == [] and plan.dropped_by is not None and plan.dropped_by.id == "drop-vip"
    for spec, message in (({"action": "deliver"}, "needs at least one endpoint_id"),
                          ({"action": "drop", "endpoint_ids": ["ep_1"]}, "no endpoint_ids"),
                          ({"action": "reply", "endpoint_ids": ["ep_1"], "template_id": "tpl_1"}, "no template_id"),
                          ({"action": "forward", "endpoint_ids": ["ep_1"]}, "action is one of"),
                          ({"endpoint_ids": ["ep_1"], "colour": "red"}, "unknown route fields")):
        with pytest.raises(InvalidRequest, match=message):
            route_from_spec("t1", parse_route_spec(spec))


def test_the_route_index_only_skips_routes_that_cannot_match() -> None:
    from services.router.routing import RouteSet

    routes = [route("inv", event_types=["invoice.*"]), route("star", event_types=["*"]), route("any"),
              route("mixed", event_types=["charge.failed", "invoice.paid"]), route("glob", event_types=["inv*.x"])]
    indexed = RouteSet(routes)
    assert [r.id for r in indexed.candidates("invoice.paid")] == ["inv", "star", "any", "mixed", "glob"]
    assert [r.id for r in indexed.candidates("charge.refunded")] == ["star", "any", "mixed", "glob"]
    assert [r.id for r in indexed.candidates("order")] == ["star", "any", "glob"]
    for type_ in ("invoice.paid", "invoice.x", "charge.failed", "order.created", "inv.x", "invoice"):
        e = event(type_=type_)
        assert [(r.id, ep) for r, ep in decide(e, indexed).deliveries] == \
            [(r.id, ep) for r, ep in decide(e, routes).deliveries]
