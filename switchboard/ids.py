"""Identifiers: prefixed, sortable, and deterministic where de-duplication needs it."""

from __future__ import annotations

import hashlib
import re
import os
import time

__all__ = ["new_id", "derived_id", "is_id"]

_ID = re.compile(r"[a-z]{2,4}_[0-9a-f]{32}")


def is_id(value: str, prefix: str) -> bool:
    """Whether ``value`` has the shape of an id we issue: look-ups of anything
    else are "not found" without a query (and without a NUL reaching the database)."""
    return value.startswith(prefix + "_") and _ID.fullmatch(value) is not None


def new_id(prefix: str) -> str:
    """``<prefix>_`` + 32 hex digits: 48 bits of milliseconds, then 80 random bits.

    Ids sort by creation time, which keeps indexes and listings in order.
    """
    return f"{prefix}_{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


def derived_id(prefix: str, *parts: str) -> str:
    """A stable id for the same parts, e.g. one provider delivery retried.

    Two deliveries of one provider event get the same event id, so JetStream's
    de-duplication and the router's idempotent insert collapse them.
    """
    return f"{prefix}_{hashlib.sha256(chr(31).join(parts).encode()).hexdigest()[:32]}"
