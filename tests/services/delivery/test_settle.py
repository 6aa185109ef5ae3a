"""The verdict on one attempt, without infrastructure."""

import pytest

from plugins.destinations.spec import SendResult
from services.delivery.retry import RetryPolicy
from services.delivery.settle import Dead, Retry, Succeeded, settle

POLICY = RetryPolicy(max_attempts=3, base_delay_s=2, jitter=0)


def test_a_success_succeeds_whatever_the_attempt() -> None:
    assert settle(SendResult(ok=True, status_code=200), 3, POLICY) == Succeeded()


@pytest.mark.parametrize(("attempt", "delay"), [(1, 2.0), (2, 4.0)])
def test_a_retryable_failure_is_retried_with_backoff_until_the_budget_is_spent(attempt: int, delay: float) -> None:
    verdict = settle(SendResult(ok=False, status_code=503, error="HTTP 503"), attempt, POLICY)
    assert verdict == Retry(delay) and verdict.outcome == "retrying"


def test_the_receivers_retry_after_wins_when_longer() -> None:
    assert settle(SendResult(ok=False, status_code=429, retry_after_s=30), 1, POLICY) == Retry(30)


def test_the_last_attempt_of_the_cycle_is_dead() -> None:
    verdict = settle(SendResult(ok=False, status_code=503, error="HTTP 503"), 3, POLICY)
    assert verdict == Dead("gave up after 3 attempts: HTTP 503") and verdict.outcome == "failed"


def test_a_final_refusal_is_dead_at_once() -> None:
    assert settle(SendResult(ok=False, status_code=400, retryable=False), 1, POLICY) == Dead(
        "refused by the receiver (HTTP 400)")
    assert settle(SendResult(ok=False, error="endpoint deleted", retryable=False), 1, POLICY) == Dead(
        "endpoint deleted")
