"""The event-type catalogue through the real platform: managed over REST (audited, kept to its tenant,
every refusal a 400 naming its field), POST /v1/events validating payloads of the types that ask for it
(on, off, and while the router cannot be reached), and each delivery carrying its type's retry schedule."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.test_auth import add_key, tenant_with_key
from tests.e2e.slice import publish, wait_routed
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e

INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "object", "required": ["amount"],
                            "properties": {"amount": {"type": "integer"},
                                           "currency": {"$ref": "#/$defs/currency"}}}},
    "$defs": {"currency": {"type": "string", "pattern": "^[A-Z]{3}$"}},
}
INVOICE = {"name": "invoice.paid", "description": "An invoice was paid in full.", "schema": INVOICE_SCHEMA,
           "example": {"data": {"amount": 4900, "currency": "EUR"}}, "validate": True,
           "retry": {"retry_for_seconds": 259200}}
# What deliveries of invoice.paid carry: 3 days of 5 s doubling to an hourly retry.
INVOICE_SCHEDULE = {"max_attempts": 81, "retry_for_seconds": 259200, "initial_delay_seconds": 5,
                    "max_delay_seconds": 3600, "multiplier": 2}


def refused(reply: httpx.Response, field: str, *words: str) -> None:
    assert reply.status_code == 400, (reply.status_code, reply.text)
    error = reply.json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith(f"{field}"), error
    for word in words:
        assert word in error["message"], (word, error)


def wait_until(check: Callable[[], bool], timeout: float = 15) -> None:
    """The edge caches a tenant's catalogue for 5 s: a change shows within that."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the edge's cache time"
        time.sleep(0.2)


