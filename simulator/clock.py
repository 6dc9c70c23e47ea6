"""Simulated time for many agents: a discrete-event clock paced against the real one.

Every agent timer is a ``sleep_until`` on this clock. The clock keeps the waiting moments in a
heap; its :meth:`SimClock.run` task advances simulated time to the earliest, wakes everything
due then (in the order they asked), lets them run, and moves on. Simulated time therefore only
takes the values timers asked for, whatever the machine's load, which is what makes a run
reproducible: the same seed gives the same readings at the same timestamps.

The rule that keeps it so: what a moment causes runs in the loop iteration right after the clock
releases it, in a done callback of the future ``sleep_until`` returned (the agent's schedule is
one) or in the step of the task awaiting it; the clock moves on only after that iteration. A
wait is registered when ``sleep_until`` is called, not when it is first awaited. Work handed to
a new task would run some iterations later, at whatever moment the clock has reached by then.

Pacing: simulated time advances ``speed`` times faster than real time (``speed=None``: as fast
as the process can), and never past the present, so timestamps stay ones that ingest accepts;
a run that reaches the present goes on in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections.abc import Callable


class SimClock:
    """Simulated epoch seconds, shared by every agent of a simulation.

    Args:
        start: the simulated moment the run begins (epoch seconds).
        speed: simulated seconds per real second; None for as fast as possible.
        wall, monotonic: the real clocks (replaced in tests).
    """

    def __init__(self, *, start: float, speed: float | None = None, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self.speed = speed
        self._wall, self._monotonic = wall, monotonic
        self._now = start
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._wakeup = asyncio.Event()
        self._real0: float | None = None

    def time(self) -> float:
        return self._now

    def sleep_until(self, when: float) -> asyncio.Future[None]:
        """A wait for simulated moment ``when``, registered now; done at once if it has come."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if when <= self._now:
            fut.set_result(None)  # awaiting it does not yield: the caller goes on at this moment
            return fut
        if not self._heap or when < self._heap[0][0]:
            self._wakeup.set()
        heapq.heappush(self._heap, (when, next(self._order), fut))
        return fut

    def _delay(self, when: float) -> float:
        cap = when - self._wall()  # never past the present
        if self.speed is None or self._real0 is None:
            return cap
        return max(cap, self._real0 + (when - self.start) / self.speed - self._monotonic())

    async def run(self, until: float = math.inf) -> None:
        """Advance simulated time up to ``until`` (for ever by default; cancel to stop).

        Everything due at or before ``until`` is woken and has run when this returns, and
        nothing later: a caller that stops its timers then sees a clean cut at ``until``.
        One ``run`` at a time per clock.
        """
        if self._real0 is None and self.speed is not None:
            self._real0 = self._monotonic() - (self._now - self.start) / self.speed
        heap = self._heap
        while True:
            while heap and heap[0][2].done():  # cancelled sleepers
                heapq.heappop(heap)
            when = min(heap[0][0] if heap else math.inf, until)
            if when == math.inf:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            delay = self._delay(when)
            if delay > 0:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wakeup.wait()
                continue
            self._now = max(self._now, when)
            while heap and heap[0][0] <= self._now:
                fut = heapq.heappop(heap)[2]
                if not fut.done():
                    fut.set_result(None)
            await asyncio.sleep(0)  # the woken run now, at this simulated moment
            if self._now >= until:
                return


class SkewedClock:
    """A station's clock that is off: ``base`` plus ``skew(base time)`` seconds."""

    def __init__(self, *, base: SimClock, skew: Callable[[float], float]) -> None:
        self._base, self._skew = base, skew

    def time(self) -> float:
        now = self._base.time()
        return now + self._skew(now)

    def sleep_until(self, when: float) -> asyncio.Future[None]:
        return self._base.sleep_until(when - self._skew(self._base.time()))
