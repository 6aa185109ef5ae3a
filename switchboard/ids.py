"""Identifiers: prefixed, sortable, and deterministic where de-duplication needs it."""

from __future__ import annotations

import hashlib
import os
import time

__all__ = ["new_id", "derived_id"]

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """``<prefix>_`` + a ULID-shaped id: 48 bits of milliseconds, 80 random bits.

    Ids sort by creation time, which keeps indexes and listings in order.
    """
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_b32(value, 26)}"


def derived_id(prefix: str, *parts: str) -> str:
    """A stable id for the same parts, e.g. one provider delivery retried.

    Two deliveries of one provider event get the same event id, so JetStream's
    de-duplication and the router's idempotent insert collapse them.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return f"{prefix}_{_b32(int.from_bytes(digest[:17], 'big') >> 6, 26)}"
