"""The signature schemes, checked against the Standard Webhooks specification's own example and
independently of our code: v1 with the reference library, v1a with cryptography's Ed25519 as the
specification describes it (base64 of the signature over ``{id}.{timestamp}.{body}``)."""

from __future__ import annotations

import base64
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from standardwebhooks.webhooks import Webhook

from switchboard.signatures import (
    check_signing_secret,
    generate_signing_key,
    generate_signing_secret,
    generate_webhook_secret,
    public_key_of,
    sign_webhook,
    signature_scheme_of,
    verify_standard_webhook,
)

# The specification's worked example (its "Example headers" carry this v1a signature), made with the
# key of Svix's reference server tests: 64 bytes, the Ed25519 seed then its public key.
SPEC_KEY = "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg=="
SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
SPEC_V1A = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="


def spec_verify(public_key: str, msg_id: str, timestamp: str, body: bytes, signature_header: str) -> bool:
    """A receiver's v1a check written from the specification alone: any v1a entry that verifies."""
    assert public_key.startswith("whpk_")
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    for entry in signature_header.split(" "):
        version, _, signature = entry.partition(",")
        if version != "v1a":
            continue
        try:
            public.verify(base64.b64decode(signature), f"{msg_id}.{timestamp}.".encode() + body)
            return True
        except InvalidSignature:
            continue
    return False


def test_v1a_reproduces_the_specifications_example_signature() -> None:
    assert sign_webhook(SPEC_KEY, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_V1A
    public = public_key_of(SPEC_KEY)
    assert spec_verify(public, SPEC_ID, str(SPEC_TIMESTAMP), SPEC_BODY, SPEC_V1A)
    assert not spec_verify(public, SPEC_ID, str(SPEC_TIMESTAMP), SPEC_BODY + b" ", SPEC_V1A)


def test_a_generated_key_is_a_seed_and_its_public_key_and_the_public_key_is_shown_apart() -> None:
    key, other = generate_signing_key(), generate_signing_key()
    assert key != other and key.startswith("whsk_") and signature_scheme_of(key) == "v1a"
    raw = base64.b64decode(key.removeprefix("whsk_"), validate=True)
    assert len(raw) == 64
    seed_public = Ed25519PrivateKey.from_private_bytes(raw[:32]).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)
    assert raw[32:] == seed_public
    public = public_key_of(key)
    assert public == "whpk_" + base64.b64encode(seed_public).decode()
    assert public_key_of(other) != public
    check_signing_secret(key)


def test_a_v1a_signature_verifies_with_the_public_key_alone_and_not_with_another() -> None:
    key = generate_signing_key()
    now = int(time.time())
    signature = sign_webhook(key, "msg_1", now, b'{"a":1}')
    assert signature.startswith("v1a,") and len(base64.b64decode(signature[4:])) == 64
    assert spec_verify(public_key_of(key), "msg_1", str(now), b'{"a":1}', signature)
    assert not spec_verify(public_key_of(generate_signing_key()), "msg_1", str(now), b'{"a":1}', signature)
    assert not spec_verify(public_key_of(key), "msg_2", str(now), b'{"a":1}', signature)
    assert not spec_verify(public_key_of(key), "msg_1", str(now + 1), b'{"a":1}', signature)


def test_v1_is_unchanged_and_checked_by_the_reference_library() -> None:
    secret = generate_signing_secret("v1")
    assert secret.startswith("whsec_") and signature_scheme_of(secret) == "v1"
    now = int(time.time())
    headers = {"webhook-id": "m1", "webhook-timestamp": str(now),
               "webhook-signature": sign_webhook(secret, "m1", now, b'{"a":1}')}
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(b'{"a":1}', headers) == {"a": 1}


def test_our_verifier_takes_a_public_key_for_v1a_and_svix_header_names() -> None:
    key = generate_signing_key()
    public = public_key_of(key)
    now = int(time.time())
    body = b'{"a":1}'
    headers = {"webhook-id": "m1", "webhook-timestamp": str(now),
               "webhook-signature": f"v1,AAAA v1a,{base64.b64encode(bytes(64)).decode()} "
                                    + sign_webhook(key, "m1", now, body)}
    assert verify_standard_webhook(public, headers, body)
    assert not verify_standard_webhook(public, headers, body + b" ")
    assert not verify_standard_webhook(public_key_of(generate_signing_key()), headers, body)
    assert not verify_standard_webhook(public, headers, body, now=now + 301)
    # A v1 signature by a shared secret is no v1a signature.
    secret = generate_webhook_secret()
    hmac_only = {**headers, "webhook-signature": sign_webhook(secret, "m1", now, body)}
    assert not verify_standard_webhook(public, hmac_only, body)
    svix_named = {f"svix-{name.removeprefix('webhook-')}": value for name, value in hmac_only.items()}
    assert verify_standard_webhook(secret, svix_named, body)


@pytest.mark.parametrize("secret,message", [
    ("whsk_", "64 bytes"),
    ("whsk_not base64!", "base64"),
    ("whsk_" + base64.b64encode(bytes(32)).decode(), "64 bytes"),
    # The right length, but the second half is not the first half's public key.
    ("whsk_" + base64.b64encode(bytes(64)).decode(), "public key"),
    ("whpk_" + base64.b64encode(bytes(32)).decode(), "whsec_"),
    ("plain", "whsec_"),
    ("whsec_short", "whsec_"),
])
def test_malformed_secrets_are_refused_with_a_reason(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_signing_secret(secret)


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="v1, v1a"):
        generate_signing_secret("v2")
