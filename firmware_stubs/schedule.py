"""The schedule: when each job is due on the agent's clock, and the wake-up chain that runs them.

Jobs: occupancy (every ``occupancy_interval_s``, and whenever the counter may have changed),
the chargers, the sensors (each every its interval) and the status. A tick at a moment reads
what is due then, in that order, and hands the readings over (:attr:`Schedule` ``on_tick``).
After a stall the missed periods are skipped, not burst; a clock stepped back pulls the
schedule back with it. A new config moves each due time by the change of its interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Literal

from firmware_stubs.buffer import NewReading
from firmware_stubs.clock import NEVER, Clock
from firmware_stubs.sampling import Sampler
from telemetry.contract import AgentConfig

logger = logging.getLogger(__name__)

Job = Literal["occupancy", "charger", "temperature", "status"]
_INTERVALS: Final[dict[Job, str]] = {"occupancy": "occupancy_interval_s", "charger": "charger_interval_s",
                                     "temperature": "temperature_interval_s", "status": "status_interval_s"}

Tick = Callable[[list[NewReading], bool], None]
"""Called after each tick with the readings taken and whether the status is due."""


def _intervals(config: AgentConfig) -> dict[Job, float]:
    return {job: getattr(config, attr) for job, attr in _INTERVALS.items()}


def next_due(due: float, interval: float, now: float) -> float:
    """The next period; after a stall, skip the missed ones instead of bursting."""
    nxt = due + interval
    return nxt if nxt > now else now + interval


class Schedule:
    """The due times of one agent's jobs, and the chain of clock waits that runs them.

    A done callback on the clock's future, not a task: it runs in the loop iteration right after
    the moment comes, before a simulated clock can move on, so the readings are taken at that
    very moment whatever else is running (and it costs no task per agent).

    Args:
        clock: the agent's time.
        config: the intervals to start with.
        sampler: reads the drivers (what the station has decides which jobs exist).
        on_tick: gets the readings of each tick and whether the status is due.
        name: the station, for logs.
    """

    __slots__ = ("_clock", "_config", "_due", "_intervals", "_name", "_occ_check", "_on_tick", "_running", "_sampler",
                 "_waiter", "_wake_at")

    def __init__(self, *, clock: Clock, config: AgentConfig, sampler: Sampler, on_tick: Tick, name: str) -> None:
        self._clock, self._config, self._sampler, self._on_tick, self._name = clock, config, sampler, on_tick, name
        self._intervals = _intervals(config)
        self._due: dict[Job, float] = {}
        self._occ_check = NEVER
        self._waiter: asyncio.Future[None] | None = None
        self._wake_at = NEVER
        self._running = False

    def start(self, now: float) -> None:
        """Every job is due now (the status after its interval); tick at once, then follow the clock."""
        d = self._sampler.drivers
        self._due = {"occupancy": now if d.occupancy else NEVER, "charger": now if d.chargers else NEVER,
                     "temperature": now if d.sensors else NEVER, "status": now + self._config.status_interval_s}
        self._occ_check = now if d.occupancy else NEVER
        self._running = True
        self._tick(now)  # the first readings belong to this moment, not to when the tasks first run
        self._wait()

    def stop(self) -> None:
        """No more ticks, for good."""
        self._running = False
        self._cancel()

    def reconfigure(self, config: AgentConfig) -> None:
        """Run ``config``'s intervals from now: each due time moves by the change of its interval."""
        old, self._config, self._intervals = self._config, config, _intervals(config)
        now = self._clock.time()
        for job, attr in _INTERVALS.items():
            if self._due[job] != NEVER:
                self._due[job] = max(now, self._due[job] - getattr(old, attr) + getattr(config, attr))
        self._cancel()
        self._wait()

    def _wait(self) -> None:
        if not self._running:
            return
        self._wake_at = min(self._occ_check, *self._due.values())
        self._waiter = self._clock.sleep_until(self._wake_at)
        self._waiter.add_done_callback(self._on_due)

    def _cancel(self) -> None:
        if self._waiter is not None:
            self._waiter.cancel()
            self._waiter = None

    def _on_due(self, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled() or waiter is not self._waiter:
            return
        now = self._clock.time()
        if now < self._wake_at <= now + 1.0:  # woke a hair early: keep the schedule exact
            now = self._wake_at
        try:
            self._tick(now)  # far before the wake: the clock was stepped back, and _tick follows it
        except Exception:
            logger.exception("%s: unexpected error reading the drivers", self._name)
        self._wait()

    def _tick(self, now: float) -> None:
        due, sampler, intervals = self._due, self._sampler, self._intervals
        for key, interval in intervals.items():
            if due[key] > now + interval:  # the clock was stepped back: the schedule follows it
                due[key] = now
        new: list[NewReading] = []
        if sampler.drivers.occupancy is not None:
            periodic = due["occupancy"] <= now
            if periodic or self._occ_check <= now:
                sampler.occupancy(now, new, force=periodic)
            if periodic:
                due["occupancy"] = next_due(due["occupancy"], intervals["occupancy"], now)
            self._occ_check = sampler.next_occupancy_check(now)
        if due["charger"] <= now:
            sampler.chargers(now, new)
            due["charger"] = next_due(due["charger"], intervals["charger"], now)
        if due["temperature"] <= now:
            sampler.temperatures(now, new)
            due["temperature"] = next_due(due["temperature"], intervals["temperature"], now)
        status = due["status"] <= now
        if status:
            due["status"] = next_due(due["status"], intervals["status"], now)
        self._on_tick(new, status)
