"""Failover: which broker the next session tries, and how long the agent waits before it.

The agent has one or more brokers (the nodes of a cluster, from ``MQTT_URL``). This module owns
that choice and nothing else (no socket, no timer), so each transition is tested on its own::

    state: the broker index i (from 0), and the backoff's count of failures in a row

    session failed before CONNACK (unreachable, refused, silent)  -> i+1 mod n; a failure more
    session lost after CONNACK, up for u seconds                  -> i+1 mod n; failures reset
                                                                     only when u >= healthy_after
    then the caller waits Backoff.next() before opening a session on broker i

One broker is the same machine as before: i stays 0, the waits are the backoff's. Several: a
dead node costs one backoff step before the next node is tried, and a node that accepts and drops
at once keeps the waits growing while the agent goes round the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from telemetry.backoff import Backoff

T = TypeVar("T")


class Failover(Generic[T]):
    """Round robin over brokers, with the backoff between sessions.

    Args:
        brokers: at least one, in the order they are tried (the first one first).
        backoff: the waits between sessions.
    """

    __slots__ = ("_backoff", "_brokers", "_index")

    def __init__(self, brokers: Sequence[T], backoff: Backoff) -> None:
        if not brokers:
            raise ValueError("give at least one broker")
        self._brokers, self._backoff, self._index = tuple(brokers), backoff, 0

    @property
    def current(self) -> T:
        """The broker the next session opens (or the one the open session is on)."""
        return self._brokers[self._index]

    @property
    def index(self) -> int:
        return self._index

    def failed(self) -> float:
        """The session never came up: move to the next broker; returns the wait before trying it."""
        return self._next()

    def lost(self, up: float) -> float:
        """The session was up ``up`` seconds and ended: move to the next broker; returns the wait."""
        self._backoff.succeeded(up)
        return self._next()

    def _next(self) -> float:
        self._index = (self._index + 1) % len(self._brokers)
        return self._backoff.next()
