"""The parts of analytics that need no database: histograms and time ranges."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, UTC

import pytest

from services.analytics.histogram import LATENCY_BOUNDS_MS, SLOTS, empty_histogram, percentile, slot_of, slot_range
from services.analytics.ranges import MAX_POINTS, Span, TimeRange, buckets, cover, resolve_range
from switchboard.errors import InvalidRequest

UTC = UTC


def test_slots_have_fixed_bounds_ten_per_decade() -> None:
    assert SLOTS == 52 and LATENCY_BOUNDS_MS[0] == 1 and LATENCY_BOUNDS_MS[-1] == pytest.approx(100_000)
    assert slot_of(0) == 0 and slot_of(0.99) == 0 and slot_of(1) == 1 and slot_of(1.25) == 1
    assert slot_of(10) == 11 and slot_of(99.9) == 20 and slot_of(100) == 21
    assert slot_of(10**6) == SLOTS - 1
    for latency in (0.3, 7, 42.5, 950, 31_000):
        low, high = slot_range(slot_of(latency))
        assert low <= latency < high and (high <= 1 or high / low == pytest.approx(10 ** 0.1))


def test_percentiles_are_exact_to_their_slot() -> None:
    rng = random.Random(7)
    latencies = sorted(rng.lognormvariate(4, 1) for _ in range(20_000))
    hist = empty_histogram()
    for latency in latencies:
        hist[slot_of(latency)] += 1
    for q in (0.5, 0.95, 0.99):
        true = latencies[int(q * len(latencies)) - 1]
        estimate = percentile(hist, q)
        low, high = slot_range(slot_of(true))
        assert low <= estimate <= high, (q, true, estimate)


def test_percentiles_of_nothing_are_zero_and_the_open_slot_answers_its_bound() -> None:
    assert percentile(None, 0.5) == 0 and percentile(empty_histogram(), 0.99) == 0
    hist = empty_histogram()
    hist[-1] = 3
    assert percentile(hist, 0.5) == pytest.approx(100_000)
    one = empty_histogram()
    one[slot_of(10)] = 1  # a single attempt of 10 ms: every percentile is in [10, 12.6)
    assert 10 <= percentile(one, 0.5) <= percentile(one, 0.99) < 12.6


def test_a_range_defaults_to_the_last_day_rounds_out_and_refuses_until_before_since() -> None:
    now = datetime(2026, 3, 10, 12, 30, 20, tzinfo=UTC)
    window = resolve_range(None, None, now)
    assert window == TimeRange(datetime(2026, 3, 9, 12, 30, tzinfo=UTC), datetime(2026, 3, 10, 12, 31, tzinfo=UTC))
    hourly = resolve_range(datetime(2026, 3, 1, 5, 10), datetime(2026, 3, 1, 7, 0), now, "hour")
    assert hourly == TimeRange(datetime(2026, 3, 1, 5, tzinfo=UTC), datetime(2026, 3, 1, 7, tzinfo=UTC))
    with pytest.raises(InvalidRequest, match="until"):
        resolve_range(now, now - timedelta(seconds=1), now)
    future = resolve_range(now + timedelta(days=1), now + timedelta(days=2), now)
    assert future.since > now  # valid, just empty


def test_a_range_is_covered_by_days_hours_and_minutes_exactly() -> None:
    since, until = datetime(2026, 3, 1, 22, 58, tzinfo=UTC), datetime(2026, 3, 5, 1, 3, tzinfo=UTC)
    spans = cover(TimeRange(since, until))
    assert spans == [
        Span("minute", since, datetime(2026, 3, 1, 23, tzinfo=UTC)),
        Span("hour", datetime(2026, 3, 1, 23, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)),
        Span("day", datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC)),
        Span("hour", datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 3, 5, 1, tzinfo=UTC)),
        Span("minute", datetime(2026, 3, 5, 1, tzinfo=UTC), until),
    ]
    assert cover(TimeRange(since, since)) == []
    short = TimeRange(datetime(2026, 3, 1, 10, 5, tzinfo=UTC), datetime(2026, 3, 1, 10, 9, tzinfo=UTC))
    assert cover(short) == [Span("minute", short.since, short.until)]
    # Whatever the range, the spans tile it: no gap, no overlap.
    rng = random.Random(3)
    for _ in range(200):
        a = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(200_000))
        b = a + timedelta(minutes=rng.randrange(100_000))
        spans = cover(TimeRange(a, b))
        edges = [a] + [s.end for s in spans]
        assert all(s.start == edges[i] for i, s in enumerate(spans)) and (not spans or spans[-1].end == b)
        assert len(spans) <= 5


def test_trend_buckets_stop_at_now_and_are_limited() -> None:
    now = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
    window = TimeRange(datetime(2026, 3, 10, 10, tzinfo=UTC), datetime(2026, 3, 10, 15, tzinfo=UTC))
    assert buckets(window, "hour", now) == [datetime(2026, 3, 10, h, tzinfo=UTC) for h in (10, 11, 12)]
    assert buckets(TimeRange(now + timedelta(days=1), now + timedelta(days=2)), "minute", now) == []
    with pytest.raises(InvalidRequest, match="bucket"):
        buckets(window, "week", now)
    with pytest.raises(InvalidRequest, match=str(MAX_POINTS)):
        buckets(TimeRange(now - timedelta(days=2), now), "minute", now)
