"""Ids: shape, uniqueness across the random pool's refills, order by time, and no id shared with a fork."""

from __future__ import annotations

import os
import time

from switchboard.ids import derived_id, is_id, new_id


def test_ids_are_well_formed_and_unique_across_many_refills_of_the_random_pool() -> None:
    ids = [new_id("evt") for _ in range(5_000)]  # 5,000 × 20 digits: about 12 refills of 8,192
    assert len(set(ids)) == len(ids)
    assert all(is_id(i, "evt") for i in ids)
    assert len({i[16:] for i in ids}) == len(ids)  # the random parts alone differ too


def test_ids_sort_by_creation_time() -> None:
    first = new_id("evt")
    time.sleep(0.002)
    assert new_id("evt") > first


def test_a_forked_child_never_issues_its_parents_next_ids() -> None:
    new_id("evt")  # the pool is filled before the fork
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(writing, ",".join(new_id("evt")[16:] for _ in range(3)).encode())
        os._exit(0)
    os.close(writing)
    os.waitpid(child, 0)
    theirs = set(os.read(reading, 4096).decode().split(","))
    os.close(reading)
    ours = {new_id("evt")[16:] for _ in range(3)}
    assert len(theirs) == 3 and not theirs & ours


def test_derived_ids_are_stable() -> None:
    assert derived_id("evt", "src_1", "x") == derived_id("evt", "src_1", "x") != derived_id("evt", "src_1", "y")
