"""Held deliveries' turns (services/delivery/turns.py), on a clock the test moves."""

from __future__ import annotations

import pytest

from services.delivery.turns import FIRST_SEND_S, MAX_TURN_S, HeldTurns, SlotTurns
from tests.clock import Clock


def test_held_deliveries_are_spaced_one_after_another_and_never_past_the_longest_turn() -> None:
    clock = Clock()
    turns = HeldTurns(clock)
    assert [turns.next("ep_1", 0.5, 0.05) for _ in range(3)] == pytest.approx([0.05, 0.55, 1.05])
    assert turns.next("ep_2", 0.5, 2.0) == 2.0  # each endpoint its own line; at least what was asked
    clock.now += 10  # the line has gone by: the next starts afresh
    assert turns.next("ep_1", 0.5, 0.05) == pytest.approx(0.05)
    assert max(turns.next("ep_3", 1.0, 0.0) for _ in range(100)) == MAX_TURN_S


def test_a_slot_frees_as_often_as_sends_end_over_the_cap() -> None:
    clock = Clock()
    slots = SlotTurns(clock)
    for seconds in (0.4, 0.4):
        token = slots.begin("ep_1")
        clock.now += seconds
        slots.end("ep_1", token)
    # 0.4 s a send over 2 slots: one frees every 0.2 s; the 3 waiting in the process go first.
    assert slots.turn_in("ep_1", cap=2, waiting=3) == pytest.approx(0.8)
    assert slots.turn_in("ep_1", cap=2, waiting=3) == pytest.approx(1.0)
    token = slots.begin("ep_1")
    clock.now += 1.4
    slots.end("ep_1", token)  # a running average: one slow send moves it a fifth of the way, to 0.6 s
    assert slots.turn_in("ep_1", cap=1, waiting=1) == pytest.approx(1.2)


def test_a_send_in_flight_that_takes_long_says_more_than_the_average() -> None:
    clock = Clock()
    slots = SlotTurns(clock)
    # Never timed, nothing in flight: a guess that sends the backlog back soon, to learn more then.
    assert slots.turn_in("ep_1", cap=4, waiting=0) == pytest.approx(0.05)
    assert FIRST_SEND_S < 0.05
    token = slots.begin("ep_1")
    clock.now += 10.0  # still sending: each slot is taken at least 10 s
    assert slots.turn_in("ep_2", cap=2, waiting=0) == pytest.approx(0.05)  # another endpoint knows nothing of it
    assert slots.turn_in("ep_1", cap=2, waiting=2) == pytest.approx(15.0)  # two waiting, then this one
    assert slots.turn_in("ep_1", cap=2, waiting=2) == pytest.approx(20.0)
    slots.end("ep_1", token)
    # Timed now (10 s a send, 5 s a slot): a slot's time after the one held before it.
    assert slots.turn_in("ep_1", cap=2, waiting=0) == pytest.approx(25.0)
