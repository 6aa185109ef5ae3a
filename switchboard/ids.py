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


class _RandomHex:
    """Hex digits from os.urandom, read 4 KiB at a time: a system call per id cost the edge a few
    microseconds a webhook. A forked child starts with a pool of its own, never its parent's."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._digits, self._at = "", 0

    def take(self, count: int) -> str:
        if self._at + count > len(self._digits):
            self._digits, self._at = os.urandom(4096).hex(), 0
        self._at += count
        return self._digits[self._at - count:self._at]


_random_hex = _RandomHex()


def new_id(prefix: str) -> str:
    """``<prefix>_`` + 32 hex digits: 48 bits of milliseconds, then 80 random bits.

    Ids sort by creation time, which keeps indexes and listings in order.
    """
    return f"{prefix}_{int(time.time() * 1000):012x}{_random_hex.take(20)}"


def derived_id(prefix: str, *parts: str) -> str:
    """A stable id for the same parts, e.g. one provider delivery retried.

    Two deliveries of one provider event get the same event id, so JetStream's
    de-duplication and the router's idempotent insert collapse them.
    """
    return f"{prefix}_{hashlib.sha256(chr(31).join(parts).encode()).hexdigest()[:32]}"
