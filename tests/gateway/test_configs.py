"""The gateway's desired configs, transition by transition (no broker): what each node holds, what it lacks."""

from __future__ import annotations

from gateway.configs import DesiredConfigs
from telemetry.contract import AgentConfig

S, T = "PL-KT-001", "PL-KT-002"


def gen(n: int, rev: str = "") -> AgentConfig:
    return AgentConfig(rev=rev or f"r{n}", generation=n)


def test_configs_next_generation_is_the_clock_or_one_more_than_the_newest() -> None:
    d = DesiredConfigs()
    assert d.next_generation(S, now_ms=1000) == 1000
    d.pushed(S, gen(5000))
    assert d.next_generation(S, now_ms=1000) == 5001, "a clock behind the newest generation"
    assert d.next_generation(S, now_ms=9000) == 9000
    assert d.next_generation(T, now_ms=1000) == 1000, "per station"


def test_configs_pushed_keeps_the_greatest_generation() -> None:
    d = DesiredConfigs()
    d.pushed(S, gen(7))
    d.pushed(S, gen(6))
    assert d.newest[S] == gen(7)


def test_configs_retained_copy_read_back_after_a_restart_is_the_newest() -> None:
    d = DesiredConfigs()
    assert d.seen(0, S, gen(3), retained=True) is None
    assert d.seen(1, S, gen(5), retained=True) is None
    assert d.newest[S] == gen(5)
    assert d.next_generation(S, now_ms=4) == 6


def test_configs_node_holding_an_older_retained_copy_gets_the_newest_again() -> None:
    d = DesiredConfigs()
    d.pushed(S, gen(5))
    assert d.seen(2, S, gen(3), retained=True) == gen(5)
    assert d.held[2][S] == 3


def test_configs_live_copy_says_nothing_of_what_the_node_holds() -> None:
    """A push through node 0 reaches node 1's subscribers too, though node 1's retained store may lack it."""
    d = DesiredConfigs()
    assert d.seen(1, S, gen(5), retained=False) is None
    assert d.newest[S] == gen(5)
    assert d.behind(1) == [(S, gen(5))]


def test_configs_stored_marks_the_node_up_to_date() -> None:
    d = DesiredConfigs()
    d.pushed(S, gen(5))
    d.pushed(T, gen(6))
    d.stored(0, S, gen(5))
    assert d.behind(0) == [(T, gen(6))]
    d.stored(0, T, gen(6))
    assert d.behind(0) == []


def test_configs_reset_forgets_what_a_node_held_until_it_is_read_back() -> None:
    d = DesiredConfigs()
    d.pushed(S, gen(5))
    d.stored(0, S, gen(5))
    d.reset(0)
    assert d.behind(0) == [(S, gen(5))]
    d.seen(0, S, gen(5), retained=True)
    assert d.behind(0) == []


def test_configs_node_that_missed_a_push_is_behind_and_the_others_are_not() -> None:
    d = DesiredConfigs()
    for node in (0, 1, 2):
        d.stored(node, S, gen(1))
    d.pushed(S, gen(1))
    d.reset(2)  # node 2 goes down
    for node in (0, 1):
        d.stored(node, S, gen(2))
    d.pushed(S, gen(2))
    d.seen(2, S, gen(1), retained=True)  # back, with the old copy
    assert [d.behind(n) for n in (0, 1, 2)] == [[], [], [(S, gen(2))]]
