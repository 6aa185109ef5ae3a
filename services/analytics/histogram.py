"""Latency histograms with fixed bounds, and percentiles read from them.

Every rollup row keeps the number of attempts per latency *slot*. The bounds
are fixed (ten per decade, 1 ms to 100 s: 1, 1.26, 1.58, 2, 2.51, ... ms), so
histograms of any rows add up element by element, and a percentile over
millions of attempts is a walk over 52 numbers. A percentile is exact to its
slot: the true value lies in the slot reported, and within the slot it is
interpolated linearly, so the error is below the slot's width (26% of its
lower bound; under 1 ms for latencies under 1 ms). Changing the bounds would
need a migration that rebuilds the rollups.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

__all__ = ["LATENCY_BOUNDS_MS", "SLOTS", "slot_of", "slot_range", "percentile", "empty_histogram"]

# Upper bounds of slots 1..51; slot 0 is [0, 1 ms), the last slot is [100 s, inf).
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(10 ** (k / 10) for k in range(0, 51))
SLOTS = len(LATENCY_BOUNDS_MS) + 1


def slot_of(latency_ms: float) -> int:
    """The slot (0-based) a latency falls in: slot k holds [bound k-1, bound k)."""
    return bisect_right(LATENCY_BOUNDS_MS, latency_ms) if latency_ms > 0 else 0


def slot_range(slot: int) -> tuple[float, float]:
    """The latencies a slot holds, [low, high); the last slot's high is infinite."""
    low = 0.0 if slot == 0 else LATENCY_BOUNDS_MS[slot - 1]
    high = LATENCY_BOUNDS_MS[slot] if slot < len(LATENCY_BOUNDS_MS) else float("inf")
    return low, high


def empty_histogram() -> list[int]:
    return [0] * SLOTS


def percentile(histogram: Sequence[int] | None, q: float) -> float:
    """The ``q`` quantile (0 < q <= 1) of the latencies counted, in ms; 0 when none.

    The rank ``q * total`` is found in the cumulative counts, and placed
    linearly inside its slot. The open last slot answers its lower bound.
    """
    if not histogram:
        return 0.0
    total = sum(histogram)
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for slot, count in enumerate(histogram):
        if count and seen + count >= rank:
            low, high = slot_range(slot)
            if high == float("inf"):
                return low
            return low + (high - low) * (rank - seen) / count
        seen += count
    return slot_range(len(histogram) - 1)[0]