def test_the_catalogue_is_managed_over_rest_checked_audited_and_kept_to_its_tenant(platform: Platform) -> None:
    tenant, admin_key = tenant_with_key(platform, "acme", "admin")
    reader = add_key(platform, tenant, "read")["secret"]
    with platform.client(admin_key) as api:
        created = api.post("/v1/event-types", json=INVOICE)
        assert created.status_code == 201, created.text
        shown = created.json()
        assert {k: shown[k] for k in INVOICE} == INVOICE
        assert (shown["deprecated"], shown["revision"], shown["tenant_id"]) == (False, 1, tenant)
        assert shown["effective_retry"] == INVOICE_SCHEDULE
        assert api.get("/v1/event-types/invoice.paid").json() == shown
        assert api.post("/v1/event-types", json={"name": "invoice.paid"}).status_code == 409

        # A type without schema or schedule: documentation alone.
        note = api.post("/v1/event-types", json={"name": "note.added"}).json()
        assert (note["schema"], note["example"], note["retry"], note["effective_retry"], note["validate"]) == \
            (None, None, None, None, False)

        # PATCH changes the fields given; null clears one; the whole type is checked again.
        changed = api.patch("/v1/event-types/invoice.paid",
                            json={"deprecated": True, "description": "Use invoice.settled", "retry": None})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["deprecated"], changed.json()["description"], changed.json()["retry"],
                changed.json()["revision"], changed.json()["schema"]) == \
            (True, "Use invoice.settled", None, 2, INVOICE_SCHEMA)
        refused(api.patch("/v1/event-types/invoice.paid", json={"schema": {"type": "string"}}),
                "example", "is not of type 'string'")
        refused(api.patch("/v1/event-types/invoice.paid", json={"schema": None}), "validate", "schema")
        refused(api.patch("/v1/event-types/invoice.paid", json={"name": "invoice.settled"}), "name")
        assert api.get("/v1/event-types/invoice.paid").json()["revision"] == 2
        assert api.patch("/v1/event-types/nope", json={"deprecated": True}).status_code == 404

        # Listed by name, deprecated ones too unless left out, with filters and a cursor.
        for n in range(3):
            assert api.post("/v1/event-types", json={"name": f"order.{n}"}).status_code == 201
        every = ["invoice.paid", "note.added", "order.0", "order.1", "order.2"]
        assert [t["name"] for t in api.get("/v1/event-types").json()["data"]] == every
        listed = api.get("/v1/event-types", params={"deprecated": "exclude"}).json()
        assert [t["name"] for t in listed["data"]] == every[1:] and listed["next_cursor"] is None
        assert [t["name"] for t in api.get("/v1/event-types", params={"deprecated": "only"}).json()["data"]] == \
            ["invoice.paid"]
        assert [t["name"] for t in api.get("/v1/event-types", params={"validate": "true"}).json()["data"]] == \
            ["invoice.paid"]
        first = api.get("/v1/event-types", params={"limit": 2}).json()
        second = api.get("/v1/event-types", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert [t["name"] for t in first["data"] + second["data"]] == every[:4] and second["next_cursor"] == "order.1"

        # Each refusal names its field.
        big = {"type": "object", "properties": {f"p{n}": {"description": "x" * 100} for n in range(700)}}
        for body, field, words in (
            ({"name": "a.b", "schema": {"type": "integer", "minimum": "zero"}}, "schema.minimum", ["'zero'"]),
            ({"name": "a.b", "schema": {"$ref": "https://example.com/s.json"}}, "schema.$ref", ["inside"]),
            ({"name": "a.b", "schema": big}, "schema", ["64 KiB"]),
            ({"name": "a.b", "schema": ["a", "list"]}, "schema", []),
            ({"name": "a.b", "schema": INVOICE_SCHEMA, "example": {"data": {"amount": "4900"}}},
             "example.data.amount", ["'4900' is not of type 'integer'"]),
            ({"name": "invoice.*"}, "name", ["glob"]),
            ({"name": "invoice paid"}, "name", ["spaces"]),
            ({"name": ""}, "name", []),
            ({"name": "x" * 201}, "name", []),
            ({"description": "no name"}, "name", ["required"]),
            ({"name": "a.b", "colour": "red"}, "colour", ["unknown field"]),
            ({"name": "a.b", "retry": {"tries": 3}}, "retry.tries", ["unknown field"]),
            ({"name": "a.b", "retry": {}}, "retry", ["max_attempts"]),
            ({"name": "a.b", "retry": {"max_attempts": 1001}}, "retry.max_attempts", ["1000"]),
            ({"name": "a.b", "retry": {"max_attempts": 3, "initial_delay_seconds": 0}},
             "retry.initial_delay_seconds", []),
            ({"name": "a.b", "retry": {"retry_for_seconds": 86400, "max_delay_seconds": 10}},
             "retry.retry_for_seconds", ["more than 1000 attempts"]),
            ({"name": "a.b", "validate": True}, "validate", ["schema"]),
        ):
            refused(api.post("/v1/event-types", json=body), field, *words)
        assert api.get("/v1/event-types/a.b").status_code == 404

        # Mutations are in the audit log, by the type's name.
        audited = {(e["action"], e["resource"]) for e in api.get("/v1/audit").json()["data"]}
        assert {("event_type.create", "invoice.paid"), ("event_type.update", "invoice.paid")} <= audited

    # A read key reads, and only reads.
    with platform.client(reader) as read:
        assert read.get("/v1/event-types/invoice.paid").status_code == 200
        assert read.get("/v1/event-types").status_code == 200
        assert read.post("/v1/event-types", json={"name": "x.y"}).status_code == 403
        assert read.delete("/v1/event-types/invoice.paid").status_code == 403

    # Another tenant sees none of it and may use the same names.
    _, other_key = tenant_with_key(platform, "other", "admin")
    with platform.client(other_key) as other:
        assert other.get("/v1/event-types/invoice.paid").status_code == 404
        assert other.patch("/v1/event-types/invoice.paid", json={"deprecated": False}).status_code == 404
        assert other.delete("/v1/event-types/invoice.paid").status_code == 404
        assert other.get("/v1/event-types").json() == {"data": [], "next_cursor": None}
        assert other.post("/v1/event-types", json={"name": "invoice.paid"}).json()["description"] == ""

    with platform.client(admin_key) as api:
        assert api.get("/v1/event-types/invoice.paid").json()["description"] == "Use invoice.settled"
        assert api.delete("/v1/event-types/invoice.paid").json() == {"id": "invoice.paid", "deleted": True}
        assert api.get("/v1/event-types/invoice.paid").status_code == 404
        assert api.delete("/v1/event-types/invoice.paid").status_code == 404


def test_published_events_are_validated_by_their_type_and_delivered_with_its_schedule(
        platform_factory: Callable[..., Platform]) -> None:
    platform = platform_factory(SWITCHBOARD_RPC_TIMEOUT="1")
    tenant, admin_key = tenant_with_key(platform, "acme", "admin", "events:publish")
    with Receiver() as receiver, platform.client(admin_key) as api:
        endpoint = api.post("/v1/endpoints", json={"url": receiver.url}).json()["id"]
        assert api.post("/v1/routes", json={"endpoint_ids": [endpoint]}).status_code == 201
        assert api.post("/v1/event-types", json=INVOICE).status_code == 201
        assert api.post("/v1/event-types", json={
            "name": "order.created", "schema": {"type": "object", "required": ["id"]},
            "retry": {"max_attempts": 3, "initial_delay_seconds": 60}}).status_code == 201

        # A validating type refuses a payload its schema does not accept, naming the place.
        bad = api.post("/v1/events", json={"type": "invoice.paid", "payload": {"data": {"amount": "x"}}})
        refused(bad, "payload.data.amount", "'x' is not of type 'integer'")
        assert bad.json()["error"]["field"] == "payload"
        refused(api.post("/v1/events", json={"type": "invoice.paid", "payload": {"data": {"amount": 1,
                                                                                          "currency": "euro"}}}),
                "payload.data.currency", "does not match")
        refused(api.post("/v1/events", json={"type": "invoice.paid", "payload": [1, 2]}), "payload",
                "is not of type 'object'")
        # Types that do not validate, or are not in the catalogue, take any payload.
        assert api.post("/v1/events", json={"type": "order.created", "payload": {"no": "id"}}).status_code == 202
        assert api.post("/v1/events", json={"type": "unknown.type", "payload": "anything"}).status_code == 202

        # A valid one is accepted, and its delivery carries the type's schedule.
        paid = publish(api, {"type": "invoice.paid", "payload": {"data": {"amount": 4900, "currency": "EUR"}}})
        routing = wait_routed(api, paid)["routing"]
        assert routing["retry"] == {"event_type": "invoice.paid", **INVOICE_SCHEDULE}
        order = publish(api, {"type": "order.created", "payload": {"id": 1}})
        assert wait_routed(api, order)["routing"]["retry"] == {
            "event_type": "order.created", "max_attempts": 3, "initial_delay_seconds": 60,
            "max_delay_seconds": 3600, "multiplier": 2, "retry_for_seconds": None}
        other = publish(api, {"type": "note.added", "payload": {}})
        assert "retry" not in wait_routed(api, other)["routing"]
        receiver.wait_for(lambda r: len(r) >= 5)

        # Validation off: the same payload is taken (within the edge's cache time); on again: refused.
        invalid = {"type": "invoice.paid", "payload": {"data": {}}}
        assert api.patch("/v1/event-types/invoice.paid", json={"validate": False}).status_code == 200
        wait_until(lambda: api.post("/v1/events", json=invalid).status_code == 202)
        # A deprecated type still validates when it says so.
        assert api.patch("/v1/event-types/invoice.paid", json={"validate": True, "deprecated": True}).status_code == 200
        wait_until(lambda: api.post("/v1/events", json=invalid).status_code == 400)
        refused(api.post("/v1/events", json=invalid), "payload.data", "'amount' is a required property")

        # While the router cannot be reached, the edge keeps the catalogue it knows...
        _, newcomer_key = tenant_with_key(platform, "newcomer", "events:publish")
        routers = [pid for name, pid in platform.pids().items() if name.startswith("router")]
        for pid in routers:
            os.kill(pid, signal.SIGSTOP)  # hung, not dead: the supervisor does not restart it
        try:
            time.sleep(5.5)  # past the edge's cache time: it asks the router again, in vain
            refused(api.post("/v1/events", json=invalid), "payload.data", "'amount'")
            assert api.post("/v1/events", json={"type": "invoice.paid", "payload": {"data": {"amount": 1}}}
                            ).status_code == 202
            # ... and a tenant whose catalogue it never read cannot be checked: 503, try again.
            with platform.client(newcomer_key) as newcomer:
                unknown = newcomer.post("/v1/events", json={"type": "invoice.paid", "payload": {}})
                assert unknown.status_code == 503 and unknown.headers["retry-after"], unknown.text
                assert unknown.json()["error"]["code"] == "unavailable"
        finally:
            for pid in routers:
                os.kill(pid, signal.SIGCONT)
        with platform.client(newcomer_key) as newcomer:
            wait_until(lambda: newcomer.post("/v1/events", json={"type": "invoice.paid", "payload": {}}
                                             ).status_code == 202)


def test_a_types_retry_schedule_decides_how_often_its_deliveries_are_tried(platform: Platform) -> None:
    """The endpoint would try 8 times a few seconds apart; its deliveries of alert.fired follow the type's
    schedule: 2 attempts, 0.2 s apart, then dead-lettered, while other types keep the endpoint's."""
    with Receiver(status=503) as receiver, platform.client() as api:
        endpoint = api.post("/v1/endpoints", json={"url": receiver.url, "options": {
            "retry": {"max_attempts": 8, "initial_delay_seconds": 0.5}}}).json()["id"]
        assert api.post("/v1/routes", json={"endpoint_ids": [endpoint]}).status_code == 201
        assert api.post("/v1/event-types", json={"name": "alert.fired", "retry": {
            "max_attempts": 2, "initial_delay_seconds": 0.2, "max_delay_seconds": 0.2}}).status_code == 201
        alert = publish(api, {"type": "alert.fired", "payload": {"n": 1}})
        other = publish(api, {"type": "note.added", "payload": {"n": 2}})

        def deliveries_of(event_id: str) -> list[dict]:
            return api.get("/v1/deliveries", params={"event_id": event_id}).json()["data"]

        wait_until(lambda: [d["status"] for d in deliveries_of(alert)] == ["failed"])
        [failed] = deliveries_of(alert)
        assert len(failed["attempts"]) == 2
        time.sleep(1)  # no third attempt follows
        assert [r.headers["webhook-id"] for r in receiver.requests].count(failed["id"]) == 2
        # The other type is still being retried on the endpoint's schedule (beyond 2 attempts).
        wait_until(lambda: [r.headers["webhook-id"] for r in receiver.requests].count(f"{other}:{endpoint}") >= 3)
