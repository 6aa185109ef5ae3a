"""Non-JSON bodies through the running platform: verified over the raw bytes, stored and delivered byte for byte
with their Content-Type; the JSON-only features (filters, AI conditions, transforms, chat destinations) refuse
them clearly."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time

import httpx
import pytest

from tests.e2e.slice import sign_raw, wait_for
from tests.e2e.test_listen import LOCAL_SECRET, frames, platform_key, start_listen, stop, wait_listening
from tests.e2e.test_slice import wait_for_delivery
from tests.platform_runner import Platform
from tests.receivers import Received, Receiver

pytestmark = pytest.mark.e2e

# Random bytes that are not UTF-8, with a NUL among them: what a binary sender may send.
BINARY = b"\x00\xff\xfe\x80" + os.urandom(200) + b"\xc3\x28\x00"
BODIES = [
    ("application/x-www-form-urlencoded", b"order=42&note=caf%C3%A9&tag=a&tag=b"),
    ("application/xml", b'<?xml version="1.0"?><order id="42"><total>19.99</total></order>'),
    ("text/plain; charset=utf-8", "ready: caf\u00e9 \u2615\n".encode()),
    ("application/octet-stream", BINARY),
]


def make_source(api: httpx.Client, config: dict | None = None) -> dict:
    reply = api.post("/v1/sources", json={"name": "raw", "type": "generic",
                                          "config": config or {"event_type_header": "x-event"}})
    assert reply.status_code == 201, reply.text
    return reply.json()


def post_raw(platform: Platform, source: dict, body: bytes, content_type: str, event_type: str = "raw.thing",
             signature: str | None = None) -> httpx.Response:
    headers = {"content-type": content_type, "x-event": event_type,
               "x-signature": signature or sign_raw(source["secret"], body)}
    return httpx.post(f"{platform.edge_url}/in/{source['id']}", content=body, headers=headers, timeout=30)


def standard_signature_holds(secret: str, request: Received) -> bool:
    """Standard Webhooks' v1 over the exact bytes, checked here by hand: the library parses bodies as JSON."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    expected = "v1," + base64.b64encode(hmac.digest(key, signed, hashlib.sha256)).decode()
    return expected in request.headers["webhook-signature"].split()


def one_byte_changed(body: bytes) -> bytes:
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1:]


def test_non_json_bodies_are_verified_stored_and_delivered_byte_for_byte(platform: Platform) -> None:
    with Receiver() as receiver, platform.client() as api:
        source = make_source(api)
        endpoint = api.post("/v1/endpoints", json={"url": receiver.url}).json()
        api.post("/v1/routes", json={"endpoint_ids": [endpoint["id"]]}).raise_for_status()
        accepted = {}
        for content_type, body in BODIES:
            reply = post_raw(platform, source, body, content_type)
            assert reply.status_code == 202, (content_type, reply.text)
            accepted[reply.json()["event_id"]] = (content_type, body)
            # The signature is over the exact bytes: one changed bit is refused before anything is parsed.
            tampered = post_raw(platform, source, one_byte_changed(body), content_type,
                                signature=sign_raw(source["secret"], body))
            assert tampered.status_code == 401 and tampered.json()["error"]["code"] == "invalid_signature"
        # A type the source does not read is 415, after the signature.
        refused = post_raw(platform, source, b"--x--", "multipart/form-data; boundary=x")
        assert refused.status_code == 415 and refused.json()["error"]["code"] == "unsupported_media_type"
        # A NUL in a body is kept (binary above); in a payload, which PostgreSQL's jsonb cannot hold, it is a 400.
        nul_field = post_raw(platform, source, b"a=%00", "application/x-www-form-urlencoded")
        assert nul_field.status_code == 400 and "NUL" in nul_field.json()["error"]["message"]

        got = receiver.wait_for(lambda r: len(r) >= len(BODIES))
        time.sleep(0.5)
        assert len(receiver.requests) == len(BODIES)
        secret = api.get(f"/v1/endpoints/{endpoint['id']}/secret").json()["secret"]
        for request in got:
            event_id = request.headers["x-switchboard-event-id"]
            content_type, body = accepted[event_id]
            assert request.body == body and request.headers["content-type"] == content_type
            assert request.headers["x-switchboard-event-type"] == "raw.thing"
            assert standard_signature_holds(secret, request)

        for event_id, (content_type, body) in accepted.items():
            event = wait_for_delivery(api, event_id)
            assert event["content_type"] == content_type and event["type"] == "raw.thing"
            if body is BINARY:
                assert base64.b64decode(event["body_base64"]) == body and event["body_text"] is None
            else:
                assert event["body_text"].encode() == body and event["body_base64"] is None
            if content_type.startswith("application/x-www-form-urlencoded"):
                assert event["payload"] == {"order": "42", "note": "caf\u00e9", "tag": ["a", "b"]}
            else:
                assert event["payload"] is None
            delivery = api.get(f"/v1/deliveries/{event['deliveries'][0]['id']}").json()
            assert delivery["request_content_type"] == content_type
            if body is BINARY:
                assert base64.b64decode(delivery["request_body_base64"]) == body and not delivery["request_body"]
            else:
                assert delivery["request_body"].encode() == body

        # A JSON body to the same source is as before: parsed, delivered as sent, as application/json.
        plain = b'{"n": 1}'
        reply = post_raw(platform, source, plain, "application/json")
        event = wait_for_delivery(api, reply.json()["event_id"])
        assert event["payload"] == {"n": 1} and event["body_text"] is None and event["body_base64"] is None
        last = receiver.wait_for(lambda r: len(r) == len(BODIES) + 1)[-1]
        assert last.body == plain and last.headers["content-type"] == "application/json"


