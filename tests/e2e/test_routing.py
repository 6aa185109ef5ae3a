"""AI routing end to end: conditions on payloads and AI labels, transforms, drop routes,
explained decisions, simulation, and route and template management."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.slice import publish, wait_routed
from tests.e2e.test_auth import tenant_with_key
from tests.e2e.test_slice import wait_for_delivery
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e

INVOICE: dict[str, Any] = {"type": "invoice.payment_failed", "payload": {
    "data": {"object": {"id": "in_42", "amount_due": 4900, "currency": "usd", "customer_email": "ada@example.com"}},
    "text": "Payment failed for invoice in_42"}}
SLACK_TEMPLATE = ('{"text": {{ ("Invoice " ~ payload.data.object.id ~ " failed: " ~ (ai.summary if ai else ""))'
                  ' | tojson }}}')


def test_routes_filter_classify_transform_drop_and_explain(platform: Platform) -> None:
    with Receiver() as big, Receiver() as billing, Receiver() as everything, platform.client() as api:
        ep = {name: api.post("/v1/endpoints", json={"url": r.url}).json()["id"]
              for name, r in (("big", big), ("billing", billing), ("all", everything))}
        template = api.post("/v1/templates", json={"name": "slack text", "source": SLACK_TEMPLATE})
        assert template.status_code == 201 and template.json()["version"] == 1
        routes = [
            {"name": "big invoices to Slack", "event_types": ["invoice.*"], "endpoint_ids": [ep["big"]],
             "filters": {"all": [{"path": "$.data.object.amount_due", "op": "gte", "value": 1000}]},
             "template_id": template.json()["id"], "position": 1},
            {"name": "billing by AI", "ai": {"category": ["billing"], "min_confidence": 0.3},
             "endpoint_ids": [ep["billing"]], "position": 2},
            {"name": "tests are dropped", "action": "drop", "position": 0,
             "filters": {"any": [{"path": "$.test", "op": "eq", "value": True}]}},
            {"name": "everything", "endpoint_ids": [ep["all"]], "position": 3},
        ]
        for spec in routes:
            created = api.post("/v1/routes", json=spec)
            assert created.status_code == 201, created.text
        assert [r["name"] for r in api.get("/v1/routes").json()["data"]] == [
            "tests are dropped", "big invoices to Slack", "billing by AI", "everything"]

        event_id = publish(api, INVOICE)
        for receiver in (big, billing, everything):  # each delivery is its own: wait for all three
            receiver.wait_for(lambda r: len(r) >= 1)
        wait_for_delivery(api, event_id)
        [slack] = big.requests
        text = json.loads(slack.body)["text"]
        assert text.startswith("Invoice in_42 failed: ") and len(text) > len("Invoice in_42 failed: ")
        assert json.loads(billing.requests[0].body) == INVOICE["payload"]  # untransformed
        assert len(everything.requests) == 1

        routing = api.get(f"/v1/events/{event_id}").json()["routing"]
        assert routing["ai"]["category"] == "billing" and routing["ai"]["provider"] == "local"
        matched = {r["name"]: r for r in routing["routes"]}
        assert matched["big invoices to Slack"]["matched"]
        assert "$.data.object.amount_due 4900 gte 1000" in matched["big invoices to Slack"]["reasons"]
        assert any(reason.startswith("ai category 'billing'") for reason in matched["billing by AI"]["reasons"])
        assert "tests are dropped" not in matched and routing["routes_not_shown"] == 1
        assert routing["transforms"][0]["version"] == 1

        small = publish(api, {"type": "customer.updated", "payload": {"name": "Ada", "test": False}})
        wait_for_delivery(api, small)
        assert len(big.requests) == 1  # not an invoice
        dropped = publish(api, {**INVOICE, "payload": {**INVOICE["payload"], "test": True}})
        routed = wait_routed(api, dropped)
        assert routed["routing"]["dropped_by"] and routed["deliveries"] == []


def test_a_failing_transform_is_recorded_on_the_delivery_and_the_event_is_kept(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        ep = api.post("/v1/endpoints", json={"url": receiver.url}).json()["id"]
        template = api.post("/v1/templates", json={"name": "broken", "source": '{"n": {{ payload.n / 0 }}}'}).json()
        api.post("/v1/routes", json={"endpoint_ids": [ep], "template_id": template["id"]}).raise_for_status()
        event_id = publish(api, {"type": "t", "payload": {"n": 1}})
        event = wait_for_delivery(api, event_id, status="failed")
        [attempt] = event["deliveries"][0]["attempts"]
        assert attempt["error"].startswith(f"transform {template['id']} v1 failed") and receiver.requests == []
        assert event["payload"] == {"n": 1} and event["routing"]["transforms"][0]["error"]

        # Fixed, the template takes a new version; the kept event can be replayed through it.
        fixed = api.patch(f"/v1/templates/{template['id']}", json={"source": '{"n": {{ payload.n * 2 }}}'})
        assert fixed.json()["version"] == 2
        time.sleep(2.5)  # the router's template cache
        replay = api.post("/v1/replays", json={"since": event["received_at"]}).json()
        deadline = time.monotonic() + 20
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        assert json.loads(receiver.requests[0].body) == {"n": 2}, replay


def test_simulation_shows_what_would_happen_and_sends_nothing(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        ep = api.post("/v1/endpoints", json={"url": receiver.url}).json()["id"]
        template = api.post("/v1/templates", json={"name": "t", "output": "text",
                                                    "source": "{{ event.type }} for {{ payload.who }}"}).json()
        proposed = [{"name": "text", "endpoint_ids": [ep], "template_id": template["id"]},
                    {"name": "reply", "action": "reply", "endpoint_ids": [ep],
                     "ai": {"sentiment": ["negative"]}}]
        result = api.post("/v1/routes/simulate", json={
            "event": {"type": "ticket.created", "payload": {"who": "Ada", "text": "This is broken and I am angry"}},
            "routes": proposed}).json()
        assert [d["route_id"] for d in result["deliveries"]] == ["proposed-1"]  # one delivery per endpoint
        assert result["deliveries"][0]["body"] == "ticket.created for Ada"
        assert result["ai"]["sentiment"] == "negative"
        assert receiver.requests == []

        # A stored event through the current routes (none yet): nothing would be delivered.
        stored = publish(api, {"type": "t", "payload": {}})
        wait_routed(api, stored)
        assert api.post("/v1/routes/simulate", json={"event_id": stored}).json()["deliveries"] == []
        for body in ({}, {"event_id": stored, "event": {}}, {"event": {"type": "t"}, "routes": [{"action": "x"}]}):
            assert api.post("/v1/routes/simulate", json=body).status_code == 400


def test_route_and_template_management_with_clear_400s(platform: Platform) -> None:
    with platform.client() as api:
        ep = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/x"}).json()["id"]
        template = api.post("/v1/templates", json={"name": "t", "source": '{"a": {{ payload.a | tojson }}}'}).json()
        route = api.post("/v1/routes", json={"endpoint_ids": [ep], "template_id": template["id"]}).json()
        tried = api.post(f"/v1/templates/{template['id']}/test", json={"type": "x", "payload": {"a": "q\"uote"}})
        assert tried.json() == {"ok": True, "payload": {"a": 'q"uote'}, "body": '{"a":"q\\"uote"}'}
        assert api.post(f"/v1/templates/{template['id']}/test", json={"payload": {}}).json()["payload"] == {"a": None}
        assert api.delete(f"/v1/templates/{template['id']}").status_code == 409  # in use

        changed = api.patch(f"/v1/routes/{route['id']}", json={"enabled": False, "event_types": ["a.*"]})
        assert changed.status_code == 200 and changed.json()["enabled"] is False
        assert api.get(f"/v1/routes/{route['id']}").json()["event_types"] == ["a.*"]
        for spec, message in (
            ({"filters": {"all": [{"path": "amount", "op": "gt", "value": 1}]}}, "must start with $"),
            ({"filters": {"all": [{"path": "$.a", "op": "regex", "value": "("}]}}, "is invalid"),
            ({"event_types": [""]}, "event_types[0]: must have at least 1 character"),
            ({"template_id": "tpl_0000000000000000000000000"}, "not found"),
            ({"ai": {"priority": ["meh"]}}, "priority values"),
            ({"action": "drop"}, "no endpoint_ids"),
        ):
            reply = api.patch(f"/v1/routes/{route['id']}", json=spec)
            assert reply.status_code == 400 and message in reply.json()["error"]["message"], (spec, reply.text)
        bad = api.post("/v1/templates", json={"name": "bad", "source": "{% for x in %}"})
        assert bad.status_code == 400 and "line 1" in bad.json()["error"]["message"]
        assert api.post("/v1/routes", json={"endpoint_ids": ["ep_0000000000000000000000000"]}).status_code == 404

        assert api.delete(f"/v1/routes/{route['id']}").status_code == 200
        assert api.get(f"/v1/routes/{route['id']}").status_code == 404
        assert api.delete(f"/v1/templates/{template['id']}").status_code == 200

        _, other_key = tenant_with_key(platform, "other", "admin")
        with platform.client(other_key) as other:
            assert other.get(f"/v1/templates/{template['id']}").status_code == 404
            assert other.patch(f"/v1/routes/{route['id']}", json={"name": "x"}).status_code == 404


def test_a_reply_route_posts_an_ai_drafted_reply_back_where_the_conversation_is(platform: Platform) -> None:
    from tests.e2e.test_sources import make_source, post, sender_headers
    from tests.plugins.test_sources import sample

    with Receiver(response_body=b"ok") as slack, platform.client() as api:
        source = make_source(api, "intercom")
        hook = api.post("/v1/endpoints", json={"url": slack.url, "destination": "slack"}).json()["id"]
        route = api.post("/v1/routes", json={"name": "answer customers", "source_id": source["id"],
                                             "action": "reply", "endpoint_ids": [hook]})
        assert route.status_code == 201, route.text
        body = sample("intercom")
        url = f"{platform.edge_url}/in/{source['id']}"
        accepted = post(platform, source, body, sender_headers(source, body, url))
        assert accepted.status_code == 202, accepted.text
        [posted] = slack.wait_for(lambda r: len(r) >= 1)
        reply = json.loads(posted.body)["text"]
        assert reply and len(reply) <= 600  # the local provider's draft
        event = wait_routed(api, accepted.json()["event_id"])
        assert event["conversation_key"] and event["routing"]["deliveries"][0]["action"] == "reply"
