import pytest

from services.delivery.retry import RetryPolicy


def test_delays_double_within_jitter_and_are_capped() -> None:
    policy = RetryPolicy(max_attempts=20, base_delay_s=5, max_delay_s=60, jitter=0.2)
    for attempt, nominal in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (12, 60)]:
        for _ in range(50):
            assert nominal * 0.8 <= policy.next_delay(attempt) <= nominal * 1.2


def test_a_receivers_retry_after_wins_when_longer_even_past_max_delay_but_never_past_an_hour() -> None:
    policy = RetryPolicy(base_delay_s=1, max_delay_s=100, jitter=0)
    assert policy.next_delay(1, requested_s=30) == 30
    assert policy.next_delay(1, requested_s=0.1) == 1
    # The endpoint's max_delay_seconds caps its own backoff, not what the receiver asks for.
    assert policy.next_delay(1, requested_s=1_000) == 1_000
    assert policy.next_delay(1, requested_s=10_000) == 3600
    assert policy.next_delay(1, requested_s=float("inf")) == 3600
    # A backoff longer than the Retry-After still wins; the hour caps the request, not the policy.
    assert RetryPolicy(base_delay_s=7200, max_delay_s=7200, jitter=0).next_delay(1, requested_s=10) == 7200


def test_the_retry_after_cap_matches_the_parsers() -> None:
    from plugins.destinations.http_result import parse_retry_after

    policy = RetryPolicy(base_delay_s=1, max_delay_s=60, jitter=0)
    assert policy.next_delay(1, parse_retry_after("86400")) == 3600
    assert policy.next_delay(1, parse_retry_after("600")) == 600


@pytest.mark.parametrize("attempt,retryable,expected", [(1, True, True), (2, True, True), (3, True, False),
                                                        (1, False, False)])
def test_retries_stop_at_the_last_attempt_or_a_final_failure(attempt, retryable, expected) -> None:
    assert RetryPolicy(max_attempts=3).should_retry(attempt, retryable) is expected


def test_endpoint_options_are_checked_and_fall_back_to_defaults() -> None:
    from services.delivery.options import EndpointOptions, parse_options, validate_options
    from switchboard.errors import InvalidRequest

    defaults = EndpointOptions(16, None, 10.0, RetryPolicy(max_attempts=8, base_delay_s=5))
    given = validate_options({"max_in_flight": 2, "rate_limit": {"per_second": 5}, "timeout_seconds": 3,
                              "retry": {"max_attempts": 3, "initial_delay_seconds": 0.5}})
    options = parse_options(given, defaults)
    assert (options.max_in_flight, options.timeout_s) == (2, 3)
    assert options.rate_limit is not None
    assert (options.rate_limit.rate_per_s, options.rate_limit.burst) == (5, 5)
    assert (options.retry.max_attempts, options.retry.base_delay_s, options.retry.max_delay_s) == (3, 0.5, 3600.0)
    assert parse_options({}, defaults) == defaults
    for bad in ({"max_in_flight": 0}, {"max_in_flight": 1.5}, {"timeout_seconds": 600}, {"rate_limit": 5},
                {"rate_limit": {"burst": 3}}, {"retry": {"max_attempts": 0}}, {"retry": {"forever": True}},
                {"colour": "blue"}):
        with pytest.raises(InvalidRequest):
            validate_options(bad)
