import pytest

from telemetry.backoff import Backoff


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    b = Backoff(initial=1, cap=10, jitter=0)
    assert [b.next() for _ in range(6)] == [1, 2, 4, 8, 10, 10]


def test_backoff_jitter_draws_within_the_lower_fraction() -> None:
    draws = iter([0.0, 0.999, 0.5])
    b = Backoff(initial=4, cap=100, jitter=0.5, rng=lambda: next(draws))
    assert b.next() == 4
    assert b.next() == pytest.approx(8 * (1 - 0.5 * 0.999))
    assert b.next() == 16 * 0.75


def test_backoff_resets_after_a_good_session_only() -> None:
    b = Backoff(initial=1, cap=30, jitter=0, healthy_after=5)
    for _ in range(4):
        b.next()
    b.succeeded(session_seconds=1)  # up and dropped at once: still backing off
    assert b.delay == 16
    b.succeeded(session_seconds=5)
    assert b.next() == 1


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=0)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=2)
