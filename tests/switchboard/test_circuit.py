from switchboard.circuit import CircuitBreakers
from tests.clock import Clock


def test_opens_after_consecutive_failures_then_probes_once_and_closes_on_success() -> None:
    clock = Clock(100.0)
    breakers = CircuitBreakers(threshold=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        assert breakers.wait_s("ep") == 0
        breakers.record("ep", ok=False)
    breakers.record("ep", ok=True)  # a success resets the streak
    for _ in range(3):
        breakers.record("ep", ok=False)
    assert breakers.circuit("ep").state == "open"
    assert breakers.wait_s("ep") == 10
    clock.now += 10
    assert breakers.wait_s("ep") == 0  # the half-open probe
    assert breakers.wait_s("ep") > 0  # only one probe at a time
    breakers.record("ep", ok=True)
    assert breakers.circuit("ep").state == "closed" and breakers.wait_s("ep") == 0


def test_a_failed_probe_opens_the_circuit_again_and_endpoints_are_independent() -> None:
    clock = Clock(100.0)
    breakers = CircuitBreakers(threshold=1, cooldown_s=5, clock=clock)
    breakers.record("bad", ok=False)
    clock.now += 5
    assert breakers.wait_s("bad") == 0
    breakers.record("bad", ok=False)
    assert breakers.wait_s("bad") == 5
    assert breakers.wait_s("good") == 0
