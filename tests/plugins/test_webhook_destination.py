import json

import socket

import pytest
from standardwebhooks.webhooks import Webhook

from plugins.destinations.spec import DestinationContext, EndpointTarget, InvalidEndpointConfig, OutboundMessage
from plugins.destinations.webhook import WebhookDestination
from switchboard.signatures import generate_webhook_secret, sign_standard_webhook
from tests.outbound_fixture import outbound_client
from tests.receivers import Receiver

destination = WebhookDestination()
MESSAGE = OutboundMessage(delivery_id="evt_1:ep_1", event_id="evt_1", tenant_id="ten_1", event_type="a.b",
                          payload={"x": [1, "ü"]}, attempt=1)


async def send(target: EndpointTarget, allow_private: bool = True):
    async with outbound_client() as http:
        return await destination.send(MESSAGE, target, DestinationContext(http, 5.0, allow_private))


async def test_a_real_receiver_gets_a_body_it_can_verify_with_standardwebhooks() -> None:
    secret = generate_webhook_secret()
    with Receiver() as receiver:
        result = await send(EndpointTarget(receiver.url, secret))
    assert result.ok and result.status_code == 200 and result.response_excerpt == "ok"
    [got] = receiver.requests
    assert Webhook(secret).verify(got.body, got.headers) == MESSAGE.payload
    assert got.headers["webhook-id"] == MESSAGE.delivery_id


def test_signature_matches_the_spec_example() -> None:
    # The worked example from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign_standard_webhook(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("status,retryable", [(500, True), (503, True), (429, True), (408, True),
                                              (400, False), (404, False), (410, False)])
async def test_status_codes_decide_whether_to_retry(status: int, retryable: bool) -> None:
    with Receiver(status=status, headers={"retry-after": "7"}) as receiver:
        result = await send(EndpointTarget(receiver.url, generate_webhook_secret()))
    assert not result.ok and result.status_code == status and result.retryable is retryable
    assert result.retry_after_s == (7.0 if retryable else None)
    assert result.response_excerpt == "not now" and result.response_headers["retry-after"] == "7"


async def test_connection_errors_are_retryable() -> None:
    with socket.socket() as closed:  # a port nobody listens on: the connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = await send(EndpointTarget(f"http://127.0.0.1:{port}/x", generate_webhook_secret()))
    assert not result.ok and result.retryable and "cannot connect" in result.error


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://169.254.169.254/latest", "http://10.1.2.3/",
                                 "http://[::1]/x", "http://localhost/x",
                                 "http://100.100.100.200/latest", "http://[::ffff:127.0.0.1]/x"])
async def test_private_addresses_are_refused_unless_allowed(url: str) -> None:
    result = await send(EndpointTarget(url, generate_webhook_secret()), allow_private=False)
    assert not result.ok and not result.retryable and "private" in result.error


@pytest.mark.parametrize("url,secret", [("ftp://x/y", None), ("http://user:pw@host/x", None), ("not a url", None),
                                        ("https://ok.example/x", "plain-secret")])
def test_invalid_endpoints_are_rejected_at_creation(url: str, secret: str | None) -> None:
    with pytest.raises(InvalidEndpointConfig):
        destination.validate(EndpointTarget(url, secret or generate_webhook_secret()))


def test_generated_secrets_are_distinct_and_well_formed() -> None:
    a, b = generate_webhook_secret(), generate_webhook_secret()
    assert a != b and a.startswith("whsec_")
    Webhook(a)  # the reference library accepts it
    assert json.loads(json.dumps(a)) == a


def test_our_verifier_agrees_with_the_reference_library() -> None:
    import time

    from standardwebhooks.webhooks import Webhook as Reference

    from switchboard.signatures import verify_standard_webhook

    secret = generate_webhook_secret()
    body = b'{"a":1}'
    now = int(time.time())
    headers = {"webhook-id": "m1", "webhook-timestamp": str(now),
               "webhook-signature": "v1,AAAAAAAA " + sign_standard_webhook(secret, "m1", now, body)}
    assert Reference(secret).verify(body, headers) == {"a": 1}
    assert verify_standard_webhook(secret, headers, body)
    assert not verify_standard_webhook(secret, headers, body + b" ")
    assert not verify_standard_webhook(generate_webhook_secret(), headers, body)
    assert not verify_standard_webhook(secret, headers, body, now=now + 301)
    assert not verify_standard_webhook(secret, {**headers, "webhook-timestamp": "soon"}, body)


async def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline() -> None:
    import asyncio
    import time

    async def drip(reader, writer):
        await reader.read(65536)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
        for _ in range(20):  # a byte every 0.3 s: no single read ever times out
            await asyncio.sleep(0.3)
            writer.write(b"x")
            await writer.drain()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    async with outbound_client() as http:
        result = await destination.send(MESSAGE, EndpointTarget(f"http://127.0.0.1:{port}/", generate_webhook_secret()),
                                        DestinationContext(http, 1.0, True))
    server.close()
    assert time.monotonic() - started < 2.5
    assert result.error is not None
    assert not result.ok and result.retryable and "timed out" in result.error


