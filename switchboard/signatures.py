"""Webhook signing secrets and the Standard Webhooks signature scheme.

One place for the cryptography every part shares: the webhook destination signs
with it, Standard Webhooks and generic HMAC sources verify with it. Secrets are
random, compared in constant time, and never logged.

Standard Webhooks (https://www.standardwebhooks.com/): the signed content is
``"{webhook-id}.{webhook-timestamp}.{body}"``, HMAC-SHA256 with the base64-decoded
part of ``whsec_<base64>``, sent as ``webhook-signature: v1,<base64>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

__all__ = [
    "generate_webhook_secret",
    "decode_webhook_secret",
    "sign_standard_webhook",
    "verify_standard_webhook",
    "hmac_sha256_hex",
    "constant_time_equals",
]

WEBHOOK_SECRET_PREFIX = "whsec_"


def generate_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


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


def sign_standard_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    key = decode_webhook_secret(secret)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_standard_webhook(
    secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """True when one of the ``v1,`` signatures matches and the timestamp is within tolerance.

    ``headers`` must have lower-case names.
    """
    msg_id = headers.get("webhook-id", "")
    try:
        timestamp = int(headers.get("webhook-timestamp", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign_standard_webhook(secret, msg_id, timestamp, body)
    # Several space-separated signatures are sent while a secret is rotated.
    return any(constant_time_equals(candidate, expected) for candidate in headers.get("webhook-signature", "").split())


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    # hmac.digest is the one-shot C path: no HMAC object per webhook.
    return hmac.digest(secret.encode(), body, "sha256").hex()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
