"""Event-type patterns (``invoice.*``), shared by routes and endpoint filters."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from switchboard.errors import InvalidRequest

__all__ = ["MAX_PATTERNS", "check_type_patterns", "compiled_patterns", "matches_any"]

MAX_PATTERNS = 50


def check_type_patterns(patterns: Sequence[str]) -> list[str]:
    """The patterns, de-duplicated; InvalidRequest when there are too many or one is malformed."""
    if len(patterns) > MAX_PATTERNS:
        raise InvalidRequest(f"at most {MAX_PATTERNS} event type patterns")
    if any(not isinstance(p, str) or not p or len(p) > 200 or not p.isprintable() for p in patterns):
        raise InvalidRequest("event type patterns are 1 to 200 printable characters")
    return list(dict.fromkeys(patterns))


@lru_cache(maxsize=4096)
def compiled_patterns(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex matching what any of the globs matches (none: nothing)."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or r"(?!)")


def matches_any(event_type: str, patterns: Iterable[str]) -> bool:
    """True when a glob matches (case-sensitive, like event types); no patterns match nothing."""
    return compiled_patterns(tuple(patterns)).match(event_type) is not None