async def test_non_ascii_event_types_are_sent_percent_encoded() -> None:
    message = OutboundMessage(delivery_id="d", event_id="e", tenant_id="t", event_type="commande.créée",
                              payload={}, attempt=1)
    with Receiver() as receiver:
        async with outbound_client() as http:
            result = await destination.send(message, EndpointTarget(receiver.url, generate_webhook_secret()),
                                            DestinationContext(http, 5.0, True))
    assert result.ok
    assert receiver.requests[0].headers["x-switchboard-event-type"] == "commande.cr%C3%A9%C3%A9e"


def v1a_verifies(public_key: str, headers: dict[str, str], body: bytes, prefix: str = "webhook") -> list[bool]:
    """Each v1a signature checked as the specification describes, with cryptography's Ed25519 alone."""
    import base64

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    signed = f"{headers[f'{prefix}-id']}.{headers[f'{prefix}-timestamp']}.".encode() + body
    verdicts = []
    for entry in headers[f"{prefix}-signature"].split(" "):
        version, _, signature = entry.partition(",")
        assert version == "v1a", headers
        try:
            public.verify(base64.b64decode(signature), signed)
            verdicts.append(True)
        except InvalidSignature:
            verdicts.append(False)
    return verdicts


async def test_a_v1a_endpoint_signs_with_ed25519_that_the_public_key_verifies() -> None:
    from standardwebhooks.webhooks import WebhookVerificationError

    from switchboard.signatures import generate_signing_key, public_key_of

    key = generate_signing_key()
    with Receiver() as receiver:
        result = await send(EndpointTarget(receiver.url, key))
    assert result.ok
    [got] = receiver.requests
    assert got.headers["webhook-signature"].startswith("v1a,")
    assert v1a_verifies(public_key_of(key), got.headers, got.body) == [True]
    assert v1a_verifies(public_key_of(generate_signing_key()), got.headers, got.body) == [False]
    assert v1a_verifies(public_key_of(key), got.headers, got.body + b" ") == [False]
    # The reference library (v1 only) finds no signature of its kind: a v1a endpoint sends no HMAC.
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_webhook_secret()).verify(got.body, got.headers)


async def test_during_a_v1a_rotation_both_keys_sign_and_each_public_key_verifies_one() -> None:
    from switchboard.signatures import generate_signing_key, public_key_of

    old, new = generate_signing_key(), generate_signing_key()
    with Receiver() as receiver:
        assert (await send(EndpointTarget(receiver.url, new, previous_secret=old))).ok
    [got] = receiver.requests
    assert v1a_verifies(public_key_of(new), got.headers, got.body) == [True, False]
    assert v1a_verifies(public_key_of(old), got.headers, got.body) == [False, True]


async def test_svix_header_names_carry_the_same_values_and_the_svix_library_verifies() -> None:
    from svix.webhooks import Webhook as SvixWebhook, WebhookVerificationError

    secret = generate_webhook_secret()
    with Receiver() as receiver, Receiver() as standard:
        assert (await send(EndpointTarget(receiver.url, secret, {"header_names": "svix"}))).ok
        assert (await send(EndpointTarget(standard.url, secret, {"header_names": "standard"}))).ok
    [got], [plain] = receiver.requests, standard.requests
    assert {"svix-id", "svix-timestamp", "svix-signature"} <= set(got.headers)
    assert not any(name.startswith("webhook-") for name in got.headers)
    assert got.headers["svix-id"] == MESSAGE.delivery_id and got.headers["svix-signature"].startswith("v1,")
    SvixWebhook(secret).verify(got.body, got.headers)  # raises unless a signature matches
    with pytest.raises(WebhookVerificationError):
        SvixWebhook(generate_webhook_secret()).verify(got.body, got.headers)
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(plain.headers)
    assert not any(name.startswith("svix-") for name in plain.headers)


@pytest.mark.parametrize("config,secret,field", [
    ({"header_names": "stripe"}, None, "config.header_names"),
    ({"header_names": 1}, None, "config.header_names"),
    ({"headers": {"svix-signature": "v1,forged"}}, None, "config.headers"),
    ({}, "whsk_" + "A" * 86 + "==", "secret"),
    ({}, "whsk_short", "secret"),
])
def test_bad_header_names_and_malformed_keys_are_refused_naming_the_field(config: dict, secret: str | None,
                                                                          field: str) -> None:
    with pytest.raises(InvalidEndpointConfig) as refused:
        destination.validate(EndpointTarget("https://ok.example/x", secret or generate_webhook_secret(), config))
    assert refused.value.field == field


async def test_a_body_goes_byte_for_byte_with_its_content_type_and_a_payload_as_json() -> None:
    from dataclasses import replace

    from switchboard.signatures import verify_standard_webhook

    secret = generate_webhook_secret()
    binary = b"\x00\xff raw \xfe"
    raw = replace(MESSAGE, payload=None, body=binary, content_type="application/octet-stream")
    # A content type without the body it described (a transform's output replaced it) is not used.
    encoded = replace(MESSAGE, content_type="text/plain")
    with Receiver() as receiver:
        async with outbound_client() as http:
            for message in (raw, encoded):
                assert (await destination.send(message, EndpointTarget(receiver.url, secret),
                                               DestinationContext(http, 5.0, True))).ok
    sent_raw, sent_encoded = receiver.requests
    assert sent_raw.body == binary and sent_raw.headers["content-type"] == "application/octet-stream"
    assert verify_standard_webhook(secret, sent_raw.headers, sent_raw.body)
    assert json.loads(sent_encoded.body) == MESSAGE.payload and sent_encoded.headers["content-type"] == \
        "application/json"
