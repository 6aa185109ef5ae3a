"""JSON log lines: structured fields, trace ids, and the redaction rule of docs/observability.md."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider

from switchboard.logs import REDACTED, JsonFormatter, TextFormatter, redact, redact_text

KEY = "sb_live_abcdefghjkmn_0123456789abcdefghjkmnpqrstvwxyz0123456789"


def record(msg: str, *args: object, exc_info=None, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("switchboard.test", logging.INFO, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def json_line(made: logging.LogRecord) -> dict:
    return json.loads(JsonFormatter("router").format(made))


def test_a_line_carries_its_fields() -> None:
    line = json_line(record("delivered %s", "once", event_id="evt_1", tenant_id="t1", attempt=2))
    assert line["msg"] == "delivered once"
    assert line["service"] == "router" and line["level"] == "info" and line["logger"] == "switchboard.test"
    assert (line["event_id"], line["tenant_id"], line["attempt"]) == ("evt_1", "t1", 2)
    assert "trace_id" not in line  # no span, no trace id


def test_inside_a_span_a_line_carries_the_trace_and_the_span_tags() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("router.route") as span:
        span.set_attribute("switchboard.event_id", "evt_9")
        span.set_attribute("switchboard.tenant_id", "t9")
        line = json_line(record("routed"))
        given = json_line(record("routed", event_id="evt_given"))
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["span_id"] == format(span.get_span_context().span_id, "016x")
    assert (line["event_id"], line["tenant_id"]) == ("evt_9", "t9")
    assert given["event_id"] == "evt_given"  # extra wins over the span's tag


@pytest.mark.parametrize("key", [
    "secret", "source_secret", "client_secret", "password", "db_passwd", "token", "access_token",
    "Authorization", "x-api-key", "api_key", "apikey", "webhook-signature", "x-signature", "cookie",
    "set-cookie", "master_key", "signing_key", "private_key", "credentials",
])
def test_fields_named_like_credentials_are_redacted(key: str) -> None:
    assert redact(key, "value") == REDACTED
    assert json_line(record("x", **{key.replace("-", "_"): "hunter2"}))[key.replace("-", "_")] == REDACTED


@pytest.mark.parametrize("key", ["key_id", "input_tokens", "output_tokens", "event_id", "signing", "auth_cache_ttl"])
def test_ordinary_fields_are_kept(key: str) -> None:
    assert redact(key, 42) == 42


def test_credentials_inside_nested_fields_are_redacted() -> None:
    line = json_line(record("received", headers={"authorization": "Bearer x", "webhook-signature": "v1,abc",
                                                 "content-type": "application/json"}))
    assert line["headers"] == {"authorization": REDACTED, "webhook-signature": REDACTED,
                               "content-type": "application/json"}


@pytest.mark.parametrize("text, expected", [
    (f"key {KEY} refused", "key sb_live_abcdefghjkmn_[redacted] refused"),
    ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw= rotated", "secret whsec_[redacted] rotated"),
    (f"sent Authorization: Bearer {KEY}", "sent Authorization: Bearer [redacted]"),
    ("header bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "header bearer [redacted]"),
    ("authorization: Basic QUMxMjM0OnNlY3JldHRva2Vu", "authorization: Basic [redacted]"),
    ("provider key sk-ant-api03-abcdefghijklmnopqrstuvwxyz failed", "provider key sk-[redacted] failed"),
    ("slack xoxb-1234567890-abcdefghij", "slack xox-[redacted]"),
    ("from jane.doe+tag@example.co.uk", "from [email]"),
    ("text +1 (555) 123-4567 and +447911123456", "text [phone] and [phone]"),
    ("call 555-123-4567 or (555) 123-4567", "call [phone] or [phone]"),
])
def test_secrets_and_personal_data_in_text_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", [
    "at 2024-01-01T10:00:00+00:00", "id 550e8400-e29b-41d4-a716-446655440000", "v1.2.3 on 192.168.100.1",
    "evt_01JABCDEF attempt 3 status 503 in 12.5 ms", "bearer token missing",
])
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact_text(text) == text


def test_values_that_are_not_text_are_masked_as_their_text() -> None:
    from switchboard.logs import redact

    assert redact("error", ValueError("mail jane@example.com")) == "mail [email]"
    assert redact("attempt", 3) == 3 and redact("ok", True) is True and redact("none", None) is None


def test_messages_string_fields_and_exceptions_are_masked_in_both_formats() -> None:
    try:
        raise ValueError("receiver ops@example.com answered 500")
    except ValueError:
        exc_info = sys.exc_info()
    made = record("retrying for %s", "ops@example.com", error="sent to ops@example.com", exc_info=exc_info)
    line = json_line(made)
    assert line["msg"] == "retrying for [email]"
    assert line["error"] == "sent to [email]"
    assert "ops@example.com" not in line["exc"] and "[email]" in line["exc"]
    text = TextFormatter("router").format(made)
    assert "ops@example.com" not in text and "error=sent to [email]" in text