def test_json_only_features_refuse_a_non_json_event_clearly(platform: Platform) -> None:
    with Receiver() as plain, Receiver() as filtered, Receiver() as transformed, Receiver() as chat, \
            platform.client() as api:
        source = make_source(api, {"event_type": "note.posted", "content_types": ["text/plain", "application/json"]})
        ids = {name: api.post("/v1/endpoints", json={"url": r.url, **extra}).json()["id"]
               for name, r, extra in (("plain", plain, {}), ("filtered", filtered, {}),
                                      ("transformed", transformed, {}), ("chat", chat, {"destination": "slack"}))}
        template = api.post("/v1/templates", json={"name": "t", "source": '{"n": {{ payload.n | tojson }}}'}).json()
        routes: dict[str, dict] = {
            "plain": {"endpoint_ids": [ids["plain"], ids["chat"]]},
            "filtered": {"endpoint_ids": [ids["filtered"]], "filters": {"all": [{"path": "$.n", "op": "exists",
                                                                                 "value": True}]}},
            "ai": {"endpoint_ids": [ids["filtered"]], "ai": {"category": ["billing"]}},
            "transformed": {"endpoint_ids": [ids["transformed"]], "template_id": template["id"]},
        }
        route_ids = {name: api.post("/v1/routes", json={"name": name, **spec}).json()["id"]
                     for name, spec in routes.items()}

        # Not in the source's content_types: 415, whatever the signature.
        xml = b"<a/>"
        assert post_raw(platform, source, xml, "application/xml").status_code == 415

        body = b"the printer is on fire"
        reply = post_raw(platform, source, body, "text/plain")
        assert reply.status_code == 202, reply.text
        event_id = reply.json()["event_id"]
        event = wait_for(lambda: (e := api.get(f"/v1/events/{event_id}").json()).get("routing") and
                         len(e["deliveries"]) == 3 and all(d["status"] != "pending" for d in e["deliveries"]) and e)
        assert event["type"] == "note.posted"  # the source's event_type: no header, no JSON field
        verdicts = {v["route_id"]: v for v in event["routing"]["routes"]}
        assert verdicts[route_ids["filtered"]]["matched"] is False
        assert verdicts[route_ids["filtered"]]["reasons"] == ["filters need a JSON payload (this event is text/plain)"]
        assert verdicts[route_ids["ai"]]["reasons"] == ["ai conditions need a JSON payload (this event is text/plain)"]
        assert "JSON payload" in event["routing"]["ai_note"]
        by_endpoint = {d["endpoint_id"]: d for d in event["deliveries"]}
        assert by_endpoint[ids["plain"]]["status"] == "succeeded"
        [transform] = event["routing"]["transforms"]
        assert transform["error"] == "transforms need a JSON payload (this event is text/plain)"
        [attempt] = by_endpoint[ids["transformed"]]["attempts"]
        assert attempt["error"] == (f"transform {template['id']} v1 failed: "
                                    f"transforms need a JSON payload (this event is text/plain)")
        [attempt] = by_endpoint[ids["chat"]]["attempts"]
        assert by_endpoint[ids["chat"]]["status"] == "failed"
        assert attempt["error"] == "the slack destination needs a JSON payload (this event is text/plain)"
        time.sleep(0.5)
        assert [r.body for r in plain.requests] == [body]
        assert filtered.requests == transformed.requests == chat.requests == []

        # The same routes take a JSON event from the same source as before.
        reply = post_raw(platform, source, b'{"n": 7}', "application/json")
        json_event = wait_for_delivery(api, reply.json()["event_id"])
        assert {d["endpoint_id"] for d in json_event["deliveries"]} >= {ids["filtered"], ids["transformed"]}
        assert transformed.wait_for(lambda r: len(r) == 1)[0].body == b'{"n":7}'


def test_listen_carries_a_binary_body_with_its_content_type(platform: Platform) -> None:
    with Receiver() as receiver, Receiver() as laptop, platform.client() as api:
        source = make_source(api)
        endpoint = api.post("/v1/endpoints", json={"url": receiver.url}).json()
        api.post("/v1/routes", json={"endpoint_ids": [endpoint["id"]]}).raise_for_status()
        stored = post_raw(platform, source, BINARY, "application/octet-stream").json()["event_id"]
        wait_for_delivery(api, stored)
        key = platform_key(platform)
        [replayed] = frames(platform, key, 1, source_id=source["id"], replay=1)
        assert replayed["id"] == stored and replayed["content_type"] == "application/octet-stream"
        assert base64.b64decode(replayed["body_base64"]) == BINARY and replayed["body"] is None

        listener = start_listen(platform, key, "--source", source["id"], "--forward-to", laptop.url,
                                "--secret", LOCAL_SECRET, "--no-commands")
        try:
            wait_listening(listener)
            text = b"<ping/>"
            live = post_raw(platform, source, BINARY, "application/octet-stream").json()["event_id"]
            xml = post_raw(platform, source, text, "text/xml; charset=utf-8").json()["event_id"]
            got = laptop.wait_for(lambda r: len(r) == 2)
        finally:
            stop(listener)
        assert [r.headers["webhook-id"] for r in got] == [live, xml]
        assert [(r.body, r.headers["content-type"]) for r in got] == [
            (BINARY, "application/octet-stream"), (text, "text/xml; charset=utf-8")]
        assert all(standard_signature_holds(LOCAL_SECRET, request) for request in got)
