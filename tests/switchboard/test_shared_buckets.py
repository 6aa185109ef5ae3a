"""Token buckets shared through a real NATS KV bucket: two processes' buckets (two instances, each its
own leases) admit together what one bucket admits, a refusal says when to retry, and with NATS away each
falls back to its own."""

from __future__ import annotations

import asyncio
import time

from switchboard.messaging import rate_limits_bucket_config
from switchboard.ratelimit import RateLimit
from switchboard.settings import Settings
from switchboard.shared_buckets import SharedTokenBuckets, lease_size


async def hammer(buckets: SharedTokenBuckets, key: str, limit: RateLimit, seconds: float) -> int:
    """Take as fast as one process can for ``seconds``, as a flood of requests would; how many were admitted."""
    admitted = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        verdict = await buckets.take(key, limit)
        if verdict.allowed:
            admitted += 1
        else:
            await asyncio.sleep(min(verdict.retry_after_s, 0.01))
    return admitted


async def test_two_processes_admit_together_what_the_one_limit_allows(js) -> None:
    await js.add_stream(rate_limits_bucket_config(Settings()))
    limit = RateLimit(200.0, 20)
    one, other = SharedTokenBuckets(js, "source"), SharedTokenBuckets(js, "source")
    seconds = 3.0
    admitted = await asyncio.gather(hammer(one, "src_a", limit, seconds), hammer(other, "src_a", limit, seconds))
    most = limit.rate_per_s * seconds + limit.burst + 2 * lease_size(limit)
    assert 0.9 * limit.rate_per_s * seconds <= sum(admitted) <= most, admitted
    assert min(admitted) > 0.25 * sum(admitted)  # both got a share, not one alone
    # Each process alone would have admitted the whole rate: 1,200 together instead of 600.
    other_key = await asyncio.gather(hammer(one, "src_b", limit, 1.0))
    assert other_key[0] <= limit.rate_per_s * 1.0 + limit.burst + lease_size(limit)


async def test_an_empty_bucket_refuses_with_the_time_a_token_is_due(js) -> None:
    await js.add_stream(rate_limits_bucket_config(Settings()))
    limit = RateLimit(5.0, 3)
    buckets = SharedTokenBuckets(js, "key")
    verdicts = [await buckets.take("key_1", limit) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert 0 < verdicts[-1].retry_after_s <= 0.2 + 1e-9 and "RateLimit-Limit" in verdicts[-1].headers()
    await asyncio.sleep(verdicts[-1].retry_after_s + 0.01)
    assert (await buckets.take("key_1", limit)).allowed
    # Another process sees the same bucket: empty again.
    assert not (await SharedTokenBuckets(js, "key").take("key_1", limit)).allowed


async def test_with_nats_away_each_process_applies_its_own_bucket(nats_server, js) -> None:
    await js.add_stream(rate_limits_bucket_config(Settings()))
    limit = RateLimit(1.0, 2)
    buckets = SharedTokenBuckets(js, "source")
    nats_server.stop()
    started = time.monotonic()
    verdicts = [await buckets.take("src_away", limit) for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert time.monotonic() - started < 10  # each ask fails fast; the requests are not held
