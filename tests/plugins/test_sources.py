"""Every built-in source against its provider's own signing code.

Signatures come from the providers' SDKs (stripe, slack_sdk, twilio,
standardwebhooks) or, where there is none, the documented algorithm and test
vector (GitHub, Intercom). Each source gets the same failure cases, and a
property test that no single-byte change to a signed body verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from collections.abc import Callable
from urllib.parse import parse_qsl

import pytest
import stripe
from hypothesis import given, settings, strategies as st
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook
from twilio.request_validator import RequestValidator

from plugins.manager import load_registry
from plugins.sources.spec import (
    InboundRequest,
    InvalidSourceConfig,
    MalformedRequest,
    SignatureInvalid,
    UnsupportedContentType,
)
from switchboard.signatures import generate_webhook_secret

SAMPLES = Path(__file__).parents[1] / "fixtures" / "sources"
REGISTRY = load_registry()
URL = "https://hooks.example.com/in/src_0123456789abcdef0123456789abcdef"


def now() -> float:
    # Read when used, never at import: the suite may import this module minutes
    # before a test runs, and the SDKs and ``sign()`` read the real clock.
    return time.time()


def sample(name: str) -> bytes:
    return next(SAMPLES.glob(f"{name}.*")).read_bytes()


@dataclass(frozen=True)
class Case:
    """How a genuine sender of this type signs, and what its requests look like."""

    type: str
    secret: str
    sign: Callable[[bytes, str, int], dict[str, str]]  # body, secret, timestamp -> headers
    content_type: str = "application/json"
    config: dict | None = None
    timestamp_header: str | None = None  # headers that carry a signed timestamp

    def request(self, body: bytes, headers: dict[str, str], received_at: float | None = None) -> InboundRequest:
        received_at = now() if received_at is None else received_at
        headers = {"content-type": self.content_type, **{k.lower(): v for k, v in headers.items()}}
        return InboundRequest("POST", "/in/src_0123456789abcdef0123456789abcdef", headers, body,
                              received_at=received_at, url=URL)

    def signed(self, body: bytes, timestamp: int | None = None, secret: str | None = None) -> InboundRequest:
        return self.request(body, self.sign(body, secret or self.secret,
                                            int(now()) if timestamp is None else timestamp))


def stripe_sign(body: bytes, secret: str, ts: int) -> dict[str, str]:
    return {"stripe-signature": stripe.WebhookSignature.generate_signature_header(body.decode(), secret, ts)}


def slack_sign(body: bytes, secret: str, ts: int) -> dict[str, str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(ts), body=body)
    assert signature is not None  # None only without a timestamp or body
    return {"x-slack-signature": signature, "x-slack-request-timestamp": str(ts)}


def twilio_sign(body: bytes, secret: str, ts: int) -> dict[str, str]:
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    return {"x-twilio-signature": RequestValidator(secret).compute_signature(URL, params)}


def standard_sign(body: bytes, secret: str, ts: int) -> dict[str, str]:
    signature = Webhook(secret).sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", datetime.fromtimestamp(ts, UTC),
                                     body.decode())
    return {"webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "webhook-timestamp": str(ts),
            "webhook-signature": signature}


def github_sign(body: bytes, secret: str, ts: int) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"x-hub-signature-256": f"sha256={digest}", "x-github-event": "issues",
            "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}


def intercom_sign(body: bytes, secret: str, ts: int) -> dict[str, str]:
    return {"x-hub-signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}


def generic_sign(body: bytes, secret: str, ts: int) -> dict[str, str]:
    import base64
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha512).digest()
    return {"x-sig": "v=" + base64.b64encode(digest).decode(), "x-ts": str(ts)}


STANDARD_SECRET = generate_webhook_secret()
CASES = [
    Case("stripe", "whsec_test_secret_1234567890", stripe_sign, timestamp_header="stripe-signature"),
    Case("github", "It's a Secret to Everybody", github_sign),
    Case("slack", "8f742231b10e8888abcd99yyyzzz85a5", slack_sign, timestamp_header="x-slack-request-timestamp"),
    Case("intercom", "intercom-client-secret-0000", intercom_sign),
    Case("twilio", "12345678901234567890123456789012", twilio_sign, "application/x-www-form-urlencoded"),
    Case("standard-webhooks", STANDARD_SECRET, standard_sign, timestamp_header="webhook-timestamp"),
    Case("generic", "generic-shared-secret-000", generic_sign,
         config={"signature_header": "X-Sig", "signature_prefix": "v=", "algorithm": "sha512", "encoding": "base64",
                 "timestamp_header": "X-Ts", "event_type_field": "type"}, timestamp_header="x-ts"),
]
BY_TYPE = {case.type: case for case in CASES}


def plugin(case: Case):
    source = REGISTRY.source(case.type)
    return source, source.validate_config(case.config or {})


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.type)
def test_a_genuinely_signed_sample_verifies_and_normalizes(case: Case) -> None:
    source, config = plugin(case)
    body = sample(case.type)
    request = case.signed(body)
    source.verify(request, case.secret, config)
    event = source.normalize(request, config)
    assert event.type and event.type != "webhook"
    assert event.payload


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.type)
def test_tampered_body_wrong_secret_and_missing_or_garbled_signatures_are_refused(case: Case) -> None:
    source, config = plugin(case)
    body = sample(case.type)
    good = case.sign(body, case.secret, int(now()))
    tampered_body = body.replace(b"1", b"2", 1) if b"1" in body else body + b" "
    attempts = {
        "tampered body": case.request(tampered_body, good),
        "wrong secret": case.signed(body, secret=("x" * 10 + case.secret) if case.type != "standard-webhooks"
                                    else generate_webhook_secret()),
        "no signature": case.request(body, {k: v for k, v in good.items() if "sig" not in k}),
        "garbled signature": case.request(body, {k: ("garbled" if "sig" in k else v) for k, v in good.items()}),
    }
    for name, request in attempts.items():
        with pytest.raises(SignatureInvalid):
            source.verify(request, case.secret, config)
            pytest.fail(f"{case.type}: {name} verified")


@pytest.mark.parametrize("case", [c for c in CASES if c.timestamp_header], ids=lambda c: c.type)
@pytest.mark.parametrize("skew", [-301, 301, -86400])
def test_stale_or_future_timestamps_beyond_tolerance_are_refused(case: Case, skew: int) -> None:
    source, config = plugin(case)
    request = case.signed(sample(case.type), timestamp=int(now()) + skew)
    with pytest.raises(SignatureInvalid, match="tolerance"):
        source.verify(request, case.secret, config)
    within = case.signed(sample(case.type), timestamp=int(now()) - 299)
    source.verify(within, case.secret, config)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.type)
def test_an_unsupported_content_type_is_415(case: Case) -> None:
    source, config = plugin(case)
    body = sample(case.type)
    request = case.request(body, case.sign(body, case.secret, int(now())))
    # A type none reads (the generic source reads text/plain and more by default: see test_generic_source).
    wrong = InboundRequest(request.method, request.path, {**request.headers, "content-type": "multipart/form-data"},
                           body, received_at=now(), url=URL)
    with pytest.raises(UnsupportedContentType):
        source.normalize(wrong, config)


@pytest.mark.parametrize("case", [c for c in CASES if c.type != "twilio"], ids=lambda c: c.type)
def test_malformed_json_is_400(case: Case) -> None:
    source, config = plugin(case)
    with pytest.raises(MalformedRequest):
        source.normalize(case.signed(b"{not json"), config)


# Twilio signs the parsed form, not the bytes: its property is on parameters (below).
BYTE_SIGNED = [c for c in CASES if c.type != "twilio"]


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(BYTE_SIGNED), data=st.data())
def test_no_single_byte_change_to_a_signed_body_verifies(case: Case, data) -> None:
    source, config = plugin(case)
    body = sample(case.type)
    headers = case.sign(body, case.secret, int(now()))
    index = data.draw(st.integers(0, len(body) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]))
    changed = body[:index] + bytes([replacement]) + body[index + 1:]
    with pytest.raises(SignatureInvalid):
        source.verify(case.request(changed, headers), case.secret, config)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_no_change_to_a_signed_twilio_parameter_verifies(data) -> None:
    case = BY_TYPE["twilio"]
    source, config = plugin(case)
    params = dict(parse_qsl(sample("twilio").decode(), keep_blank_values=True))
    headers = case.sign(sample("twilio"), case.secret, int(now()))
    name = data.draw(st.sampled_from(sorted(params)))
    value = data.draw(st.text(min_size=0, max_size=20).filter(lambda v: v != params[name]))
    from urllib.parse import urlencode
    changed = urlencode({**params, name: value}).encode()
    with pytest.raises(SignatureInvalid):
        source.verify(case.request(changed, headers), case.secret, config)


def test_github_documented_test_vector() -> None:
    # From GitHub's "Validating webhook deliveries": secret, payload and signature.
    source, config = plugin(BY_TYPE["github"])
    request = BY_TYPE["github"].request(b"Hello, World!", {
        "x-hub-signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"})
    source.verify(request, "It's a Secret to Everybody", config)


def test_stripe_accepts_any_v1_during_a_secret_roll_as_stripes_sdk_does() -> None:
    case = BY_TYPE["stripe"]
    source, config = plugin(case)
    body = sample("stripe")
    signed_at = int(now())
    old = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_old_secret_xxxxxxxx", signed_at)
    new = stripe.WebhookSignature.generate_signature_header(body.decode(), case.secret, signed_at)
    header = f"{old},v1={new.split('v1=')[1]}"
    request = case.request(body, {"stripe-signature": header})
    source.verify(request, case.secret, config)
    stripe.WebhookSignature.verify_header(body.decode(), header, case.secret, tolerance=300)
    event = source.normalize(request, config)
    assert (event.type, event.provider_event_id) == ("invoice.paid", "evt_1NG8Du2eZvKYlo2CUI79vXWy")
    assert event.occurred_at == 1686089970


def test_github_ping_is_answered_and_types_include_the_action() -> None:
    case = BY_TYPE["github"]
    source, config = plugin(case)
    body = sample("github")
    headers = case.sign(body, case.secret, 0)
    event = source.normalize(case.request(body, headers), config)
    assert (event.type, event.provider_event_id) == ("issues.opened", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
    ping = case.request(b'{"zen": "Keep it logically awesome.", "hook_id": 1}', {**headers, "x-github-event": "ping"})
    assert source.handshake(ping, config).status == 200
    assert source.handshake(case.request(body, headers), config) is None
    form = case.request(b"payload=" + body.replace(b" ", b"+").replace(b"\n", b""), headers)
    form = InboundRequest("POST", form.path, {**form.headers, "content-type": "application/x-www-form-urlencoded"},
                          b"payload=" + json.dumps(json.loads(body)).encode(), url=URL)
    assert source.normalize(form, config).type == "issues.opened"


def test_slack_answers_url_verification_and_keys_the_conversation() -> None:
    case = BY_TYPE["slack"]
    source, config = plugin(case)
    challenge = (b'{"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",'
                 b' "type": "url_verification"}')
    request = case.signed(challenge)
    source.verify(request, case.secret, config)
    reply = source.handshake(request, config)
    assert json.loads(reply.body) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    event = source.normalize(case.signed(sample("slack")), config)
    assert (event.type, event.provider_event_id) == ("message", "Ev08MFMKH6")
    assert event.conversation_key == "C123ABC456:1355517523.000005"


def test_intercom_topic_and_conversation() -> None:
    case = BY_TYPE["intercom"]
    source, config = plugin(case)
    event = source.normalize(case.signed(sample("intercom")), config)
    assert (event.type, event.conversation_key) == ("conversation.user.created", "147")


def test_an_intercom_part_author_of_an_odd_type_is_read_as_the_topic_says_not_refused() -> None:
    case = BY_TYPE["intercom"]
    source, config = plugin(case)
    payload = json.loads(sample("intercom"))
    payload["data"]["item"]["conversation_parts"] = {"conversation_parts": [{"author": {"type": ["bot"]}}]}
    # A signed webhook whose part author type is not a string once failed normalization (unhashable).
    event = source.normalize(case.signed(json.dumps(payload).encode()), config)
    assert event.type == "conversation.user.created" and event.author == "customer"


def test_twilio_behind_a_proxy_uses_the_public_base_url_and_answers_twiml() -> None:
    case = BY_TYPE["twilio"]
    source = REGISTRY.source("twilio")
    config = source.validate_config({"public_base_url": "https://hooks.example.com/"})
    body = sample("twilio")
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    signature = RequestValidator(case.secret).compute_signature(URL, params)
    # The edge behind the proxy saw a different URL; the configured base makes it right.
    seen = InboundRequest("POST", "/in/src_0123456789abcdef0123456789abcdef",
                          {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
                          body, url="http://10.0.0.5:8080/in/src_0123456789abcdef0123456789abcdef")
    source.verify(seen, case.secret, config)
    with pytest.raises(SignatureInvalid):
        source.verify(seen, case.secret, source.validate_config({}))
    event = source.normalize(seen, config)
    assert event.type == "message.received" and event.conversation_key == "+15558675310|+15017122661"
    assert event.provider_event_id == "message:SM1f0e8ae6ade43cb3c0ce4525424e404f:received"
    reply = source.acknowledgement(config)
    assert reply.content_type == "text/xml" and b"<Response></Response>" in reply.body
    with pytest.raises(InvalidSourceConfig):
        source.validate_config({"public_base_url": "hooks.example.com"})


def test_standard_webhooks_accepts_svix_header_names_and_several_signatures() -> None:
    case = BY_TYPE["standard-webhooks"]
    source, config = plugin(case)
    body = sample("standard-webhooks")
    headers = standard_sign(body, case.secret, int(now()))
    svix = {k.replace("webhook-", "svix-"): v for k, v in headers.items()}
    svix["svix-signature"] = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " + svix["svix-signature"]
    source.verify(case.request(body, svix), case.secret, config)
    event = source.normalize(case.request(body, svix), config)
    assert (event.type, event.provider_event_id) == ("invoice.paid", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
    with pytest.raises(InvalidSourceConfig):
        source.validate_secret("not-a-whsec-secret")


def test_every_source_can_sign_its_own_sample_for_send_sample() -> None:
    for case in CASES:
        source, config = plugin(case)
        body = sample(case.type)
        headers = source.sign(body, case.secret, config, URL)
        source.verify(case.request(body, headers), case.secret, config)
