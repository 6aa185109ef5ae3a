import pytest

from switchboard.ratelimit import RateLimit, TokenBuckets
from tests.clock import Clock


def test_a_burst_then_the_steady_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(clock=clock)
    limit = RateLimit(rate_per_s=2, burst=3)
    verdicts = [buckets.take("k", limit) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert verdicts[3].retry_after_s == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("k", limit).allowed
    assert not buckets.take("k", limit).allowed
    clock.now += 10
    assert buckets.take("k", limit).remaining == 2  # refilled to the burst, never beyond


def test_keys_have_separate_buckets_and_headers_say_where_they_stand() -> None:
    buckets = TokenBuckets(clock=Clock())
    limit = RateLimit(rate_per_s=1, burst=1)
    assert buckets.take("a", limit).allowed and buckets.take("b", limit).allowed
    refused = buckets.take("a", limit)
    assert not refused.allowed
    assert refused.headers() == {
        "RateLimit-Limit": "1", "RateLimit-Remaining": "0", "RateLimit-Reset": "1",
        "X-RateLimit-Limit": "1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1",
    }


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimit(rate_per_s=0, burst=1)
    with pytest.raises(ValueError):
        RateLimit(rate_per_s=1, burst=0)
