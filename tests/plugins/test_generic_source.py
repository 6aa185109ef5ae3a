import hashlib
import hmac

import pytest

from plugins.sources.generic import GenericHmacSource
from plugins.sources.spec import (
    InboundRequest,
    InvalidSourceConfig,
    MalformedRequest,
    SignatureInvalid,
    UnsupportedContentType,
)

SECRET = "a-sender-secret-of-some-length"
source = GenericHmacSource()


def request(body: bytes, **headers: str) -> InboundRequest:
    return InboundRequest(method="POST", path="/in/x", headers=headers, body=body)


def sig(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_correct_signature_verifies_in_any_letter_case() -> None:
    body = b'{"a":1}'
    config = source.validate_config({})
    source.verify(request(body, **{"x-signature": sig(body)}), SECRET, config)
    source.verify(request(body, **{"x-signature": sig(body).upper()}), SECRET, config)


@pytest.mark.parametrize("headers", [
    {},
    {"x-signature": ""},
    {"x-signature": "00" * 32},
    {"x-signature": sig(b'{"a":1}', "another-secret-entirely")},
    {"x-signature": sig(b'{"a":2}')},
])
def test_missing_or_wrong_signatures_are_rejected(headers) -> None:
    with pytest.raises(SignatureInvalid):
        source.verify(request(b'{"a":1}', **headers), SECRET, source.validate_config({}))


def test_header_name_and_prefix_are_configurable() -> None:
    config = source.validate_config({"signature_header": "X-Hub-Signature-256", "signature_prefix": "sha256="})
    body = b"{}"
    source.verify(request(body, **{"x-hub-signature-256": "sha256=" + sig(body)}), SECRET, config)
    with pytest.raises(SignatureInvalid, match="must start with"):
        source.verify(request(body, **{"x-hub-signature-256": sig(body)}), SECRET, config)


def test_normalize_reads_type_and_provider_id_where_configured() -> None:
    body = b'{"type": "invoice.paid", "amount": 5}'
    by_field = source.normalize(request(body), source.validate_config({"event_type_field": "type"}))
    assert by_field.type == "invoice.paid" and by_field.payload == {"type": "invoice.paid", "amount": 5}
    by_header = source.normalize(
        request(body, **{"x-event": "hdr.type", "x-id": "d-1"}),
        source.validate_config({"event_type_header": "X-Event", "id_header": "X-Id"}),
    )
    assert (by_header.type, by_header.provider_event_id) == ("hdr.type", "d-1")
    plain = source.normalize(request(b"[1, 2]"), source.validate_config({}))
    assert plain.type == "webhook" and plain.provider_event_id is None


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b""])
def test_malformed_bodies_are_rejected(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        source.normalize(request(body), source.validate_config({}))


def test_unknown_or_mistyped_config_is_rejected() -> None:
    with pytest.raises(InvalidSourceConfig, match="unknown config keys"):
        source.validate_config({"signature_headr": "x"})
    with pytest.raises(InvalidSourceConfig, match="must be a string"):
        source.validate_config({"id_header": 5})


@pytest.mark.parametrize(("content_type", "body", "payload"), [
    ("application/x-www-form-urlencoded", b"a=1&b=x&b=y", {"a": "1", "b": ["x", "y"]}),
    ("application/xml; charset=utf-8", b"<a>1</a>", None),
    ("text/plain", b"just words", None),
    ("application/octet-stream", b"\x00\xff\xfe binary", None),
    ("application/vnd.api+json", b'{"a": 1}', {"a": 1}),
])
def test_non_json_bodies_are_verified_over_their_bytes_and_kept_as_they_came(content_type, body, payload) -> None:
    config = source.validate_config({})
    signed = request(body, **{"content-type": content_type, "x-signature": sig(body)})
    source.verify(signed, SECRET, config)
    event = source.normalize(signed, config)
    assert event.payload == payload and event.body == body and event.type == "webhook"
    with pytest.raises(SignatureInvalid):
        source.verify(request(body + b"!", **{"content-type": content_type, "x-signature": sig(body)}), SECRET,
                      config)


def test_content_types_limit_what_is_read_and_event_type_names_a_body_without_one() -> None:
    config = source.validate_config({"content_types": ["Text/*", "application/json"], "event_type": "note"})
    assert config["content_types"] == ["text/*", "application/json"]
    assert source.normalize(request(b"hi", **{"content-type": "text/csv"}), config).type == "note"
    assert source.normalize(request(b'{"a": 1}'), config).payload == {"a": 1}  # no Content-Type: JSON
    with pytest.raises(UnsupportedContentType, match="content_types"):
        source.normalize(request(b"<a/>", **{"content-type": "application/xml"}), config)
    anything = source.validate_config({"content_types": ["*/*"]})
    assert source.normalize(request(b"\x89PNG", **{"content-type": "image/png"}), anything).payload is None
    by_default = source.validate_config({})
    with pytest.raises(UnsupportedContentType):
        source.normalize(request(b"--b--", **{"content-type": "multipart/form-data; boundary=b"}), by_default)
    without_json = source.validate_config({"content_types": ["text/plain"]})
    with pytest.raises(UnsupportedContentType):
        source.normalize(request(b"hi"), without_json)  # no Content-Type, and JSON not taken


def test_a_form_field_names_the_type_and_a_broken_form_is_refused() -> None:
    config = source.validate_config({"event_type_field": "kind"})
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert source.normalize(request(b"kind=order.paid&n=1", **form), config).type == "order.paid"
    with pytest.raises(MalformedRequest):
        source.normalize(request(b"caf\xe9=1", **form), config)


@pytest.mark.parametrize("content_types", ["text/plain", ["text"], ["text/plain; charset=x"], [5], ["*/plain"],
                                           ["a/b"] * 21])
def test_malformed_content_types_are_refused(content_types) -> None:
    with pytest.raises(InvalidSourceConfig, match="content_types"):
        source.validate_config({"content_types": content_types})
