"""The agent's time: an injected :class:`Clock` (the wall clock on a device, simulated time in the
simulator), and the rule that keeps a series' timestamps unique."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Final, Protocol

from telemetry.contract import MAX_FUTURE_MS

NEVER: Final = math.inf


class Clock(Protocol):
    """The agent's time: epoch seconds, and waiting for a moment of it."""

    def time(self) -> float: ...

    def sleep_until(self, when: float) -> asyncio.Future[None]:
        """A future done at ``when``, registered at once (await it, or add a done callback).

        Registering at the call, not at the first await, lets a simulated clock know every
        timer before it moves on; a done callback runs before it moves on again.
        """
        ...


class WallClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def sleep_until(self, when: float) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delay = when - time.time()
        if delay <= 0:
            fut.set_result(None)
        else:
            handle = fut.get_loop().call_later(delay, _resolve, fut)
            fut.add_done_callback(lambda _f: handle.cancel())
        return fut


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def next_ts(last_ms: int, now_ms: int) -> int:
    """The ts of a series' next message: never one it used already, unless the clock was stepped back
    further than ingest accepts ahead (what was stamped in that future was rejected: nothing to replace)."""
    return now_ms if last_ms - now_ms > MAX_FUTURE_MS else max(now_ms, last_ms + 1)
