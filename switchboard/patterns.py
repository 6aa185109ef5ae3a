"""Event-type patterns (``invoice.*``), shared by routes and endpoint filters."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from switchboard.errors import InvalidRequest

__all__ = ["MAX_PATTERNS", "check_type_patterns", "matches_any"]

MAX_PATTERNS = 50


def check_type_patterns(patterns: Sequence[str]) -> list[str]:
    """The patterns, de-duplicated; InvalidRequest when there are too many or one is malformed."""
    if len(patterns) > MAX_PATTERNS:
        raise InvalidRequest(f"at most {MAX_PATTERNS} event type patterns")
    if any(not isinstance(p, str) or not p or len(p) > 200 or not p.isprintable() for p in patterns):
        raise InvalidRequest("event type patterns are 1 to 200 printable characters")
    return list(dict.fromkeys(patterns))


def matches_any(event_type: str, patterns: Iterable[str]) -> bool:
    """True when a glob matches (case-sensitive, like event types); no patterns match nothing."""
    return any(fnmatch.fnmatchcase(event_type, p) for p in patterns)
