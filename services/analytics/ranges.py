"""Time ranges: defaults, validation, rounding to whole buckets, and covering a
range with the fewest rollup rows.

Rollups are kept per minute (whole tenant only), hour and day, all in UTC. A
range is read as whole minutes (whole hours when it is per endpoint, event
type, source or category): ``since`` rounds down, ``until`` up. It is then
covered by days in the middle, hours at the edges and minutes at the very
edges, so a month costs ~30 + 46 + 118 rows, not 43,200.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, UTC

from switchboard.errors import InvalidRequest

__all__ = ["GRAINS", "STEP", "DEFAULT_SPAN", "MAX_POINTS", "TimeRange", "Span", "floor", "ceil", "resolve_range",
           "cover", "buckets"]

GRAINS = ("minute", "hour", "day")
STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
DEFAULT_SPAN = timedelta(hours=24)
# The most buckets one trends answer holds: a day of minutes, two months of hours.
MAX_POINTS = 1500

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TimeRange:
    """[since, until), UTC."""

    since: datetime
    until: datetime

    @property
    def empty(self) -> bool:
        return self.until <= self.since


@dataclass(frozen=True)
class Span:
    """Rollup rows of one grain with buckets in [start, end)."""

    grain: str
    start: datetime
    end: datetime


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def floor(value: datetime, grain: str) -> datetime:
    step = STEP[grain]
    return value - ((value - _EPOCH) % step)


def ceil(value: datetime, grain: str) -> datetime:
    down = floor(value, grain)
    return down if down == value else down + STEP[grain]


def resolve_range(since: datetime | None, until: datetime | None, now: datetime, grain: str = "minute") -> TimeRange:
    """The range a request asks for, rounded out to whole ``grain`` buckets.

    ``until`` defaults to now, ``since`` to 24 hours before ``until``; ``until``
    before ``since`` is an :class:`InvalidRequest`. A range in the future is
    valid (and empty of data).
    """
    until = _utc(until) if until is not None else now
    since = _utc(since) if since is not None else until - DEFAULT_SPAN
    if until < since:
        raise InvalidRequest("until must not be before since")
    return TimeRange(floor(since, grain), ceil(until, grain))


def cover(window: TimeRange, finest: str = "minute") -> list[Span]:
    """Spans of rollup rows that add up to exactly ``window`` (aligned to ``finest``)."""
    if window.empty:
        return []
    levels = GRAINS[GRAINS.index(finest):]
    return _cover(window.since, window.until, levels)


def _cover(start: datetime, end: datetime, levels: tuple[str, ...]) -> list[Span]:
    grain, coarser = levels[0], levels[1:]
    if not coarser:
        return [Span(grain, start, end)] if start < end else []
    inner_start, inner_end = ceil(start, coarser[0]), floor(end, coarser[0])
    if inner_start >= inner_end:
        return [Span(grain, start, end)] if start < end else []
    spans = [Span(grain, start, inner_start)] if start < inner_start else []
    spans += _cover(inner_start, inner_end, coarser)
    if inner_end < end:
        spans.append(Span(grain, inner_end, end))
    return spans


def buckets(window: TimeRange, grain: str, now: datetime) -> list[datetime]:
    """Bucket starts of ``grain`` in ``window`` up to now (later buckets cannot hold data yet)."""
    if grain not in STEP:
        raise InvalidRequest("bucket must be minute, hour or day")
    start, stop = floor(window.since, grain), min(window.until, now)
    count = 0 if stop <= start else -(-(stop - start) // STEP[grain])
    if count > MAX_POINTS:
        raise InvalidRequest(f"{count} {grain} buckets is more than {MAX_POINTS}: "
                             "use a larger bucket or a shorter range")
    return [start + STEP[grain] * n for n in range(count)]
