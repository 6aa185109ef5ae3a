import pytest

from services.delivery.retry import RetryPolicy


def test_delays_double_within_jitter_and_are_capped() -> None:
    policy = RetryPolicy(max_attempts=20, base_delay_s=5, max_delay_s=60, jitter=0.2)
    for attempt, nominal in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (12, 60)]:
        for _ in range(50):
            assert nominal * 0.8 <= policy.next_delay(attempt) <= nominal * 1.2


def test_a_receivers_retry_after_wins_when_longer_but_never_past_the_cap() -> None:
    policy = RetryPolicy(base_delay_s=1, max_delay_s=100, jitter=0)
    assert policy.next_delay(1, requested_s=30) == 30
    assert policy.next_delay(1, requested_s=0.1) == 1
    assert policy.next_delay(1, requested_s=10_000) == 100


@pytest.mark.parametrize("attempt,retryable,expected", [(1, True, True), (2, True, True), (3, True, False),
                                                        (1, False, False)])
def test_retries_stop_at_the_last_attempt_or_a_final_failure(attempt, retryable, expected) -> None:
    assert RetryPolicy(max_attempts=3).should_retry(attempt, retryable) is expected
