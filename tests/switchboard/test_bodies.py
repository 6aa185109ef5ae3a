"""Bodies on the bus: any bytes survive a message (and jsonb), and messages from before read the same."""

from __future__ import annotations

import os

import orjson
import pytest

from switchboard.bodies import body_fields, body_from_fields, body_text, is_json_media, media_type, needs_json
from switchboard.database import contains_nul
from switchboard.events import DeliveryMessage, Event


@pytest.mark.parametrize("body", [None, b"", b'{"a": 1}', "caf\u00e9".encode(), b"nul \x00 inside",
                                  b"\xff\xfe not utf-8", os.urandom(512)])
def test_any_body_survives_a_json_message_without_nul(body: bytes | None) -> None:
    fields = orjson.loads(orjson.dumps(body_fields(body)))
    assert body_from_fields(fields) == body
    assert not contains_nul(fields)  # storable in jsonb, as delivery messages are


def test_text_travels_as_text_and_anything_else_in_base64() -> None:
    assert body_fields(b'{"a": 1}') == {"body": '{"a": 1}'}
    assert body_fields(b"\xff") == {"body": None, "body_base64": "/w=="}
    assert body_text(b"a\x00b") is None and body_text(b"\xc3\x28") is None and body_text(b"ok") == "ok"
    with pytest.raises(ValueError, match="base64"):
        body_from_fields({"body_base64": "not base64!"})


def test_messages_written_before_raw_bodies_read_as_before() -> None:
    old_event = {"id": "evt_1", "tenant_id": "t", "source_id": "s", "type": "a", "received_at": 1.0,
                 "payload": {"a": 1}, "body": '{"a": 1}'}
    event = Event.from_message(old_event)
    assert event.body == b'{"a": 1}' and event.content_type == "" and event.has_payload
    old_delivery = {"event_id": "evt_1", "tenant_id": "t", "endpoint_id": "ep", "route_id": "rt", "event_type": "a",
                    "source_id": "s", "received_at": 1.0, "payload": {"a": 1}, "body": '{"a": 1}'}
    delivery = DeliveryMessage.from_message(old_delivery)
    assert delivery.body == b'{"a": 1}' and delivery.content_type is None and delivery.has_payload


def test_events_and_deliveries_carry_binary_bodies_with_their_content_type() -> None:
    body = b"\x00\x01\xff" + os.urandom(64)
    event = Event(id="evt_1", tenant_id="t", source_id="s", type="a", received_at=1.0, payload=None, body=body,
                  content_type="application/octet-stream")
    assert Event.from_message(orjson.loads(orjson.dumps(event.to_message()))) == event
    assert not event.has_payload
    delivery = DeliveryMessage(event_id="evt_1", tenant_id="t", endpoint_id="ep", route_id="rt", event_type="a",
                               source_id="s", received_at=1.0, payload=None, body=body,
                               content_type="application/octet-stream")
    assert DeliveryMessage.from_message(orjson.loads(orjson.dumps(delivery.to_message()))) == delivery
    assert not delivery.has_payload


@pytest.mark.parametrize(("content_type", "json"), [("", True), (None, True), ("application/json", True),
                                                    ("Application/JSON; charset=utf-8", True),
                                                    ("application/cloudevents+json", True), ("text/plain", False),
                                                    ("application/x-www-form-urlencoded", False)])
def test_what_counts_as_json(content_type: str | None, json: bool) -> None:
    assert is_json_media(content_type) is json


def test_a_refusal_names_the_media_type() -> None:
    assert media_type(" Text/Plain ; charset=utf-8") == "text/plain"
    assert needs_json("filters need", "text/plain; charset=utf-8") == \
        "filters need a JSON payload (this event is text/plain)"
