"""Webhook signing secrets and the Standard Webhooks signature schemes.

One place for the cryptography every part shares: the webhook and nats
destinations sign with it, Standard Webhooks and generic HMAC sources verify
with it. Secrets are random, compared in constant time, and never logged.

Standard Webhooks (https://www.standardwebhooks.com/): the signed content is
``"{webhook-id}.{webhook-timestamp}.{body}"``, and the ``webhook-signature``
header holds space-separated ``<identifier>,<base64 signature>`` entries:

- ``v1``: HMAC-SHA256 keyed by the base64-decoded part of ``whsec_<base64>``
  (the secret both sides share);
- ``v1a``: Ed25519 by the private key ``whsk_<base64>``; receivers verify
  with the public key ``whpk_<base64>`` alone, and cannot sign.

The specification says only "a standard ed25519 key pair, base64 encoded" for
``whsk_``. We follow Svix's reference server, whose ``whsk_`` key reproduces
the specification's example ``v1a`` signature: 64 bytes, the 32-byte seed
then its 32-byte public key (libsodium's secret key layout). ``whpk_`` is the
32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from functools import lru_cache
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "SIGNATURE_SCHEMES",
    "generate_webhook_secret",
    "generate_signing_key",
    "generate_signing_secret",
    "decode_webhook_secret",
    "check_signing_secret",
    "signature_scheme_of",
    "public_key_of",
    "sign_standard_webhook",
    "sign_webhook",
    "verify_standard_webhook",
    "hmac_sha256_hex",
    "constant_time_equals",
]

WEBHOOK_SECRET_PREFIX = "whsec_"
SIGNING_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
#: Signature identifiers: ``v1`` HMAC-SHA256 with a ``whsec_`` secret, ``v1a`` Ed25519 with a ``whsk_`` key.
SIGNATURE_SCHEMES = ("v1", "v1a")


def generate_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def generate_signing_key() -> str:
    """A new ``whsk_`` Ed25519 key: the seed then its public key, base64."""
    private = Ed25519PrivateKey.generate()
    return SIGNING_KEY_PREFIX + base64.b64encode(private.private_bytes_raw() + _raw(private.public_key())).decode()


def generate_signing_secret(scheme: str) -> str:
    """A new secret for ``scheme`` (one of :data:`SIGNATURE_SCHEMES`)."""
    if scheme == "v1a":
        return generate_signing_key()
    if scheme == "v1":
        return generate_webhook_secret()
    raise ValueError(f"signature_scheme is one of {', '.join(SIGNATURE_SCHEMES)}")


def decode_webhook_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_`` secret; ValueError when it is not one."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(WEBHOOK_SECRET_PREFIX):], validate=True)
    except (ValueError, TypeError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret holds 24 to 64 bytes")
    return key


@lru_cache(maxsize=4096)
def _signing_key(secret: str) -> Ed25519PrivateKey:
    """The private key in a ``whsk_`` key (cached: loading it derives the public key, as costly as signing)."""
    if not secret.startswith(SIGNING_KEY_PREFIX):
        raise ValueError("a signing key starts with whsk_")
    try:
        raw = base64.b64decode(secret[len(SIGNING_KEY_PREFIX):], validate=True)
    except (ValueError, TypeError, binascii.Error):
        raise ValueError("a signing key is whsk_ followed by base64") from None
    if len(raw) != 64:
        raise ValueError("a signing key holds 64 bytes: the Ed25519 seed, then its public key")
    private = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if not hmac.compare_digest(_raw(private.public_key()), raw[32:]):
        raise ValueError("a signing key's last 32 bytes must be the public key of its first 32")
    return private


def _public_key(key: str) -> Ed25519PublicKey:
    if not key.startswith(PUBLIC_KEY_PREFIX):
        raise ValueError("a public key starts with whpk_")
    try:
        raw = base64.b64decode(key[len(PUBLIC_KEY_PREFIX):], validate=True)
    except (ValueError, TypeError, binascii.Error):
        raise ValueError("a public key is whpk_ followed by base64") from None
    if len(raw) != 32:
        raise ValueError("a public key holds 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def check_signing_secret(secret: str) -> None:
    """ValueError unless ``secret`` is a valid ``whsec_`` secret or ``whsk_`` key."""
    if secret.startswith(SIGNING_KEY_PREFIX):
        _signing_key(secret)
    elif secret.startswith(WEBHOOK_SECRET_PREFIX):
        decode_webhook_secret(secret)
    else:
        raise ValueError("a signing secret is a whsec_ secret (v1) or a whsk_ key (v1a)")


def signature_scheme_of(secret: str) -> str:
    """``v1a`` for a ``whsk_`` key, ``v1`` for anything else (a ``whsec_`` secret)."""
    return "v1a" if secret.startswith(SIGNING_KEY_PREFIX) else "v1"


def public_key_of(secret: str) -> str:
    """The ``whpk_`` public key of a ``whsk_`` key: what receivers verify ``v1a`` signatures with."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(_raw(_signing_key(secret).public_key())).decode()


def _signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def sign_standard_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,`` (HMAC-SHA256) signature of one message by a ``whsec_`` secret."""
    key = decode_webhook_secret(secret)
    digest = hmac.new(key, _signed_content(msg_id, timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One message's signature by the scheme the secret is for: ``v1,`` by a ``whsec_`` secret, ``v1a,``
    (Ed25519) by a ``whsk_`` key."""
    if secret.startswith(SIGNING_KEY_PREFIX):
        signature = _signing_key(secret).sign(_signed_content(msg_id, timestamp, body))
        return "v1a," + base64.b64encode(signature).decode()
    return sign_standard_webhook(secret, msg_id, timestamp, body)


def verify_standard_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """True when one of the signatures matches and the timestamp is within tolerance.

    ``secret``: a ``whsec_`` secret checks the ``v1,`` signatures, a ``whpk_`` public key the ``v1a,``
    ones. ``headers`` must have lower-case names; ``svix-`` names stand in for missing ``webhook-`` ones.
    """
    def header(name: str) -> str:
        return headers.get(f"webhook-{name}", headers.get(f"svix-{name}", ""))

    msg_id = header("id")
    try:
        timestamp = int(header("timestamp"))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    # Several space-separated signatures are sent while a secret is rotated.
    presented = header("signature").split()
    if secret.startswith(PUBLIC_KEY_PREFIX):
        public = _public_key(secret)
        signed = _signed_content(msg_id, timestamp, body)
        for candidate in presented:
            scheme, _, signature = candidate.partition(",")
            if scheme != "v1a":
                continue
            try:
                public.verify(base64.b64decode(signature, validate=True), signed)
                return True
            except (InvalidSignature, ValueError, binascii.Error):
                continue
        return False
    expected = sign_standard_webhook(secret, msg_id, timestamp, body)
    return any(constant_time_equals(candidate, expected) for candidate in presented)


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    # hmac.digest is the one-shot C path: no HMAC object per webhook.
    return hmac.digest(secret.encode(), body, "sha256").hex()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
