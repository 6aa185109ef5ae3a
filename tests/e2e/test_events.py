"""Listing and searching events (GET /v1/events) through the real platform: each filter, a cursor
walk without gaps or repeats, tenant isolation and the 400s; and the Switchboard-Event-Id header
on every accepted webhook's answer, JSON or a source's own (Twilio's TwiML)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl

import httpx
import pytest
import stripe
from twilio.request_validator import RequestValidator

from tests.e2e.slice import send, wait_for
from tests.e2e.test_auth import add_key, tenant_with_key
from tests.e2e.test_sources import make_source, post, sender_headers
from tests.plugins.test_sources import sample
from tests.platform_runner import Platform
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e

INVOICE_TEXT = "Payment failed for invoice in_42"


def listed(api: httpx.Client, **params) -> dict:
    reply = api.get("/v1/events", params=params)
    assert reply.status_code == 200, reply.text
    return reply.json()


def ids(api: httpx.Client, **params) -> list[str]:
    return [e["id"] for e in listed(api, **params)["data"]]


def walk(api: httpx.Client, **params) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = listed(api, **params, **({"cursor": cursor} if cursor else {}))
        pages.append([e["id"] for e in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


def refused(reply: httpx.Response, field: str) -> None:
    assert reply.status_code == 400, (reply.status_code, reply.text)
    error = reply.json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith(f"{field}:"), error


def test_events_are_listed_filtered_paged_and_kept_to_their_tenant(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        orders = api.post("/v1/sources", json={"name": "orders", "config": {"event_type_field": "type"}}).json()
        shop = api.post("/v1/sources", json={"name": "shop", "config": {"event_type_field": "type"}}).json()
        endpoint = api.post("/v1/endpoints", json={"url": receiver.url}).json()["id"]
        for spec in ({"name": "tests", "action": "drop", "event_types": ["test.*"]},
                     {"name": "orders", "event_types": ["order.*"], "endpoint_ids": [endpoint]},
                     {"name": "billing", "event_types": ["invoice.*"], "endpoint_ids": [endpoint],
                      "ai": {"category": ["billing"], "min_confidence": 0.3}}):
            assert api.post("/v1/routes", json=spec).status_code == 201
        sent: dict[str, list[str]] = {"order": [], "test": [], "misc": [], "invoice": [], "shipped": []}
        for n in range(6):
            sent["order"].append(send(platform, orders["id"], orders["secret"], {"type": "order.created", "n": n}))
            if n < 2:
                sent["test"].append(send(platform, orders["id"], orders["secret"], {"type": "test.ping"}))
                sent["misc"].append(send(platform, orders["id"], orders["secret"], {"type": "misc.note"}))
            if n < 3:
                sent["invoice"].append(send(platform, shop["id"], shop["secret"],
                                            {"type": "invoice.payment_failed", "text": INVOICE_TEXT}))
        sent["shipped"].append(send(platform, shop["id"], shop["secret"], {"type": "order.shipped"}))
        everything = {i for group in sent.values() for i in group}
        wait_for(lambda: len(listed(api, limit=1000)["data"]) == len(everything))

        # Another tenant's events never appear, nor do ours to it.
        other_tenant, other_key = tenant_with_key(platform, "other", "admin")
        with platform.client(other_key) as other:
            theirs = other.post("/v1/sources", json={"name": "theirs", "config": {"event_type_field": "type"}}).json()
            their_event = send(platform, theirs["id"], theirs["secret"], {"type": "order.created"})
            wait_for(lambda: ids(other) == [their_event])
            assert ids(other, type="order.*", source_id=orders["id"]) == []

        everyone = listed(api, limit=1000)["data"]
        assert {e["id"] for e in everyone} == everything and their_event not in {e["id"] for e in everyone}
        times = [datetime.fromisoformat(e["received_at"]) for e in everyone]
        assert times == sorted(times, reverse=True)  # newest first
        first = everyone[0]
        assert first["id"] == sent["shipped"][0] and first["source_id"] == shop["id"]
        assert (first["type"], first["status"], first["deliveries"], first["category"]) == \
            ("order.shipped", "routed", 1, None)

        # Each filter.
        assert set(ids(api, source_id=shop["id"])) == {*sent["invoice"], *sent["shipped"]}
        assert set(ids(api, type="order.*")) == {*sent["order"], *sent["shipped"]}
        assert set(ids(api, type="*.no?e")) == set(sent["misc"])
        assert set(ids(api, type="[mt]*")) == {*sent["misc"], *sent["test"]}
        assert set(ids(api, status="dropped")) == set(sent["test"])
        assert set(ids(api, status="unrouted")) == set(sent["misc"])
        assert set(ids(api, status="routed")) == {*sent["order"], *sent["shipped"], *sent["invoice"]}
        assert set(ids(api, category="billing")) == set(sent["invoice"])
        assert ids(api, category="billing", source_id=orders["id"]) == []
        since, until = everyone[9]["received_at"], everyone[2]["received_at"]
        assert ids(api, since=since, until=until) == [e["id"] for e in everyone[3:10]]

        # The cursor walks every event once, in order, alone and with a filter.
        pages = walk(api, limit=3)
        assert [len(p) for p in pages] == [3, 3, 3, 3, 2]
        assert [i for p in pages for i in p] == [e["id"] for e in everyone]
        orders_walked = [i for p in walk(api, type="order.*", limit=2) for i in p]
        assert orders_walked == [e["id"] for e in everyone if e["type"].startswith("order.")]

        # Refusals name the field.
        cursor = listed(api, limit=2)["next_cursor"]
        for params, field in (
            ({"type": ""}, "type"), ({"type": "x" * 201}, "type"), ({"type": "order.\x01"}, "type"),
            ({"since": "yesterday"}, "since"), ({"since": until, "until": since}, "until"),
            ({"status": "delivered"}, "status"), ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"),
            ({"limit": "ten"}, "limit"), ({"cursor": "not a cursor!"}, "cursor"), ({"cursor": "abcdefgh"}, "cursor"),
            ({"cursor": cursor, "status": "routed"}, "cursor"), ({"page": "2"}, "page"),
        ):
            refused(api.get("/v1/events", params=params), field)
        with platform.client(other_key) as other:
            refused(other.get("/v1/events", params={"cursor": cursor}), "cursor")
        # Listing needs the read scope.
        publisher = add_key(platform, other_tenant, "events:publish")["secret"]
        with platform.client(publisher) as limited:
            assert limited.get("/v1/events").status_code == 403


def test_every_accepted_webhook_answer_carries_the_event_id(platform: Platform) -> None:
    with platform.client() as api:
        # A JSON answer, and a duplicate's.
        stripe_source = make_source(api, "stripe")
        body = sample("stripe")
        header = {"stripe-signature": stripe.WebhookSignature.generate_signature_header(
            body.decode(), stripe_source["secret"]), "content-type": "application/json"}
        first, again = post(platform, stripe_source, body, header), post(platform, stripe_source, body, header)
        assert first.status_code == 202 and again.json()["duplicate"] is True
        assert first.headers["switchboard-event-id"] == first.json()["event_id"]
        assert again.headers["switchboard-event-id"] == first.json()["event_id"]

        # A source's own answer: Twilio's TwiML, signed by Twilio's SDK.
        twilio = make_source(api, "twilio", config={"public_base_url": "https://hooks.example.com"})
        form = sample("twilio")
        signature = RequestValidator(twilio["secret"]).compute_signature(
            f"https://hooks.example.com/in/{twilio['id']}", dict(parse_qsl(form.decode(), keep_blank_values=True)))
        twiml = post(platform, twilio, form, {"x-twilio-signature": signature,
                                              "content-type": "application/x-www-form-urlencoded"})
        assert twiml.status_code == 200 and "<Response>" in twiml.text
        event_id = twiml.headers["switchboard-event-id"]
        assert event_id.startswith("evt_")
        found = wait_for(lambda: ids(api, source_id=twilio["id"]))
        assert found == [event_id]
        assert api.get(f"/v1/events/{event_id}").json()["source_type"] == "twilio"

        # No event, no id: a handshake, and a refusal.
        slack = make_source(api, "slack")
        challenge = b'{"token": "t", "challenge": "abc123", "type": "url_verification"}'
        handshake = post(platform, slack, challenge, sender_headers(slack, challenge, slack["ingest_url"]))
        assert handshake.status_code == 200 and "switchboard-event-id" not in handshake.headers
        tampered = post(platform, stripe_source, body + b" ", header)
        assert tampered.status_code == 401 and "switchboard-event-id" not in tampered.headers
