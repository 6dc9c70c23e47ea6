"""Capped exponential backoff with jitter, reset after a good session: how every client reconnects.

One policy for the device agent, ingest and the gateway: the n-th consecutive failure waits a
random time in ``[delay * (1 - jitter), delay]`` where ``delay = min(initial * factor**n, cap)``,
so clients that lost the same broker do not come back in step. A session that stayed up for at
least ``healthy_after`` seconds counts as good: :meth:`Backoff.succeeded` then starts again from
``initial``; a session that failed at once does not, so a broker that accepts and drops keeps
the delay growing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """The delays between reconnection attempts.

    Args:
        initial: the first delay, in seconds.
        cap: no delay is longer.
        factor: each failure in a row multiplies the delay by this.
        jitter: the fraction of the delay drawn at random (0: none, 1: anything from 0 to delay).
        healthy_after: a session at least this long resets the backoff (see :meth:`succeeded`).
        rng: a source of uniform numbers in [0, 1) (seeded in tests).
    """

    initial: float = 1.0
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    healthy_after: float = 0.0
    rng: Callable[[], float] = field(default=random.random, repr=False)
    failures: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.cap:
            raise ValueError(f"backoff needs 0 < initial <= cap, got {self.initial} and {self.cap}")
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff needs factor >= 1 and 0 <= jitter <= 1, got {self.factor}, {self.jitter}")

    @property
    def delay(self) -> float:
        """The delay before jitter for the next attempt."""
        return min(self.initial * self.factor ** min(self.failures, 64), self.cap)

    def next(self) -> float:
        """The time to wait before the next attempt; counts one more failure."""
        delay = self.delay
        self.failures += 1
        return delay * (1 - self.jitter * self.rng())

    def succeeded(self, session_seconds: float | None = None) -> None:
        """A session came up (and lasted ``session_seconds``, when given): start again from ``initial``.

        With ``healthy_after`` set, a session shorter than that does not reset the count.
        """
        if session_seconds is None or session_seconds >= self.healthy_after:
            self.failures = 0

    def reset(self) -> None:
        self.failures = 0
